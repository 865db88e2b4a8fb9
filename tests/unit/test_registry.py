"""The folder registry's own tests: its layout, temp folders, stat-keyed caches, flock'd
state.json, symlinks, and validation that never reaches the filesystem.

What every storage must do alike (publish, resolution, broken versions, state changes, change
tokens, concurrent publishers) is the shared suite, run on a folder and on S3:
tests/integration/test_registry_suite.py. Multi-process publishing, SIGKILL mid-publish and the
read-only mount live in tests/integration/test_registry_concurrency.py.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

import shared
import shared.registry.publishing as publishing_mod  # monkeypatched where names are looked up
import shared.registry.state as state_mod
import shared.registry.verification as verification_mod
from shared.registry import (
    AliasNotFoundError,
    BrokenVersionError,
    InvalidNameError,
    ModelNotFoundError,
    ReadOnlyRegistryError,
    Registry,
    RegistryError,
    VersionNotFoundError,
    resolve_ref,
    validate_alias,
    validate_model_name,
    validate_version,
)
from tests.registry_support import cleanup_temp, version_status

# --------------------------------------------------------------------------------------------
# helpers


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "models"


@pytest.fixture
def reg(root: Path) -> Registry:
    return Registry(root)


def write_file(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def publish_bytes(
    reg: Registry,
    tmp_path: Path,
    data: bytes,
    name: str = "m",
    manifest: dict | None = None,
    extras: dict[str, bytes] | None = None,
) -> int:
    src = write_file(tmp_path / "src" / f"w-{hashlib.sha256(data).hexdigest()[:8]}.npz", data)
    extra_paths = {}
    for fname, content in (extras or {}).items():
        extra_paths[fname] = write_file(tmp_path / "src" / f"extra-{fname}", content)
    return reg.publish(name, src, manifest or {}, extra_paths or None)


def tree_snapshot(path: Path) -> dict[str, tuple]:
    """Every entry under path with its identity, to prove readers wrote nothing."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(path):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            out[p] = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_mode)
    st = os.lstat(path)
    out[str(path)] = (st.st_ino, st.st_mtime_ns)
    return out


# --------------------------------------------------------------------------------------------
# publish + layout


def test_publish_layout_and_manifest(reg: Registry, root: Path, tmp_path: Path) -> None:
    weights = tmp_path / "model.npz"
    np.savez(weights, w=np.arange(6, dtype=np.float32).reshape(2, 3))
    history = tmp_path / "history.csv"
    history.write_text("epoch,loss\n1,0.5\n")
    caller = {
        "config": {"hidden_layers": [16], "seed": 0},
        "metrics": {"accuracy": np.float32(0.875), "confusion": np.eye(2, dtype=np.int64)},
        "dataset_fingerprint": "abc",
        "job_id": "job-1",
        "version": 999,  # dropped: the folder name is the truth
        "sha256": "caller value is replaced",
    }
    v = reg.publish("mnist", weights, caller, {"history.csv": history})
    assert v == 1
    assert reg.publish("mnist", weights, {"job_id": "job-2"}) == 2

    vdir = root / "mnist" / "1"
    assert sorted(os.listdir(vdir)) == ["history.csv", "manifest.json", "weights.npz"]
    on_disk = json.loads((vdir / "manifest.json").read_text())
    assert "version" not in on_disk
    data = weights.read_bytes()
    assert on_disk["sha256"] == hashlib.sha256(data).hexdigest()
    assert on_disk["size_bytes"] == len(data)
    assert on_disk["package_version"] == shared.__version__
    created = datetime.fromisoformat(on_disk["created_at"])
    assert created.utcoffset().total_seconds() == 0
    assert abs((datetime.now(UTC) - created).total_seconds()) < 60
    assert on_disk["files"] == {
        "history.csv": {
            "sha256": hashlib.sha256(history.read_bytes()).hexdigest(),
            "size_bytes": history.stat().st_size,
        }
    }
    assert on_disk["config"] == caller["config"]
    assert on_disk["metrics"] == {"accuracy": 0.875, "confusion": [[1, 0], [0, 1]]}
    assert on_disk["job_id"] == "job-1" and on_disk["dataset_fingerprint"] == "abc"

    m = reg.manifest("mnist", 1)
    assert m["version"] == 1 and m["sha256"] == on_disk["sha256"]
    assert reg.verify("mnist", "2")["job_id"] == "job-2"
    assert reg.versions("mnist") == [1, 2]
    assert reg.model_names() == ["mnist"]
    assert reg.weights_path("mnist", 1) == vdir / "weights.npz"
    with np.load(reg.weights_path("mnist", 1), allow_pickle=False) as z:
        assert z["w"].dtype == np.float32
    # no temp folders, lock files or state left by a publish
    assert sorted(os.listdir(root / "mnist")) == ["1", "2"]


def test_publish_rejects_bad_input_without_leaving_anything(
    reg: Registry, root: Path, tmp_path: Path
) -> None:
    src = write_file(tmp_path / "w.npz", b"weights")
    with pytest.raises(ValueError, match="strict JSON"):
        reg.publish("m", src, {"loss": float("nan")})
    with pytest.raises(ValueError, match="strict JSON"):
        reg.publish("m", src, {"obj": object()})
    with pytest.raises(FileNotFoundError):
        reg.publish("m", tmp_path / "missing.npz", {})
    with pytest.raises(FileNotFoundError):
        reg.publish("m", src, {}, {"extra.txt": tmp_path / "nope"})
    for bad in ["../x", "a/b", "weights.npz", "manifest.json", ".hidden", "", "é.txt", "a\x00b"]:
        with pytest.raises(InvalidNameError):
            reg.publish("m", src, {}, {bad: src})
    with pytest.raises(TypeError):
        reg.publish("m", src, ["not", "a", "dict"])  # type: ignore[arg-type]
    assert not (root / "m").exists() or os.listdir(root / "m") == []
    assert publish_bytes(reg, tmp_path, b"ok") == 1


def test_failure_mid_publish_leaves_no_version_and_no_temp(
    reg: Registry, root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    publish_bytes(reg, tmp_path, b"first")

    def broken_copy(src: Path, dst: Path) -> tuple[str, int]:
        dst.write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(publishing_mod, "copy_and_hash", broken_copy)
    with pytest.raises(OSError, match="No space"):
        publish_bytes(reg, tmp_path, b"second")
    monkeypatch.undo()
    assert reg.versions("m") == [1]
    assert sorted(os.listdir(root / "m")) == ["1"]
    assert publish_bytes(reg, tmp_path, b"third") == 2


def test_version_allocation_retries_when_another_publisher_wins(
    reg: Registry, root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Simulate a racing publisher: our scan is stale, so the first rename target is taken."""
    publish_bytes(reg, tmp_path, b"a")
    publish_bytes(reg, tmp_path, b"b")
    real_scan = publishing_mod.version_numbers
    calls = []

    def stale_scan(model_dir: Path) -> list[int]:
        calls.append(1)
        return [] if len(calls) == 1 else real_scan(model_dir)

    renames = []
    real_rename = os.rename

    def spy_rename(a, b):  # noqa: ANN001
        renames.append(os.path.basename(b))
        return real_rename(a, b)

    monkeypatch.setattr(publishing_mod, "version_numbers", stale_scan)
    monkeypatch.setattr(publishing_mod.os, "rename", spy_rename)
    v = publish_bytes(reg, tmp_path, b"c")
    monkeypatch.undo()
    assert renames == ["1", "3"]  # tried 1 (taken, ENOTEMPTY), rescanned, got 3
    assert v == 3
    assert reg.versions("m") == [1, 2, 3]
    assert reg.verify("m", 1)["sha256"] == hashlib.sha256(b"a").hexdigest()


def test_numbers_are_never_reused_even_past_broken_or_odd_entries(
    reg: Registry, root: Path, tmp_path: Path
) -> None:
    publish_bytes(reg, tmp_path, b"a")
    (root / "m" / "5").mkdir()  # a broken (empty-manifest) version folder
    (root / "m" / "5" / "junk").write_text("x")
    (root / "m" / "7").write_text("a stray file named like a version")
    (root / "m" / "notes").mkdir()
    (root / "m" / "010").mkdir()  # non-canonical: ignored
    assert reg.versions("m") == [1, 5]
    assert publish_bytes(reg, tmp_path, b"b") == 8
    assert reg.latest_version("m") == 8


# --------------------------------------------------------------------------------------------
# temp folders


def test_temp_folders_are_never_listed_and_stale_ones_are_cleaned(
    reg: Registry, root: Path, tmp_path: Path
) -> None:
    (root / "ghost" / ".tmp-abc").mkdir(parents=True)
    (root / "ghost" / ".tmp-abc" / "weights.npz").write_bytes(b"x")
    assert reg.model_names() == []  # a model with only a crashed publish is not listed
    assert reg.versions("ghost") == []
    assert reg.latest_version("ghost") is None

    publish_bytes(reg, tmp_path, b"a")
    stale = root / "m" / ".tmp-stale"
    fresh = root / "m" / ".tmp-fresh"
    for d in (stale, fresh):
        d.mkdir()
        (d / "weights.npz").write_bytes(b"partial")
    old = time.time() - 7200
    for p in (stale / "weights.npz", stale):
        os.utime(p, (old, old))
    stale_state = root / "m" / ".state.json.tmp-123"
    stale_state.write_text("{}")
    os.utime(stale_state, (old, old))
    assert reg.versions("m") == [1]

    # publish() cleans stale temp folders of its model, keeps fresh ones (maybe in progress)
    assert publish_bytes(reg, tmp_path, b"b") == 2
    assert not stale.exists() and not stale_state.exists()
    assert fresh.exists()
    assert cleanup_temp(reg, 3600) == 0
    assert cleanup_temp(reg, 0) == 2  # fresh one in "m" and the ghost's
    assert sorted(os.listdir(root / "m")) == ["1", "2"]


def test_cleanup_keeps_a_temp_folder_whose_files_are_still_being_written(
    reg: Registry, root: Path
) -> None:
    d = root / "m" / ".tmp-slow"
    d.mkdir(parents=True)
    (d / "weights.npz").write_bytes(b"x")
    old = time.time() - 7200
    os.utime(d, (old, old))  # folder old, but a file inside was written just now
    assert cleanup_temp(reg, 3600) == 0
    assert d.exists()


# --------------------------------------------------------------------------------------------
# broken versions


def _break(vdir: Path, how: str, tmp_path: Path) -> None:
    w, m = vdir / "weights.npz", vdir / "manifest.json"
    if how == "hash_mismatch":
        data = bytearray(w.read_bytes())
        data[0] ^= 0xFF
        w.write_bytes(bytes(data))
    elif how == "truncated_weights":
        w.write_bytes(w.read_bytes()[:3])
    elif how == "missing_weights":
        w.unlink()
    elif how == "weights_is_dir":
        w.unlink()
        w.mkdir()
    elif how == "weights_symlink":
        outside = write_file(tmp_path / "outside.npz", w.read_bytes())
        w.unlink()
        w.symlink_to(outside)
    elif how == "missing_manifest":
        m.unlink()
    elif how == "corrupt_manifest":
        m.write_text('{"sha256": "abc", truncated')
    elif how == "manifest_not_object":
        m.write_text("[1, 2, 3]")
    elif how == "manifest_missing_keys":
        body = json.loads(m.read_text())
        del body["sha256"]
        m.write_text(json.dumps(body))
    elif how == "manifest_bad_sha":
        body = json.loads(m.read_text())
        body["sha256"] = "../../etc/passwd"
        m.write_text(json.dumps(body))
    elif how == "extra_tampered":
        (vdir / "history.csv").write_text("epoch,loss\n1,0.1\n")
    elif how == "extra_missing":
        (vdir / "history.csv").unlink()
    else:  # pragma: no cover
        raise AssertionError(how)


BREAKAGES = {
    "hash_mismatch": "sha256 mismatch",
    "truncated_weights": "weights.npz has 3 bytes",
    "missing_weights": "weights.npz is missing",
    "weights_is_dir": "weights.npz is not a regular file",
    "weights_symlink": "weights.npz is not a regular file",
    "missing_manifest": "manifest.json is missing",
    "corrupt_manifest": "not valid JSON",
    "manifest_not_object": "not a JSON object",
    "manifest_missing_keys": "lacks required keys ['sha256']",
    "manifest_bad_sha": "invalid sha256",
    "extra_tampered": "history.csv",
    "extra_missing": "history.csv is missing",
}


@pytest.mark.parametrize("how", sorted(BREAKAGES))
def test_broken_versions_are_skipped_and_reported(
    how: str, reg: Registry, root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    publish_bytes(reg, tmp_path, b"good-one", extras={"history.csv": b"epoch,loss\n1,0.5\n"})
    publish_bytes(reg, tmp_path, b"good-two", extras={"history.csv": b"epoch,loss\n1,0.4\n"})
    reg.set_alias("m", "prod", 2)
    assert reg.latest_version("m") == 2  # verified (and cached) while good
    _break(root / "m" / "2", how, tmp_path)

    caplog.set_level(logging.WARNING, logger="shared.registry")
    for _ in range(5):  # a poller calling again and again
        assert reg.latest_version("m") == 1
        assert reg.default_version("m") == 1
    broken_logs = [r for r in caplog.records if "version 2 is broken" in r.getMessage()]
    assert len(broken_logs) == 1, "a broken version is logged once, not on every poll"
    assert BREAKAGES[how] in broken_logs[0].getMessage()

    assert reg.versions("m") == [1, 2]
    status = version_status(reg, "m", 2)
    assert status.startswith("broken: ") and BREAKAGES[how] in status
    assert version_status(reg, "m", 1) == "ok"
    rows = reg.describe_versions("m")
    assert [(r["version"], r["status"]) for r in rows] == [(1, "ok"), (2, "broken")]
    assert rows[1]["manifest"] is None and BREAKAGES[how] in rows[1]["error"]
    assert rows[0]["error"] is None and rows[0]["manifest"]["version"] == 1

    for call in (
        lambda: reg.verify("m", 2),
        lambda: reg.manifest("m", 2),
        lambda: reg.resolve("m", "2"),
        lambda: reg.resolve("m", "prod"),
        lambda: reg.pin("m", 2),
        lambda: reg.set_alias("m", "canary", 2),
    ):
        with pytest.raises(BrokenVersionError) as err:
            call()
        assert BREAKAGES[how] in err.value.reason
    assert reg.resolve("m", "latest") == 1
    assert reg.state("m")["pinned"] is None and "canary" not in reg.state("m")["aliases"]


def test_verification_is_cached_by_file_identity(
    reg: Registry, root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    publish_bytes(reg, tmp_path, b"weights-1", extras={"notes.txt": b"hello"})
    hashed: list[str] = []
    real_hash = verification_mod.hash_file

    def counting_hash(path: Path) -> tuple[str, int]:
        hashed.append(path.name)
        return real_hash(path)

    monkeypatch.setattr(verification_mod, "hash_file", counting_hash)
    reg.verify("m", 1)
    assert sorted(hashed) == ["notes.txt", "weights.npz"]
    for _ in range(20):
        reg.verify("m", 1)
        reg.latest_version("m")
    assert len(hashed) == 2, "a cached verification must not re-hash"

    # same size, different bytes: the changed identity forces a re-check that catches it
    (root / "m" / "1" / "weights.npz").write_bytes(b"weights-X")
    with pytest.raises(BrokenVersionError, match="sha256 mismatch"):
        reg.verify("m", 1)
    # an extra file changing is noticed too
    (root / "m" / "1" / "weights.npz").write_bytes(b"weights-1")
    assert reg.verify("m", 1)["version"] == 1
    (root / "m" / "1" / "notes.txt").write_bytes(b"HELLO")
    with pytest.raises(BrokenVersionError, match="notes.txt"):
        reg.verify("m", 1)


def test_warm_polling_reads_no_file_contents(
    reg: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After one warm-up, the poll path (token, default, latest, state) is only stat calls."""
    publish_bytes(reg, tmp_path, b"a")
    publish_bytes(reg, tmp_path, b"b")
    reg.pin("m", 1)
    reg.default_version("m"), reg.latest_version("m"), reg.state("m")

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("file content read on the warm poll path")

    monkeypatch.setattr(verification_mod, "hash_file", forbidden)
    monkeypatch.setattr(verification_mod, "read_nofollow", forbidden)
    monkeypatch.setattr(state_mod, "read_nofollow", forbidden)
    for _ in range(10):
        reg.change_token("m"), reg.change_token()
        assert reg.default_version("m") == 1
        assert reg.latest_version("m") == 2
        assert reg.state("m")["pinned"] == 1


# --------------------------------------------------------------------------------------------
# latest / default / resolve


def test_reads_on_an_empty_registry_create_nothing(reg: Registry, root: Path) -> None:
    """(Every storage's unknown-model errors: tests/integration/test_registry_suite.py.)"""
    for call in (lambda: reg.versions("nope"), lambda: reg.state("nope")):
        with pytest.raises(ModelNotFoundError):
            call()
    reg.change_token()
    assert reg.model_names() == []
    assert not root.exists()


# --------------------------------------------------------------------------------------------
# state: pin, aliases, history


@pytest.mark.parametrize(
    ("routes", "error", "field"),
    [
        ([], InvalidNameError, "routes"),
        ([{"version": 1, "weight": 90}], InvalidNameError, "routes"),  # sums to 90
        ([{"version": 1, "weight": 50}, {"version": "1", "weight": 50}], InvalidNameError, "routes"),
        ([{"version": 1, "weight": 100}, {"version": 2, "weight": -1}], InvalidNameError,
         "routes[1].weight"),
        ([{"version": 1, "weight": True}], InvalidNameError, "routes[0].weight"),
        ([{"version": "latest", "weight": 100}], InvalidNameError, "routes[0].version"),
        ([{"version": 1, "weight": 100, "extra": 1}], InvalidNameError, "routes[0].extra"),
        ([{"version": 3, "weight": 100}], VersionNotFoundError, "routes[0].version"),
        ([{"version": 1, "weight": 0}, {"version": "nope", "weight": 100}], AliasNotFoundError,
         "routes[1].version"),
    ],
)  # fmt: skip
def test_bad_traffic_is_refused_naming_the_field_and_changes_nothing(
    reg: Registry, tmp_path: Path, routes: list, error: type, field: str
) -> None:
    publish_bytes(reg, tmp_path, b"a")
    publish_bytes(reg, tmp_path, b"b")
    with pytest.raises(error) as caught:
        reg.set_traffic("m", routes)
    assert caught.value.field == field
    with pytest.raises(AliasNotFoundError) as caught:
        reg.set_shadow("m", "nope")
    assert caught.value.field == "version"
    assert reg.state("m")["traffic"] is None and reg.state("m")["shadow"] is None


def test_write_errors_name_the_input_and_path_lookups_do_not(reg: Registry, tmp_path) -> None:
    """What a caller passed is named (`field`), so the error table can say which input; the model
    a path names is not (its 404 is about the resource)."""
    publish_bytes(reg, tmp_path, b"a")
    for call, field in (
        (lambda: reg.pin("m", 9), "version"),
        (lambda: reg.set_alias("m", "Bad!", 1), "alias"),
        (lambda: reg.set_alias("m", "prod", 9), "version"),
        (lambda: reg.delete_alias("m", "prod"), "alias"),
        (lambda: reg.pin("ghost", 1), None),
        (lambda: reg.resolve("m", 9), None),
    ):
        with pytest.raises(RegistryError) as caught:
            call()
        assert caught.value.field == field, call


def test_references_resolve_by_one_rule_on_any_snapshot() -> None:
    """`resolve_ref` is what `Registry.resolve` applies to the store and inference's cache to its
    last scan: numbers, aliases, latest/default, the same errors."""
    usable = {"latest": 3, "default": 2}.get
    assert resolve_ref("m", 5, {}, usable) == 5 and resolve_ref("m", "5", {}, usable) == 5
    assert resolve_ref("m", "prod", {"prod": 1}, usable) == 1
    assert resolve_ref("m", "latest", {}, usable) == 3
    assert resolve_ref("m", "default", {}, usable) == 2
    with pytest.raises(AliasNotFoundError):
        resolve_ref("m", "prod", {}, usable)
    with pytest.raises(VersionNotFoundError):
        resolve_ref("m", "latest", {}, lambda ref: None)
    for bad in ("0", "Bad!", "01", 0):
        with pytest.raises(InvalidNameError):
            resolve_ref("m", bad, {}, usable)


def test_state_changes_return_the_new_state(reg: Registry, tmp_path: Path) -> None:
    publish_bytes(reg, tmp_path, b"a")
    assert reg.pin("m", 1)["pinned"] == 1
    assert reg.set_alias("m", "prod", 1)["aliases"] == {"prod": 1}
    assert reg.delete_alias("m", "prod")["aliases"] == {}
    assert reg.unpin("m")["pinned"] is None


# --------------------------------------------------------------------------------------------
# corrupt state.json


@pytest.mark.parametrize(
    "garbage",
    [
        b'{"pinned": 1, "aliases": {',
        b"",
        b"\xff\xfe not utf-8",
        b"[1, 2]",
        b'{"pinned": "../../etc"}',
        b'{"pinned": 0}',
        b'{"pinned": true}',
        b'{"aliases": ["prod"]}',
        b'{"aliases": {"../x": 1}}',
        b'{"aliases": {"prod": -1}}',
        b'{"history": {"a": 1}}',
    ],
)
def test_corrupt_state_keeps_last_good_and_next_write_repairs(
    garbage: bytes, root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    reg = Registry(root)
    publish_bytes(reg, tmp_path, b"a")
    publish_bytes(reg, tmp_path, b"b")
    reg.pin("m", 1, actor="ops")
    reg.set_alias("m", "prod", 2)
    good = reg.state("m")

    (root / "m" / "state.json").write_bytes(garbage)
    caplog.set_level(logging.ERROR, logger="shared.registry")
    for _ in range(5):
        assert reg.state("m") == good
        assert reg.default_version("m") == 1
        assert reg.resolve("m", "prod") == 2
    assert len([r for r in caplog.records if "corrupt" in r.getMessage()]) == 1

    fresh = Registry(root)  # never saw a good state: empty, never a crash
    assert fresh.state("m") == {
        "pinned": None,
        "aliases": {},
        "traffic": None,
        "shadow": None,
        "keep_last": None,
        "history": [],
    }
    assert fresh.default_version("m") == 2

    reg.set_alias("m", "canary", 1, actor="ops")  # the next write repairs the file
    repaired = json.loads((root / "m" / "state.json").read_text())
    assert repaired["pinned"] == 1
    assert repaired["aliases"] == {"prod": 2, "canary": 1}
    assert len(repaired["history"]) == 3
    assert fresh.state("m") == repaired
    backups = [p for p in os.listdir(root / "m") if p.startswith(".state.json.corrupt-")]
    assert len(backups) == 1
    assert (root / "m" / backups[0]).read_bytes() == garbage


def test_noop_change_on_corrupt_state_still_repairs(root: Path, tmp_path: Path) -> None:
    reg = Registry(root)
    publish_bytes(reg, tmp_path, b"a")
    (root / "m" / "state.json").write_text("{oops")
    reg.unpin("m")  # nothing to change, but the file gets rewritten valid
    assert json.loads((root / "m" / "state.json").read_text()) == {
        "pinned": None,
        "aliases": {},
        "traffic": None,
        "shadow": None,
        "keep_last": None,
        "history": [],
    }


# --------------------------------------------------------------------------------------------
# validation / path traversal

BAD_NAMES = [
    "",
    ".",
    "..",
    "../etc",
    "../../etc/passwd",
    "a/b",
    "a\\b",
    "/etc/passwd",
    "/",
    "a\x00b",
    "\x00",
    "ａbc",  # fullwidth a
    "mnist\u200b",  # zero-width space
    "mnіst",  # Cyrillic i
    "MNIST",
    "mnist\n",
    " mnist",
    "mnist ",
    "-mnist",
    "_mnist",
    "m.n",
    "~root",
    "x" * 65,
    "x" * 10_000,
    None,
    5,
    b"mnist",
    ["mnist"],
]


@pytest.mark.parametrize("bad", BAD_NAMES, ids=repr)
def test_bad_model_names_never_reach_the_filesystem(
    bad: object, reg: Registry, root: Path, tmp_path: Path
) -> None:
    publish_bytes(reg, tmp_path, b"a")
    before = tree_snapshot(tmp_path)
    with pytest.raises(InvalidNameError):
        validate_model_name(bad)
    src = tmp_path / "src"
    calls = [
        lambda: reg.publish(bad, next(src.iterdir()), {}),
        lambda: reg.versions(bad),
        lambda: reg.latest_version(bad),
        lambda: reg.default_version(bad),
        lambda: reg.state(bad),
        lambda: reg.verify(bad, 1),
        lambda: reg.manifest(bad, 1),
        lambda: reg.weights_path(bad, 1),
        lambda: reg.describe_versions(bad),
        lambda: reg.resolve(bad, "latest"),
        lambda: reg.pin(bad, 1),
        lambda: reg.unpin(bad),
        lambda: reg.set_alias(bad, "prod", 1),
        lambda: reg.delete_alias(bad, "prod"),
    ]
    if bad is not None:  # None means "every model" for these two
        calls += [lambda: reg.change_token(bad)]
    for call in calls:
        with pytest.raises(InvalidNameError):
            call()
    assert tree_snapshot(tmp_path) == before
    assert issubclass(InvalidNameError, ValueError) and issubclass(InvalidNameError, RegistryError)


BAD_VERSIONS = [
    0,
    -1,
    "0",
    "-1",
    "00",
    "01",
    "+1",
    " 1",
    "1 ",
    "1\n",
    "1.0",
    "1e3",
    "0x1",
    "١",  # Arabic-Indic one
    "１",  # fullwidth one
    "../1",
    "1/../../x",
    "",
    10**9,
    2**64,
    "1000000000",
    "9" * 100,
    1.0,
    True,
    None,
]


@pytest.mark.parametrize("bad", BAD_VERSIONS, ids=repr)
def test_bad_versions_are_rejected(bad: object, reg: Registry, tmp_path: Path) -> None:
    publish_bytes(reg, tmp_path, b"a")
    with pytest.raises(InvalidNameError):
        validate_version(bad)
    for call in (
        lambda: reg.verify("m", bad),
        lambda: reg.weights_path("m", bad),
        lambda: reg.pin("m", bad),
        lambda: reg.set_alias("m", "prod", bad),
    ):
        with pytest.raises(InvalidNameError):
            call()
    assert reg.state("m")["history"] == []


def test_good_versions() -> None:
    assert validate_version(1) == 1
    assert validate_version("42") == 42
    assert validate_version(999_999_999) == 999_999_999


@pytest.mark.parametrize(
    "bad",
    [
        "latest",
        "default",
        "123",
        "0",
        "../x",
        "a/b",
        "Prod",
        "ｐrod",
        "",
        "x" * 65,
        "a\x00",
        None,
        7,
    ],
    ids=repr,
)
def test_bad_aliases_are_rejected(bad: object, reg: Registry, tmp_path: Path) -> None:
    publish_bytes(reg, tmp_path, b"a")
    with pytest.raises(InvalidNameError):
        validate_alias(bad)
    with pytest.raises(InvalidNameError):
        reg.set_alias("m", bad, 1)
    with pytest.raises(InvalidNameError):
        reg.delete_alias("m", bad)
    assert reg.state("m")["aliases"] == {}


def test_good_names_and_aliases() -> None:
    assert validate_model_name("mnist") == "mnist"
    assert validate_model_name("fashion-mnist_2") == "fashion-mnist_2"
    assert validate_model_name("x" * 64) == "x" * 64
    assert validate_alias("prod") == "prod"
    assert validate_alias("v2") == "v2"


def test_symlinks_cannot_lead_outside_the_root(reg: Registry, root: Path, tmp_path: Path) -> None:
    publish_bytes(reg, tmp_path, b"a")
    outside = tmp_path / "outside"
    (outside / "1").mkdir(parents=True)
    (outside / "1" / "manifest.json").write_text("{}")
    (root / "evil").symlink_to(outside, target_is_directory=True)
    (root / "m" / "9").symlink_to(outside / "1", target_is_directory=True)

    assert reg.model_names() == ["m"]
    with pytest.raises(InvalidNameError, match="outside the registry root"):
        reg.versions("evil")
    with pytest.raises(InvalidNameError):
        reg.latest_version("evil")
    assert reg.versions("m") == [1]  # the symlinked "9" is not a version
    with pytest.raises(VersionNotFoundError):
        reg.verify("m", 9)
    assert publish_bytes(reg, tmp_path, b"b") == 10  # but its number is never reused


# --------------------------------------------------------------------------------------------
# change token


def test_change_token_costs_a_few_stats_and_no_reads(
    reg: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    publish_bytes(reg, tmp_path, b"a", name="a")
    publish_bytes(reg, tmp_path, b"b", name="b")
    reg.pin("a", 1)
    stats: list[str] = []
    real_lstat = os.lstat

    def counting_lstat(path, *args, **kwargs):  # noqa: ANN001
        stats.append(str(path))
        return real_lstat(path, *args, **kwargs)

    def no_open(*args: object, **kwargs: object) -> None:
        raise AssertionError("change_token must not open files")

    monkeypatch.setattr(os, "lstat", counting_lstat)
    monkeypatch.setattr(os, "open", no_open)
    monkeypatch.setattr("builtins.open", no_open)
    reg.change_token("a")
    assert len(stats) == 2
    stats.clear()
    reg.change_token()
    assert len(stats) == 1 + 2 * 2  # root + (folder, state.json) per model


def test_change_token_on_missing_root(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "nowhere", read_only=True)
    assert reg.change_token() == reg.change_token()
    assert reg.change_token("m") == ("m", None, None)
    assert reg.model_names() == []
    assert not (tmp_path / "nowhere").exists()


# --------------------------------------------------------------------------------------------
# read-only flag (the real read-only mount is tested in the integration file)


def test_read_only_registry_never_writes(root: Path, tmp_path: Path) -> None:
    writer = Registry(root)
    publish_bytes(writer, tmp_path, b"a")
    publish_bytes(writer, tmp_path, b"b")
    publish_bytes(writer, tmp_path, b"c", name="fresh")  # no state.json, no lock file
    writer.pin("m", 1)
    writer.set_alias("m", "prod", 2)
    (root / "m" / ".tmp-old").mkdir()
    old = time.time() - 10**6
    os.utime(root / "m" / ".tmp-old", (old, old))
    (root / "m" / "2" / "weights.npz").write_bytes(b"B")  # broken
    before = tree_snapshot(root)

    ro = Registry(root, read_only=True)
    assert ro.model_names() == ["fresh", "m"]
    assert ro.versions("m") == [1, 2]
    assert ro.latest_version("m") == 1 and ro.default_version("m") == 1
    assert ro.resolve("m", "default") == 1
    assert ro.state("fresh") == {
        "pinned": None,
        "aliases": {},
        "traffic": None,
        "shadow": None,
        "keep_last": None,
        "history": [],
    }
    assert ro.default_version("fresh") == 1
    assert [r["status"] for r in ro.describe_versions("m")] == ["ok", "broken"]
    ro.change_token(), ro.change_token("m"), ro.weights_path("m", 1), version_status(ro, "m", 2)
    for call in (
        lambda: ro.publish("m", root / "m" / "1" / "weights.npz", {}),
        lambda: ro.pin("m", 1),
        lambda: ro.unpin("m"),
        lambda: ro.set_alias("m", "x", 1),
        lambda: ro.delete_alias("m", "prod"),
    ):
        with pytest.raises(ReadOnlyRegistryError):
            call()
    assert issubclass(ReadOnlyRegistryError, RegistryError)
    assert tree_snapshot(root) == before
    assert not (root / "fresh" / ".state.lock").exists()


def test_history_is_capped_keeping_the_newest(
    reg: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(state_mod, "MAX_HISTORY", 3)
    publish_bytes(reg, tmp_path, b"a")
    publish_bytes(reg, tmp_path, b"b")
    for k in range(5):
        reg.pin("m", 1 + k % 2, actor=f"a{k}")
    assert [h["actor"] for h in reg.state("m")["history"]] == ["a2", "a3", "a4"]


def test_a_reader_forgets_the_verification_of_deleted_versions(reg: Registry, tmp_path: Path):
    """A long-running reader (an inference worker) verifies each version once and keeps the
    result; a deleted version's result goes at the next listing, so what it keeps is bounded by
    what the registry holds, not by every version it ever saw."""
    cache = reg.storage._verified_versions._cache  # the reader's verification results
    for i in range(3):
        publish_bytes(reg, tmp_path, f"weights {i}".encode())
    for v in reg.versions("m"):
        reg.verify("m", v)
    assert len(cache) == 3
    reg.delete_version("m", 1, actor="test")
    assert reg.versions("m") == [2, 3]
    assert sorted(Path(d).name for d in cache) == ["2", "3"]
