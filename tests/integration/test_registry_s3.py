"""What only the S3 registry has: conditional writes, uploads never committed, sha256 on
download, the poll's requests, a corrupt state object, and the services on S3 (inference under
gunicorn through an outage, a real RQ worker publishing). The server is real: moto's S3 app in
a process of its own (tests/s3_server.py), reached over HTTP; no mock of boto3.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from inference_service.serving import ModelCache
from inference_service.telemetry import Telemetry
from shared.registry import Registry, RegistryError
from shared.registry.s3 import S3Storage
from shared.registry.state import set_alias_change
from tests import REPO_ROOT
from tests.registry_support import cleanup_temp, version_status
from tests.s3_support import BUCKET, RegistryFactory, S3Server, s3_env
from tests.service_support import inference_service, publish
from tests.trainer_support import SMALL, wait_for

pytestmark = [pytest.mark.slow]


@pytest.fixture
def s3(s3_server: S3Server, tmp_path: Path) -> RegistryFactory:
    return RegistryFactory("s3", tmp_path, s3_server)


def _publish(reg: Registry, tmp_path: Path, data: bytes, name: str = "m") -> int:
    src = tmp_path / f"w-{len(data)}-{data[:8].hex()}.npz"
    src.write_bytes(data)
    return reg.publish(name, src, {"job_id": data.decode(errors="replace")})


def _keys(server: S3Server, prefix: str) -> list[str]:
    resp = server.client.list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return sorted(o["Key"] for o in resp.get("Contents", []))


# --------------------------------------------------------------------------------------------
# conditional writes


def test_a_state_change_racing_another_is_retried_and_loses_nothing(
    s3: RegistryFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writer A reads the state, writer B commits in between, A writes: A's conditional write
    must fail (412) and A retry on B's state. The same interleaving with the condition dropped
    loses B's alias, which proves the server enforces If-Match and this test can fail."""
    a, b = s3.make(), s3.make()
    _publish(a, tmp_path, b"one")

    def interleaved(alias: str, other: str) -> tuple[dict, int]:
        calls = []
        inner = set_alias_change(alias, 1, "A")

        def change(state: dict) -> dict | None:
            calls.append(1)
            if len(calls) == 1:
                b.set_alias("m", other, 1, actor="B")  # commits between A's read and write
            return inner(state)

        return a.storage.change_state("m", change), len(calls)

    state, attempts = interleaved("from-a", "from-b")
    assert set(state["aliases"]) == {"from-a", "from-b"}
    assert attempts == 2, "A's first write lost the compare-and-swap and was retried"
    assert set(s3.make().state("m")["aliases"]) == {"from-a", "from-b"}

    real_put = S3Storage._put

    def unconditional(self, key, data, *, if_match=None, create=False):  # noqa: ANN001, ANN202
        return real_put(self, key, data)

    monkeypatch.setattr(S3Storage, "_put", unconditional)
    interleaved("again-a", "again-b")
    monkeypatch.undo()
    aliases = set(s3.make().state("m")["aliases"])
    assert "again-a" in aliases and "again-b" not in aliases, "without If-Match B is lost"


def test_the_server_refuses_stale_conditional_writes(s3_server: S3Server) -> None:
    c = s3_server.client
    key = f"probe-{time.time_ns()}"
    first = c.put_object(Bucket=BUCKET, Key=key, Body=b"1", IfNoneMatch="*")["ETag"]
    for kwargs in ({"IfNoneMatch": "*"}, {"IfMatch": '"0123"'}):
        with pytest.raises(c.exceptions.ClientError) as err:
            c.put_object(Bucket=BUCKET, Key=key, Body=b"2", **kwargs)
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    c.put_object(Bucket=BUCKET, Key=key, Body=b"3", IfMatch=first)
    assert c.get_object(Bucket=BUCKET, Key=key)["Body"].read() == b"3"


# --------------------------------------------------------------------------------------------
# uploads never committed

_DYING_PUBLISHER = textwrap.dedent(
    """
    import os, sys
    from shared.registry import Registry
    from shared.registry.s3 import S3Storage

    url, cache, src = sys.argv[1:4]

    def die(self, name, edit, *, create):
        os._exit(3)  # every object is uploaded; killed before the commit

    S3Storage._commit = die
    Registry(url, cache_dir=cache).publish("m", src, {"job_id": "doomed"})
    """
)


def test_an_upload_never_committed_is_invisible_and_cleaned_up(
    s3: RegistryFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reg = s3.make()
    assert _publish(reg, tmp_path, b"first") == 1
    src = tmp_path / "big.npz"
    src.write_bytes(os.urandom(300_000))
    proc = subprocess.run(
        [sys.executable, "-c", _DYING_PUBLISHER, s3.url, str(tmp_path / "c"), str(src)],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        timeout=60,
    )
    assert proc.returncode == 3
    uploads = _keys(s3.server, f"{s3.prefix}/m/uploads/")
    assert len({k.split("/")[3] for k in uploads}) == 2, "its objects are there, uncommitted"
    fresh = s3.make(read_only=True)
    assert fresh.versions("m") == [1] and fresh.latest_version("m") == 1
    assert [d["version"] for d in fresh.describe_versions("m")] == [1]

    # a live publisher's upload (this process: its commit fails) is kept until it is old
    def refused(self, name, edit, *, create):  # noqa: ANN001, ANN202
        raise RegistryError("commit refused")

    monkeypatch.setattr(S3Storage, "_commit", refused)
    with pytest.raises(RegistryError):
        _publish(reg, tmp_path, b"second")
    monkeypatch.undo()
    # the next publish gets the next number and removes the dead publisher's upload at once
    assert _publish(reg, tmp_path, b"third") == 2
    left = {k.split("/")[3] for k in _keys(s3.server, f"{s3.prefix}/m/uploads/")}
    assert len(left) == 3, "versions 1 and 2, and the live publisher's upload"
    assert cleanup_temp(reg, 0) == 1
    assert len({k.split("/")[3] for k in _keys(s3.server, f"{s3.prefix}/m/uploads/")}) == 2
    assert reg.versions("m") == [1, 2]


# --------------------------------------------------------------------------------------------
# sha256 on every download


def test_a_download_that_does_not_match_the_manifest_is_broken_and_never_handed_out(
    s3: RegistryFactory, tmp_path: Path
) -> None:
    """A version committed consistently (ETags match the commit) whose manifest names another
    sha256 than the weights have: only the download's sha256 can tell."""
    reg = s3.make()
    _publish(reg, tmp_path, b"good")
    _publish(reg, tmp_path, b"evil")
    key = s3.version_key(reg, "m", 2, "manifest.json")
    manifest = json.loads(s3.read(reg, "m", 2, "manifest.json"))
    manifest["sha256"] = "0" * 64
    etag = s3.server.client.put_object(Bucket=BUCKET, Key=key, Body=json.dumps(manifest).encode())[
        "ETag"
    ].strip('"')
    state_key = f"{s3.prefix}/m/state.json"
    doc = json.loads(s3.server.client.get_object(Bucket=BUCKET, Key=state_key)["Body"].read())
    doc["versions"]["2"]["objects"]["manifest.json"] = etag
    s3.server.client.put_object(Bucket=BUCKET, Key=state_key, Body=json.dumps(doc).encode())

    reader = s3.make(read_only=True)
    assert reader.verify("m", 2)["sha256"] == "0" * 64  # the commit is consistent
    with pytest.raises(RegistryError, match="sha256 mismatch"):
        reader.weights_path("m", 2)
    assert version_status(reader, "m", 2).startswith("broken: weights.npz sha256 mismatch")
    assert reader.latest_version("m") == 1
    assert list((tmp_path / "s3-cache").rglob("weights.npz")) == []  # nothing kept

    # a cached copy damaged on local disk is fetched again, never handed out
    good = reader.weights_path("m", 1)
    good.write_bytes(b"XXXX")
    assert reader.weights_path("m", 1).read_bytes() == b"good"


# --------------------------------------------------------------------------------------------
# the poll's cost


def test_an_idle_poll_is_one_conditional_get_per_object(s3: RegistryFactory, tmp_path: Path):
    writer = s3.make()
    _publish(writer, tmp_path, b"a", name="one")
    _publish(writer, tmp_path, b"b", name="two")
    reader = s3.make(read_only=True)
    reader.change_token(), reader.default_version("one"), reader.default_version("two")
    calls: list[str] = []
    statuses: list[int] = []
    events = reader.storage._s3().meta.events
    events.register("before-call.s3", lambda model, **kw: calls.append(model.name))
    events.register(
        "after-call.s3",
        lambda http_response, **kw: statuses.append(http_response.status_code),
    )
    token = reader.change_token()
    assert calls == ["GetObject"] * 3, "the index and each model's state object"
    assert statuses == [304] * 3, "read conditionally: nothing changed, no body"
    calls.clear()
    assert reader.change_token("one") == reader.change_token("one")
    assert calls == ["GetObject"] * 2
    writer.pin("two", 1)
    assert reader.change_token() != token


def test_readers_only_ever_read_the_bucket(s3: RegistryFactory, tmp_path: Path) -> None:
    """What inference does (every read method, a download, a report file, polls, a corrupt
    state object, a broken version) sends only GetObject and ListObjectsV2: it needs no write
    access."""
    writer = s3.make()
    src = tmp_path / "notes.txt"
    src.write_bytes(b"notes")
    for data in (b"a", b"b", b"c"):
        weights = tmp_path / f"{data.decode()}.npz"
        weights.write_bytes(data)
        writer.publish("m", weights, {}, {"notes.txt": src})
    writer.pin("m", 2)
    writer.set_alias("m", "prod", 1)
    s3.remove(writer, "m", 3, "weights.npz")  # version 3 broken
    reader = s3.make(read_only=True)
    calls: list[str] = []
    reader.storage._s3().meta.events.register(
        "before-call.s3", lambda model, **kw: calls.append(model.name)
    )
    for _ in range(2):
        reader.change_token(), reader.change_token("m"), reader.model_names()
        reader.describe_versions("m"), reader.latest_version("m"), reader.default_version("m")
        reader.resolve("m", "prod"), reader.state("m"), version_status(reader, "m", 3)
        reader.weights_path("m", 2), reader.read_file("m", 1, "notes.txt")
        s3.write_state("m", b"{corrupt")
    assert reader.default_version("m") == 2
    assert set(calls) == {"GetObject", "ListObjectsV2"}, calls


# --------------------------------------------------------------------------------------------
# a corrupt state object


def test_a_corrupt_state_object_serves_the_last_good_and_is_repaired_only_from_it(
    s3: RegistryFactory, tmp_path: Path
) -> None:
    writer = s3.make()
    _publish(writer, tmp_path, b"a")
    _publish(writer, tmp_path, b"b")
    writer.pin("m", 1)
    reader = s3.make(read_only=True)
    assert reader.default_version("m") == 1
    s3.write_state("m", b'{"pinned": 1, "versions": {')
    assert reader.default_version("m") == 1 and reader.versions("m") == [1, 2]
    stranger = s3.make()  # never saw it good: sees nothing, and must not write
    assert stranger.versions("m") == [] and stranger.model_names() == []
    with pytest.raises(RegistryError, match="never saw a good copy"):
        stranger.unpin("m")
    writer.set_alias("m", "prod", 2)  # repairs from the last good copy it saw
    assert s3.make().state("m")["aliases"] == {"prod": 2}
    assert s3.make().versions("m") == [1, 2] and s3.make().default_version("m") == 1
    kept = [k for k in _keys(s3.server, f"{s3.prefix}/m/") if ".corrupt-" in k]
    assert len(kept) == 1


# --------------------------------------------------------------------------------------------
# inference on S3, through an outage


def _served(svc) -> int:  # noqa: ANN001
    resp = svc.predict()
    assert resp.status_code == 200, resp.text
    return int(resp.headers["X-Model-Version"])


def _metric(svc, name: str) -> float:  # noqa: ANN001
    total = 0.0
    for line in svc.get("/metrics").text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.mark.integration
@pytest.mark.exclusive
def test_inference_on_s3_keeps_serving_through_an_outage_and_catches_up(
    s3: RegistryFactory, tmp_path: Path
) -> None:
    writer = s3.make()
    publish(writer, tmp_path, seed=1)
    with s3.server.proxy() as proxy:
        env = {
            **s3.env(),
            **s3_env(proxy.endpoint),
            "REGISTRY_CACHE_DIR": str(tmp_path / "inference-cache"),
        }
        with inference_service(tmp_path / "not-used", tmp_path, **env) as svc:
            # Each worker must have scanned the store itself before the outage: a worker whose
            # first scan never finished is not ready (it cannot know every model), even when a
            # request made it load the model it asked for.
            wait_for(lambda: svc.every_worker(lambda b: b["ready"]), 30, what="both workers ready")
            assert _served(svc) == 1
            publish(writer, tmp_path, seed=2)
            wait_for(lambda: svc.every_worker(lambda m: m.get("serving") == 2, model="digits"),
                     20, what="version 2 served by both workers")  # fmt: skip
            assert all(_served(svc) == 2 for _ in range(6))
            assert not (tmp_path / "not-used").exists(), "MODEL_REGISTRY_URL wins"

            proxy.stop()  # the store is gone: connections refused
            publish(writer, tmp_path, seed=3)  # a new version it cannot see yet
            views = wait_for(lambda: svc.every_worker(lambda b: b["registry"]["reachable"] is False),
                             40, what="every worker to report the store down")  # fmt: skip
            for body in views.values():
                assert body["ready"] is True, "still serving: still ready"
                assert body["registry"]["error"] and body["registry"]["unreachable_since"]
            answers = svc.burst(svc.predict, 16)
            assert [r.status_code for r in answers] == [200] * 16
            assert {r.headers["X-Model-Version"] for r in answers} == {"2"}
            listing = svc.get("/v1/models")
            assert listing.status_code == 503
            assert listing.json()["error"]["code"] == "registry_unavailable"
            assert _metric(svc, "digitflow_registry_reachable") == 0
            assert _metric(svc, "digitflow_registry_poll_errors_total") > 0

            proxy.start()  # back on the same port
            wait_for(lambda: all(_served(svc) == 3 for _ in range(6)), 40, what="catching up to 3")
            wait_for(
                lambda: all(b["registry"]["reachable"] for b in svc.worker_views().values()),
                20,
                what="every worker to report the store reachable again",
            )
            assert _metric(svc, "digitflow_registry_reachable") == 1
            assert svc.get("/v1/models").json()["models"][0]["latest_version"] == 3
            assert "registry unreachable" in svc.log(400)
            assert "registry reachable again" in svc.log(400)


# --------------------------------------------------------------------------------------------
# the trainer's worker publishing to S3


@pytest.mark.integration
def test_a_worker_publishes_to_s3_end_to_end(s3: RegistryFactory, trainer_stack) -> None:  # noqa: ANN001
    worker_env = {**s3.env(), "REGISTRY_CACHE_DIR": str(s3.tmp / "worker-cache")}
    trainer_stack.start_worker(**worker_env)
    job_id = trainer_stack.submit({**SMALL, "dataset": "mnist"})
    job = trainer_stack.wait_status(job_id, {"finished", "failed"}, timeout=120)
    assert job["status"] == "finished", job
    assert job["model_version"] == 1
    reg = s3.make(read_only=True)
    assert reg.model_names() == ["mnist"] and reg.versions("mnist") == [1]
    manifest = reg.verify("mnist", 1)
    assert manifest["job_id"] == job_id
    assert "learning_curves.png" in manifest["files"]
    assert reg.read_file("mnist", 1, "learning_curves.png")[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (trainer_stack.registry_dir / "mnist").exists(), "nothing went to the folder"


# --------------------------------------------------------------------------------------------
# the download cache (REGISTRY_CACHE_DIR) within REGISTRY_CACHE_MAX_MB

_MB = 1 << 20


def _cached(reg: Registry, name: str = "m") -> set[int]:
    """The versions whose folder is in `reg`'s download cache."""
    doc = reg.storage._doc(name)[1]["versions"]
    return {
        int(v) for v, rec in doc.items() if (reg.storage.cache.root / name / rec["upload"]).is_dir()
    }


def _cache_bytes(reg: Registry) -> int:
    return sum(p.stat().st_size for p in reg.storage.cache.root.rglob("*") if p.is_file())


def test_the_download_cache_is_pruned_least_recently_used_first_never_a_held_version(
    s3: RegistryFactory, tmp_path: Path
) -> None:
    """Versions of 0.3 MiB under a 1 MiB limit: three fit. A held version (as inference holds the
    ones it has loaded) stays whatever its age, in this object or another one (each holds its
    own lock, as another process does); the others go least recently used first."""
    writer = s3.make()
    blobs = {v: os.urandom(300_000) for v in range(1, 7)}
    for v, data in blobs.items():
        assert _publish(writer, tmp_path, data) == v
    reader, other = s3.make(cache_max_mb=1), s3.make(cache_max_mb=1)

    def use(v: int) -> None:
        assert reader.weights_path("m", v).read_bytes() == blobs[v]
        reader.release("m", v)
        assert _cache_bytes(reader) <= _MB

    reader.weights_path("m", 1)  # held: served
    for v in range(2, 7):
        use(v)
    assert _cached(reader) == {1, 5, 6}
    use(5)  # now 6 is the least recently used
    use(2)
    assert _cached(reader) == {1, 5, 2}
    other.weights_path("m", 5)  # held by someone else
    reader.release("m", 1)  # 1 may go now: it is the least recently used
    use(3)
    assert _cached(reader) == {5, 2, 3}
    use(4), use(6)
    assert _cached(reader) == {5, 4, 6}, "5 is held elsewhere: 2 and 3 went instead"
    other.release("m", 5)
    use(1)
    assert _cached(reader) == {4, 6, 1}


def test_a_limit_of_zero_keeps_only_what_is_held(s3: RegistryFactory, tmp_path: Path) -> None:
    writer = s3.make()
    for v in (1, 2):
        _publish(writer, tmp_path, f"version {v}".encode())
    reader = s3.make(cache_max_mb=0)
    reader.weights_path("m", 1)
    assert reader.weights_path("m", 2).read_bytes() == b"version 2"
    assert _cached(reader) == {1, 2}
    reader.release("m", 2)
    assert _cached(reader) == {1}
    reader.release("m", 1)
    assert _cached(reader) == set() and _cache_bytes(reader) == 0


#: Fetch-read-release rounds per churning process (20-50 fit in 6 s on 2 cores).
ROUNDS = 30
_CHURN = textwrap.dedent(
    """
    import hashlib, json, random, sys
    from shared.registry import Registry
    url, cache, expected, rounds = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4])
    reg, rng, seen = Registry(url, cache_dir=cache, cache_max_mb=1), random.Random(), set()
    for _ in range(rounds):
        v = rng.choice(sorted(expected))
        data = reg.weights_path("m", int(v)).read_bytes()
        assert hashlib.sha256(data).hexdigest() == expected[v], f"version {v}: other bytes"
        reg.release("m", int(v))
        seen.add(v)
    print(len(seen))
    """
)


def test_processes_sharing_the_cache_never_see_a_half_pruned_version(
    s3: RegistryFactory, tmp_path: Path
) -> None:
    """Three processes fetch, read and release random versions through one cache folder whose
    limit holds three of six: each prunes after its downloads and releases while the others
    download into it and read from it. Every read must be the version's bytes."""
    writer = s3.make()
    expected = {}
    for v in range(1, 7):
        data = os.urandom(300_000)
        _publish(writer, tmp_path, data)
        expected[str(v)] = hashlib.sha256(data).hexdigest()
    cache = tmp_path / "shared-cache"
    env = {**os.environ, **s3_env(s3.server.endpoint), "PYTHONPATH": str(REPO_ROOT)}
    # A number of rounds, not a time: a busy machine once let a process do only 17 in 6 s
    args = [sys.executable, "-c", _CHURN, s3.url, str(cache), json.dumps(expected), str(ROUNDS)]
    procs = [
        subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
        # More versions than the cache holds (3 of 6): it read while the cache had to prune.
        # (30 uniform draws stay within 3 versions with odds of about 2e-8.)
        assert int(out) > 3, out
    reader = s3.make(cache_dir=cache, cache_max_mb=1)
    reader.storage.cache.prune()  # the last to let go may not have been over the limit itself
    assert _cache_bytes(reader) <= _MB
    assert not [p for p in reader.storage.cache.root.rglob(".trash-*")]


def test_inference_keeps_the_downloads_of_what_it_serves_and_lets_the_rest_go(
    s3: RegistryFactory, tmp_path: Path
) -> None:
    """A limit of 0: the cache holds exactly the versions a worker has loaded (its default
    first); one it evicts from its LRU leaves the disk too."""
    writer = s3.make()
    for seed in (1, 2, 3):
        publish(writer, tmp_path, seed=seed)
    reader = s3.make(read_only=True, cache_max_mb=0)
    cache = ModelCache(reader, telemetry=Telemetry(), capacity=1, poll_seconds=0)
    cache.refresh()
    assert cache.served_default("digits") == 3 and _cached(reader, "digits") == {3}
    writer.pin("digits", 1)
    cache.refresh()
    assert cache.served_default("digits") == 1
    assert _cached(reader, "digits") == {1, 3}, "3 stays loaded until the next load evicts it"
    cache.get("digits", "2")
    assert _cached(reader, "digits") == {1, 2}
    cache.get("digits", "3")  # 2 leaves the LRU (1 is the default: never evicted)
    assert _cached(reader, "digits") == {1, 3}
