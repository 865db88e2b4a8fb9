"""The shared registry suite: every test here runs once per storage (a folder, and S3 through a
real moto server process), through the `registry_factory` fixture. The behaviour is meant to be
the same; where a storage words a reason its own way, the test says which words.

What only one storage has lives beside it: tests/unit/test_registry.py and
tests/integration/test_registry_concurrency.py (folder: layout, temp folders, flock, rename,
read-only mount), tests/integration/test_registry_s3.py (S3: conditional writes, uploads never
committed, the poll's requests, outages). Name and version validation happens in
`Registry` before any storage is asked, so its tests (every bad name, version and alias) run
once, in tests/unit/test_registry.py.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing as mp
import threading
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from shared.registry import (
    AliasNotFoundError,
    BrokenVersionError,
    InvalidNameError,
    ModelNotFoundError,
    ReadOnlyRegistryError,
    Registry,
    VersionInUseError,
    VersionNotFoundError,
)
from tests.registry_support import version_status
from tests.s3_support import RegistryFactory

pytestmark = [pytest.mark.slow]


@pytest.fixture
def reg(registry_factory: RegistryFactory) -> Registry:
    return registry_factory.make()


def publish_bytes(
    reg: Registry,
    tmp_path: Path,
    data: bytes,
    name: str = "m",
    manifest: dict | None = None,
    extras: dict[str, bytes] | None = None,
) -> int:
    src = tmp_path / "src" / f"w-{hashlib.sha256(data).hexdigest()[:8]}.npz"
    src.parent.mkdir(parents=True, exist_ok=True)
    src.write_bytes(data)
    extra_paths = {}
    for fname, content in (extras or {}).items():
        extra_paths[fname] = tmp_path / "src" / f"extra-{fname}"
        extra_paths[fname].write_bytes(content)
    return reg.publish(name, src, manifest or {}, extra_paths or None)


# --------------------------------------------------------------------------------------------
# publish, manifest, files


def test_publish_and_read_back(reg: Registry, tmp_path: Path) -> None:
    weights = tmp_path / "model.npz"
    np.savez(weights, w=np.arange(6, dtype=np.float32).reshape(2, 3))
    notes = tmp_path / "notes.txt"
    notes.write_text("epoch,loss\n1,0.5\n")
    caller = {"metrics": {"accuracy": np.float32(0.875)}, "job_id": "job-1", "version": 999}
    assert reg.publish("mnist", weights, caller, {"notes.txt": notes}) == 1
    assert reg.publish("mnist", weights, {"job_id": "job-2"}) == 2
    m = reg.manifest("mnist", 1)
    assert m["version"] == 1 and m["job_id"] == "job-1" and m["metrics"] == {"accuracy": 0.875}
    assert m["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert m["files"] == {
        "notes.txt": {
            "sha256": hashlib.sha256(notes.read_bytes()).hexdigest(),
            "size_bytes": notes.stat().st_size,
        }
    }
    assert reg.verify("mnist", "2")["job_id"] == "job-2"
    assert reg.versions("mnist") == [1, 2] and reg.model_names() == ["mnist"]
    with np.load(reg.weights_path("mnist", 1), allow_pickle=False) as z:
        assert z["w"].dtype == np.float32
    assert reg.read_file("mnist", 1, "notes.txt") == notes.read_bytes()
    with pytest.raises(FileNotFoundError):
        reg.read_file("mnist", 2, "notes.txt")  # version 2 has no such file
    with pytest.raises(InvalidNameError):
        reg.read_file("mnist", 1, "../state.json")


def test_returned_manifest_is_a_copy(reg: Registry, tmp_path: Path) -> None:
    publish_bytes(reg, tmp_path, b"w1", manifest={"metrics": {"acc": 0.5}})
    m = reg.manifest("m", 1)
    m["metrics"]["acc"] = 0.0
    m["sha256"] = "x"
    assert reg.manifest("m", 1)["metrics"]["acc"] == 0.5
    assert reg.verify("m", 1)["sha256"] != "x"


def test_publish_rejects_bad_input(reg: Registry, tmp_path: Path) -> None:
    src = tmp_path / "w.npz"
    src.write_bytes(b"weights")
    with pytest.raises(ValueError, match="strict JSON"):
        reg.publish("m", src, {"loss": float("nan")})
    with pytest.raises(FileNotFoundError):
        reg.publish("m", tmp_path / "missing.npz", {})
    for bad in ["../x", "weights.npz", "manifest.json", ".hidden", ""]:
        with pytest.raises(InvalidNameError):
            reg.publish("m", src, {}, {bad: src})
    assert reg.model_names() == []
    assert publish_bytes(reg, tmp_path, b"ok") == 1


# --------------------------------------------------------------------------------------------
# broken versions: damaged after publishing, never served, listed with the reason

#: how → (what to do to version 2's files, the reason's words per storage). A file replaced in
#: place is caught by its sha256 on a folder and by its changed ETag on S3 (and by its sha256
#: when downloaded: tests/integration/test_registry_s3.py).
BREAKAGES = {
    "tampered_weights": ({"local": "sha256 mismatch", "s3": "weights.npz was replaced"}),
    "truncated_weights": ({"local": "weights.npz has 3 bytes", "s3": "weights.npz has 3 bytes"}),
    "missing_weights": ({"local": "weights.npz is missing", "s3": "weights.npz is missing"}),
    "missing_manifest": ({"local": "manifest.json is missing", "s3": "manifest.json is missing"}),
    "extra_missing": ({"local": "notes.txt is missing", "s3": "notes.txt is missing"}),
}


def _break(factory: RegistryFactory, reg: Registry, how: str) -> None:
    if how == "tampered_weights":
        data = bytearray(factory.read(reg, "m", 2, "weights.npz"))
        data[0] ^= 0xFF
        factory.write(reg, "m", 2, "weights.npz", bytes(data))
    elif how == "truncated_weights":
        factory.write(reg, "m", 2, "weights.npz", b"abc")
    elif how == "missing_weights":
        factory.remove(reg, "m", 2, "weights.npz")
    elif how == "missing_manifest":
        factory.remove(reg, "m", 2, "manifest.json")
    elif how == "extra_missing":
        factory.remove(reg, "m", 2, "notes.txt")


@pytest.mark.parametrize("how", sorted(BREAKAGES))
def test_broken_versions_are_skipped_and_reported(
    how: str, registry_factory: RegistryFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    writer = registry_factory.make()
    publish_bytes(writer, tmp_path, b"good-one", extras={"notes.txt": b"one"})
    publish_bytes(writer, tmp_path, b"good-two", extras={"notes.txt": b"two"})
    writer.set_alias("m", "prod", 2)
    _break(registry_factory, writer, how)
    words = BREAKAGES[how][registry_factory.kind]

    reg = registry_factory.make()  # a reader that never saw version 2 intact
    caplog.set_level(logging.WARNING, logger="shared.registry")
    for _ in range(5):  # a poller calling again and again
        assert reg.latest_version("m") == 1
        assert reg.default_version("m") == 1
    logs = [r for r in caplog.records if "version 2 is broken" in r.getMessage()]
    assert len(logs) == 1, "a broken version is logged once, not on every poll"
    assert words in logs[0].getMessage()
    assert reg.versions("m") == [1, 2]
    assert version_status(reg, "m", 2).startswith("broken: ")
    rows = reg.describe_versions("m")
    assert [(r["version"], r["status"]) for r in rows] == [(1, "ok"), (2, "broken")]
    assert rows[1]["manifest"] is None and words in rows[1]["error"]
    for call in (
        lambda: reg.verify("m", 2),
        lambda: reg.resolve("m", "prod"),
        lambda: reg.weights_path("m", 2),
        lambda: reg.pin("m", 2),
    ):
        with pytest.raises(BrokenVersionError) as err:
            call()
        assert words in err.value.reason
    assert reg.resolve("m", "latest") == 1
    assert reg.state("m")["pinned"] is None


def test_all_versions_broken_means_no_latest(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    reg = registry_factory.make()
    publish_bytes(reg, tmp_path, b"only")
    registry_factory.write(reg, "m", 1, "weights.npz", b"ONLY!")
    fresh = registry_factory.make()
    assert fresh.latest_version("m") is None and fresh.default_version("m") is None
    for ref in ("latest", "default"):
        with pytest.raises(VersionNotFoundError):
            fresh.resolve("m", ref)


def test_pinned_version_that_breaks_falls_back_to_latest(
    registry_factory: RegistryFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    writer = registry_factory.make()
    for data in (b"a", b"b", b"c"):
        publish_bytes(writer, tmp_path, data)
    writer.pin("m", 1)
    registry_factory.remove(writer, "m", 1, "weights.npz")
    reg = registry_factory.make()
    caplog.set_level(logging.WARNING, logger="shared.registry")
    for _ in range(3):
        assert reg.default_version("m") == 3
    assert len([r for r in caplog.records if "pinned to version 1" in r.getMessage()]) == 1
    assert reg.state("m")["pinned"] == 1  # the pin is kept; an operator decides


# --------------------------------------------------------------------------------------------
# latest / default / resolve


def test_latest_default_pin_and_resolve(reg: Registry, tmp_path: Path) -> None:
    for i in range(3):
        publish_bytes(reg, tmp_path, f"w{i}".encode())
    assert reg.latest_version("m") == 3 and reg.default_version("m") == 3
    reg.pin("m", 2)
    assert reg.default_version("m") == 2 and reg.latest_version("m") == 3
    reg.set_alias("m", "prod", 1)
    assert reg.resolve("m", "prod") == 1
    assert reg.resolve("m", "default") == 2
    assert reg.resolve("m", "latest") == 3
    assert reg.resolve("m", 3) == 3 and reg.resolve("m", "3") == 3
    publish_bytes(reg, tmp_path, b"w3")
    assert reg.default_version("m") == 2, "a pin survives new versions"
    reg.unpin("m")
    assert reg.default_version("m") == 4


def test_staged_versions_are_never_latest_or_an_unpinned_default(
    reg: Registry, tmp_path: Path
) -> None:
    """A sweep trial is published staged: reachable when named, never what an unpinned model
    serves, until a pin (a promotion to "default") or an alias names it."""
    with pytest.raises(ModelNotFoundError):
        reg.staged_versions("m")
    staged = {"staged": True, "sweep": {"sweep_id": "s1"}}
    v1 = publish_bytes(reg, tmp_path, b"w0", manifest=staged)
    assert reg.latest_version("m") is None and reg.default_version("m") is None
    with pytest.raises(VersionNotFoundError):
        reg.resolve("m", "default")
    assert reg.resolve("m", v1) == v1 and reg.is_staged("m", v1)
    v2 = publish_bytes(reg, tmp_path, b"w1")
    v3 = publish_bytes(reg, tmp_path, b"w2", manifest=staged)
    assert reg.staged_versions("m") == [v1, v3]
    assert [d["manifest"]["staged"] for d in reg.describe_versions("m") if d["version"] != v2] == [
        True,
        True,
    ]
    assert reg.latest_version("m") == v2 == reg.default_version("m") == reg.resolve("m", "latest")
    reg.set_alias("m", "candidate", v3)
    assert reg.resolve("m", "candidate") == v3 and reg.default_version("m") == v2
    reg.record_promotion("m", "default", v3, "beats it", "s1")
    assert reg.default_version("m") == v3 and reg.latest_version("m") == v2
    reg.record_promotion("m", "default", None, "does not beat", "s2")
    kept, pinned = reg.state("m")["history"][-1], reg.state("m")["history"][-2]
    assert (pinned["action"], pinned["from"], pinned["to"], pinned["sweep"]) == (
        "pin",
        None,
        v3,
        "s1",
    )
    assert (kept["action"], kept["to"], kept["reason"]) == ("pin_kept", v3, "does not beat")
    assert reg.state("m")["pinned"] == v3


def test_resolve_errors(reg: Registry, tmp_path: Path) -> None:
    publish_bytes(reg, tmp_path, b"a")
    with pytest.raises(ModelNotFoundError):
        reg.resolve("nope", "latest")
    with pytest.raises(VersionNotFoundError):
        reg.resolve("m", 2)
    with pytest.raises(AliasNotFoundError):
        reg.resolve("m", "prod")
    for bad in ["0", "-1", "01", "../x", "１", "a/b", "", "Prod", 0, -5, 10**12, 1.0, None]:
        with pytest.raises(InvalidNameError):
            reg.resolve("m", bad)  # type: ignore[arg-type]


def test_unknown_model(reg: Registry) -> None:
    for call in (
        lambda: reg.versions("nope"),
        lambda: reg.latest_version("nope"),
        lambda: reg.default_version("nope"),
        lambda: reg.state("nope"),
        lambda: reg.verify("nope", 1),
        lambda: reg.weights_path("nope", 1),
        lambda: reg.describe_versions("nope"),
        lambda: reg.pin("nope", 1),
        lambda: reg.unpin("nope"),
        lambda: reg.set_alias("nope", "prod", 1),
        lambda: reg.delete_version("nope", 1),
    ):
        with pytest.raises(ModelNotFoundError):
            call()
    assert reg.model_names() == []


def test_missing_version(reg: Registry, tmp_path: Path) -> None:
    publish_bytes(reg, tmp_path, b"a")
    for call in (
        lambda: reg.verify("m", 2),
        lambda: reg.weights_path("m", 2),
        lambda: reg.pin("m", 2),
        lambda: reg.set_alias("m", "prod", 2),
        lambda: reg.delete_version("m", 2),
    ):
        with pytest.raises(VersionNotFoundError):
            call()


# --------------------------------------------------------------------------------------------
# state: pin, aliases, traffic, shadow, history


def test_history_records_every_change(reg: Registry, tmp_path: Path) -> None:
    publish_bytes(reg, tmp_path, b"a")
    publish_bytes(reg, tmp_path, b"b")
    assert reg.state("m") == {
        "pinned": None,
        "aliases": {},
        "traffic": None,
        "shadow": None,
        "keep_last": None,
        "history": [],
    }
    reg.pin("m", 1, actor="alice")
    reg.pin("m", 1, actor="alice")  # no-op: not a change
    reg.pin("m", "2", actor="bob")
    reg.unpin("m", actor="bob")
    reg.unpin("m", actor="bob")  # no-op
    reg.set_alias("m", "prod", 1)
    reg.set_alias("m", "prod", 2, actor="carol")
    reg.set_alias("m", "canary", 2, actor="x" * 1000)
    reg.delete_alias("m", "prod", actor="dave")
    with pytest.raises(AliasNotFoundError):
        reg.delete_alias("m", "prod")
    state = reg.state("m")
    assert state["pinned"] is None and state["aliases"] == {"canary": 2}
    got = [(h["action"], h["alias"], h["from"], h["to"], h["actor"]) for h in state["history"]]
    assert got == [
        ("pin", None, None, 1, "alice"),
        ("pin", None, 1, 2, "bob"),
        ("unpin", None, 2, None, "bob"),
        ("alias_set", "prod", None, 1, None),
        ("alias_set", "prod", 1, 2, "carol"),
        ("alias_set", "canary", None, 2, "x" * 200),
        ("alias_delete", "prod", 2, None, "dave"),
    ]
    stamps = [datetime.fromisoformat(h["at"]) for h in state["history"]]
    assert stamps == sorted(stamps)


def test_traffic_and_shadow_are_kept_with_their_history(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    reg = registry_factory.make()
    publish_bytes(reg, tmp_path, b"a")
    publish_bytes(reg, tmp_path, b"b")
    reg.set_alias("m", "champion", 1)
    split = [{"version": "champion", "weight": 90}, {"version": 2, "weight": 10}]
    assert reg.set_traffic("m", split, actor="alice")["traffic"] == split
    reg.set_traffic("m", split, actor="alice")  # no-op: not a change
    assert reg.set_shadow("m", "2", actor="bob")["shadow"] == 2
    assert registry_factory.make().state("m")["traffic"] == split  # another reader sees it
    assert reg.clear_traffic("m", actor="carol")["traffic"] is None
    assert reg.clear_shadow("m")["shadow"] is None
    got = [(h["action"], h["from"], h["to"], h["actor"]) for h in reg.state("m")["history"][1:]]
    assert got == [
        ("traffic_set", None, split, "alice"),
        ("shadow_set", None, 2, "bob"),
        ("traffic_clear", split, None, "carol"),
        ("shadow_clear", 2, None, None),
    ]


def test_state_mutations_see_changes_made_by_other_registry_objects(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    a, b = registry_factory.make(), registry_factory.make()
    publish_bytes(a, tmp_path, b"x")
    a.set_alias("m", "one", 1)
    b.set_alias("m", "two", 1)  # b never read the state before: must not clobber "one"
    a.set_alias("m", "three", 1)  # a's cached view is stale: must not clobber "two"
    assert set(registry_factory.make().state("m")["aliases"]) == {"one", "two", "three"}


def test_concurrent_threads_do_not_lose_updates(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    publish_bytes(registry_factory.make(), tmp_path, b"x")
    registries = [registry_factory.make() for _ in range(8)]  # separate objects
    barrier = threading.Barrier(len(registries))
    errors: list[BaseException] = []

    def worker(i: int, r: Registry) -> None:
        try:
            barrier.wait()
            for k in range(5):
                r.set_alias("m", f"t{i}-{k}", 1, actor=f"thread{i}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i, r)) for i, r in enumerate(registries)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    state = registry_factory.make().state("m")
    assert len(state["aliases"]) == 40 and len(state["history"]) == 40


def test_delete_version_refuses_versions_in_use(reg: Registry, tmp_path: Path) -> None:
    for data in (b"a", b"b", b"c", b"d"):
        publish_bytes(reg, tmp_path, data)
    reg.pin("m", 1)
    reg.set_alias("m", "prod", 2)
    reg.set_shadow("m", 3)
    for v in (1, 2, 3):
        with pytest.raises(VersionInUseError):
            reg.delete_version("m", v)
    reg.delete_version("m", 4, actor="ops")
    assert reg.versions("m") == [1, 2, 3]
    with pytest.raises(VersionNotFoundError):
        reg.verify("m", 4)
    assert reg.state("m")["history"][-1]["action"] == "version_delete"
    assert publish_bytes(reg, tmp_path, b"e") == 5  # a deleted number is never reused
    assert reg.versions("m") == [1, 2, 3, 5]
    with pytest.raises(VersionNotFoundError):
        reg.verify("m", 4)
    assert reg.latest_version("m") == 5


def test_retention_keeps_the_newest_versions_and_every_version_in_use(
    reg: Registry, tmp_path: Path
) -> None:
    for v in range(1, 10):
        publish_bytes(reg, tmp_path, str(v).encode())
    assert reg.apply_retention("m", lambda v: False) == [], "no rule: every version is kept"
    reg.pin("m", 1)
    reg.set_alias("m", "prod", 2)
    reg.set_traffic("m", [{"version": 3, "weight": 90}, {"version": "prod", "weight": 10}])
    reg.set_shadow("m", 4)
    state = reg.set_retention("m", 2, actor="ops")
    assert state["keep_last"] == 2 and state["history"][-1]["action"] == "retention_set"
    asked: list[int] = []

    def in_use(v: int) -> bool:  # the caller's own knowledge: a job or sweep in flight
        asked.append(v)
        return v == 6

    assert reg.apply_retention("m", in_use, actor="job-1") == [5, 7]
    assert reg.versions("m") == [1, 2, 3, 4, 6, 8, 9]
    assert not {8, 9} & set(asked), "the newest two are not candidates"
    assert reg.state("m")["history"][-1]["actor"] == "job-1"
    assert publish_bytes(reg, tmp_path, b"10") == 10, "a deleted number is never reused"
    assert reg.apply_retention("m", lambda v: False) == [6, 8]
    assert reg.versions("m") == [1, 2, 3, 4, 9, 10]
    with pytest.raises(VersionInUseError):  # deleting by hand is unchanged
        reg.delete_version("m", 1)
    reg.delete_version("m", 9)
    for bad in (0, -1, True, "2", 2.0):
        with pytest.raises(InvalidNameError) as err:
            reg.set_retention("m", bad)
        assert err.value.field == "keep_last"
    assert reg.set_retention("m", None)["keep_last"] is None
    assert reg.state("m")["history"][-1]["action"] == "retention_clear"
    publish_bytes(reg, tmp_path, b"11")
    assert reg.apply_retention("m", lambda v: False) == []
    assert reg.versions("m") == [1, 2, 3, 4, 10, 11]


def test_read_only_registry_refuses_writes(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    writer = registry_factory.make()
    publish_bytes(writer, tmp_path, b"a")
    ro = registry_factory.make(read_only=True)
    assert ro.model_names() == ["m"] and ro.default_version("m") == 1
    for call in (
        lambda: ro.publish("m", tmp_path / "w.npz", {}),
        lambda: ro.pin("m", 1),
        lambda: ro.set_alias("m", "x", 1),
        lambda: ro.delete_version("m", 1),
    ):
        with pytest.raises(ReadOnlyRegistryError):
            call()
    assert writer.state("m")["history"] == []


# --------------------------------------------------------------------------------------------
# change token


def test_change_token_tracks_versions_and_state(reg: Registry, tmp_path: Path) -> None:
    empty_all = reg.change_token()
    assert reg.change_token() == empty_all
    publish_bytes(reg, tmp_path, b"a")
    t_all, t_m = reg.change_token(), reg.change_token("m")
    assert t_all != empty_all
    assert reg.change_token() == t_all and reg.change_token("m") == t_m  # stable when idle
    steps = [
        lambda: publish_bytes(reg, tmp_path, b"b"),
        lambda: reg.pin("m", 1),
        lambda: reg.set_alias("m", "prod", 2),
        lambda: reg.delete_alias("m", "prod"),
        lambda: reg.unpin("m"),
        lambda: reg.delete_version("m", 2),
    ]
    seen = {t_m}
    for step in steps:
        before_all = reg.change_token()
        step()
        tok = reg.change_token("m")
        assert tok not in seen
        seen.add(tok)
        assert reg.change_token() != before_all
    before_all = reg.change_token()
    publish_bytes(reg, tmp_path, b"c", name="other")  # a new model appears
    assert reg.change_token() != before_all
    assert reg.change_token("m") in seen


# --------------------------------------------------------------------------------------------
# processes publishing and changing the state at the same moment


N_PROCS = 6
PER_PROC = 3


def _publish_worker(url: str, cache: str, idx: int, barrier, results) -> None:  # noqa: ANN001
    reg = Registry(url, cache_dir=cache)
    scratch = Path(cache).parent / f"src-{idx}"
    scratch.mkdir(parents=True, exist_ok=True)
    payloads = []
    for k in range(PER_PROC):
        data = (f"writer {idx} model {k} ".encode()) * (2000 + 37 * idx + k)
        path = scratch / f"w{k}.npz"
        path.write_bytes(data)
        payloads.append((path, hashlib.sha256(data).hexdigest()))
    barrier.wait(timeout=60)
    for k, (path, sha) in enumerate(payloads):
        v = reg.publish("race", path, {"writer": idx, "k": k})
        # every other publish also sets an alias at once: no update may be lost
        if k % 2 == 0:
            reg.set_alias("race", f"w{idx}-{k}", v, actor=f"proc{idx}")
        results.put((idx, k, v, sha))


def test_processes_publishing_and_aliasing_at_once_get_gap_free_numbers_and_lose_nothing(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(N_PROCS)
    results = ctx.Queue()
    cache = str(tmp_path / "s3-cache")
    procs = [
        ctx.Process(target=_publish_worker, args=(registry_factory.url, cache, i, barrier, results))
        for i in range(N_PROCS)
    ]
    for p in procs:
        p.start()
    got = [results.get(timeout=180) for _ in range(N_PROCS * PER_PROC)]
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * N_PROCS

    total = N_PROCS * PER_PROC
    assert sorted(v for _, _, v, _ in got) == list(range(1, total + 1)), "distinct, gap-free"
    reg = registry_factory.make()
    assert reg.versions("race") == list(range(1, total + 1))
    for idx, k, v, sha in got:
        manifest = reg.verify("race", v)
        assert (manifest["writer"], manifest["k"], manifest["sha256"]) == (idx, k, sha)
    state = reg.state("race")
    expected = {f"w{idx}-{k}": v for idx, k, v, _ in got if k % 2 == 0}
    assert state["aliases"] == expected, "no alias update lost"
    assert len(state["history"]) == len(expected)
