"""The registry under real concurrency and real failures: several processes, SIGKILL, read-only.

Everything here uses real OS processes (multiprocessing 'spawn', subprocess), no mocks of the
code under test: version allocation must hold across processes because it rests on the
filesystem's atomic rename, and state changes because they rest on flock.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from shared.registry import Registry
from tests import REPO_ROOT
from tests.registry_support import cleanup_temp

pytestmark = [pytest.mark.slow]

N_PROCS = 8
PER_PROC = 3


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


# --------------------------------------------------------------------------------------------
# workers (module level so 'spawn' children can import them)


def _publish_worker(root: str, idx: int, barrier, results) -> None:  # noqa: ANN001
    reg = Registry(root)
    scratch = Path(root).parent / f"src-{idx}"
    scratch.mkdir(parents=True, exist_ok=True)
    payloads = []
    for k in range(PER_PROC):
        data = (f"writer {idx} model {k} ".encode()) * (2000 + 37 * idx + k)
        path = scratch / f"w{k}.npz"
        path.write_bytes(data)
        extra = scratch / f"notes{k}.txt"
        extra.write_text(f"notes of {idx}/{k}")
        payloads.append((path, extra, hashlib.sha256(data).hexdigest()))
    barrier.wait(timeout=60)  # every process publishes at the same moment
    for k, (path, extra, sha) in enumerate(payloads):
        v = reg.publish(
            "race",
            path,
            {"job_id": f"job-{idx}-{k}", "writer": idx, "k": k},
            {"notes.txt": extra},
        )
        results.put((idx, k, v, sha))


def _alias_worker(root: str, idx: int, barrier, n_changes: int) -> None:  # noqa: ANN001
    reg = Registry(root)
    barrier.wait(timeout=60)
    for k in range(n_changes):
        reg.set_alias("race", f"p{idx}-{k}", 1 + (k % 2), actor=f"proc{idx}")


def _run_spawned(target, args_for) -> None:  # noqa: ANN001
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=target, args=args_for(i)) for i in range(N_PROCS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    codes = [p.exitcode for p in procs]
    assert codes == [0] * N_PROCS, f"worker exit codes {codes}"


# --------------------------------------------------------------------------------------------


def test_concurrent_publishers_get_distinct_contiguous_versions(tmp_path: Path) -> None:
    root = tmp_path / "models"
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(N_PROCS)
    results = ctx.Queue()
    _run_spawned(_publish_worker, lambda i: (str(root), i, barrier, results))
    got = [results.get(timeout=10) for _ in range(N_PROCS * PER_PROC)]

    total = N_PROCS * PER_PROC
    versions = sorted(v for _, _, v, _ in got)
    assert versions == list(range(1, total + 1)), "distinct and contiguous"

    reg = Registry(root)
    assert reg.versions("race") == list(range(1, total + 1))
    for idx, k, v, sha in got:
        manifest = reg.verify("race", v)  # manifest parses, every file hash matches
        assert manifest["version"] == v
        assert (manifest["writer"], manifest["k"], manifest["job_id"]) == (idx, k, f"job-{idx}-{k}")
        assert manifest["sha256"] == sha, "version folder holds exactly what its publisher wrote"
        notes = (root / "race" / str(v) / "notes.txt").read_text()
        assert notes == f"notes of {idx}/{k}"
    # each publisher's own versions are increasing (it publishes sequentially)
    for idx in range(N_PROCS):
        mine = [v for i, k, v, _ in sorted(got, key=lambda g: (g[0], g[1])) if i == idx]
        assert mine == sorted(mine)
    assert reg.latest_version("race") == total
    assert sorted(os.listdir(root / "race")) == sorted(str(v) for v in range(1, total + 1))


def test_concurrent_state_changes_lose_nothing(tmp_path: Path) -> None:
    root = tmp_path / "models"
    reg = Registry(root)
    src = tmp_path / "w.npz"
    for data in (b"one", b"two"):
        src.write_bytes(data)
        reg.publish("race", src, {})
    n_changes = 6
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(N_PROCS)
    _run_spawned(_alias_worker, lambda i: (str(root), i, barrier, n_changes))

    state = Registry(root).state("race")
    expected = {f"p{i}-{k}": 1 + (k % 2) for i in range(N_PROCS) for k in range(n_changes)}
    assert state["aliases"] == expected
    assert len(state["history"]) == N_PROCS * n_changes
    for i in range(N_PROCS):
        mine = [h for h in state["history"] if h["actor"] == f"proc{i}"]
        assert [h["alias"] for h in mine] == [f"p{i}-{k}" for k in range(n_changes)]
        assert all(h["action"] == "alias_set" and h["from"] is None for h in mine)
    leftovers = [n for n in os.listdir(root / "race") if n.startswith(".state.json.tmp-")]
    assert leftovers == []


# --------------------------------------------------------------------------------------------
# SIGKILL mid-publish

_KILLED_PUBLISHER = textwrap.dedent(
    """
    import os, sys, time
    import shared.registry.publishing as publishing
    from shared.registry import Registry

    root, src, marker, phase = sys.argv[1:5]

    def announce_and_hang():
        with open(marker, "w") as fh:
            fh.write(str(os.getpid()))
        time.sleep(120)

    if phase == "copy":

        def slow_copy(s, d):
            # copy the first part for real, then hang mid-file like a slow network volume
            with open(s, "rb") as fin, open(d, "xb") as fout:
                fout.write(fin.read(4096))
                fout.flush()
                os.fsync(fout.fileno())
            announce_and_hang()

        publishing.copy_and_hash = slow_copy
    elif phase == "before_rename":

        def hang_rename(a, b):
            announce_and_hang()

        publishing.os.rename = hang_rename
    Registry(root).publish("m", src, {"job_id": "doomed"})
    """
)


@pytest.mark.parametrize("phase", ["copy", "before_rename"])
def test_publisher_killed_mid_publish_leaves_no_version(phase: str, tmp_path: Path) -> None:
    root = tmp_path / "models"
    reg = Registry(root)
    small = tmp_path / "small.npz"
    small.write_bytes(b"first good model")
    assert reg.publish("m", small, {"job_id": "ok-1"}) == 1
    token = reg.change_token("m")

    big = tmp_path / "big.npz"
    big.write_bytes(os.urandom(4 * 1024 * 1024))
    marker = tmp_path / "marker"
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_PUBLISHER, str(root), str(big), str(marker), phase],
        env=_child_env(),
        cwd=REPO_ROOT,
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert proc.poll() is None, f"publisher exited early with {proc.returncode}"
            assert time.monotonic() < deadline, "publisher never reached the kill point"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL

    # no visible version, only an invisible temp folder holding the partial work
    assert reg.versions("m") == [1]
    assert reg.latest_version("m") == 1 and reg.default_version("m") == 1
    assert [d["version"] for d in reg.describe_versions("m")] == [1]
    temps = [n for n in os.listdir(root / "m") if n.startswith(".tmp-")]
    assert len(temps) == 1
    if phase == "before_rename":  # fully written, just never renamed into place
        assert json.loads((root / "m" / temps[0] / "manifest.json").read_text())["job_id"] == (
            "doomed"
        )
    else:
        assert (root / "m" / temps[0] / "weights.npz").stat().st_size < big.stat().st_size
    assert Registry(root, read_only=True).model_names() == ["m"]

    # the next publish gets the next number and removes the dead publisher's temp folder at once
    # (its name says which process on this host made it; that process is gone)
    assert reg.publish("m", small, {"job_id": "ok-2"}) == 2
    assert reg.change_token("m") != token
    assert sorted(os.listdir(root / "m")) == ["1", "2"]
    assert cleanup_temp(reg, 0) == 0


# --------------------------------------------------------------------------------------------
# read-only mount: a reader as another user on a chmod-ed tree, with an audit hook that fails
# on any write attempt (open for writing, mkdir, rename, unlink, flock ...)

_READ_ONLY_READER = textwrap.dedent(
    """
    import json, os, sys

    # Import first: the interpreter's stdlib may live where "nobody" cannot read (/root/.pyenv).
    from shared.registry import Registry, ReadOnlyRegistryError
    from tests.registry_support import version_status

    root = sys.argv[1]
    if os.geteuid() == 0:  # root ignores permissions: become nobody so the tree is read-only
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)

    # 1. prove the tree really is read-only for this process
    try:
        Registry(root).pin("m", 1)
        print("WRITE SUCCEEDED", file=sys.stderr)
        sys.exit(3)
    except PermissionError:
        pass
    try:
        Registry(root, read_only=True).pin("m", 1)
        sys.exit(4)
    except ReadOnlyRegistryError:
        pass

    # 2. from now on any write attempt is a hard failure
    WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    FORBIDDEN = {
        "os.rename", "os.remove", "os.rmdir", "os.mkdir", "os.chmod", "os.chown", "os.utime",
        "os.link", "os.symlink", "os.truncate", "shutil.rmtree", "shutil.copyfile",
        "fcntl.flock", "fcntl.lockf", "fcntl.fcntl",
    }
    attempts = []

    def hook(event, args):
        bad = event in FORBIDDEN
        if event == "open":
            mode, flags = args[1], args[2]
            bad = bool(flags and flags & WRITE_FLAGS) or (
                isinstance(mode, str) and any(c in mode for c in "wax+")
            )
        if bad:
            attempts.append((event, repr(args)[:200]))
            raise PermissionError(f"read-only reader attempted {event} {args!r}")

    sys.addaudithook(hook)

    out = {}
    for ro in (True, False):  # the read paths never write, whatever the flag says
        reg = Registry(root, read_only=ro)
        names = reg.model_names()
        res = {"names": names}
        for name in names:
            res[name] = {
                "versions": reg.versions(name),
                "latest": reg.latest_version(name),
                "default": reg.default_version(name),
                "state": reg.state(name),
                "describe": [(d["version"], d["status"]) for d in reg.describe_versions(name)],
                "status": {v: version_status(reg, name, v) for v in reg.versions(name)},
                "token_equal": reg.change_token(name) == reg.change_token(name),
            }
            if res[name]["default"] is not None:
                res[name]["resolve_default"] = reg.resolve(name, "default")
                res[name]["manifest_job"] = reg.manifest(name, res[name]["default"])["job_id"]
                with open(reg.weights_path(name, res[name]["default"]), "rb") as fh:
                    res[name]["weights_len"] = len(fh.read())
        res["resolve_alias"] = reg.resolve("m", "prod")
        res["token_all_equal"] = reg.change_token() == reg.change_token()
        out[str(ro)] = res
    out["attempts"] = attempts
    print(json.dumps(out))
    """
)


def _chmod_tree(path: Path, writable: bool) -> None:
    for dirpath, _dirnames, filenames in os.walk(path):
        for n in filenames:
            p = os.path.join(dirpath, n)
            if not os.path.islink(p):
                os.chmod(p, 0o644 if writable else 0o444)
        os.chmod(dirpath, 0o755 if writable else 0o555)


def test_readers_work_on_a_read_only_tree(tmp_path: Path) -> None:
    # tmp_path lives in a 0700 folder; the unprivileged reader needs a path it can traverse
    base = Path(tempfile.mkdtemp(prefix="registry-ro-"))
    os.chmod(base, 0o755)
    root = base / "models"
    try:
        writer = Registry(root)
        src = tmp_path / "w.npz"
        for i in range(3):
            src.write_bytes(f"model {i}".encode() * 100)
            writer.publish("m", src, {"job_id": f"job-{i}"})
        src.write_bytes(b"other")
        writer.publish("other", src, {"job_id": "other-1"})  # never pinned: no state, no lock
        writer.pin("m", 2, actor="ops")
        writer.set_alias("m", "prod", 1)
        (root / "m" / "3" / "weights.npz").write_bytes(b"X" * 700)  # v3 broken
        (root / "broken-state").mkdir()
        src.write_bytes(b"bs")
        writer.publish("broken-state", src, {"job_id": "bs-1"})
        (root / "broken-state" / "state.json").write_text("{corrupt")
        (root / "m" / ".tmp-crashed").mkdir()  # a crashed publish readers must not clean
        _chmod_tree(root, writable=False)

        proc = subprocess.run(
            [sys.executable, "-c", _READ_ONLY_READER, str(root)],
            env=_child_env(),
            cwd="/",
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        out = json.loads(proc.stdout)
        assert out["attempts"] == []
        for ro in ("True", "False"):
            res = out[ro]
            assert res["names"] == ["broken-state", "m", "other"]
            m = res["m"]
            assert m["versions"] == [1, 2, 3]
            assert m["latest"] == 2 and m["default"] == 2 and m["resolve_default"] == 2
            assert m["describe"] == [[1, "ok"], [2, "ok"], [3, "broken"]]
            assert m["status"]["3"].startswith("broken: weights.npz")
            assert m["state"]["pinned"] == 2 and m["state"]["aliases"] == {"prod": 1}
            assert m["manifest_job"] == "job-1" and m["weights_len"] == 700
            assert m["token_equal"] and res["token_all_equal"]
            assert res["resolve_alias"] == 1
            assert res["other"]["default"] == 1
            assert res["other"]["state"] == {
                "pinned": None,
                "aliases": {},
                "traffic": None,
                "shadow": None,
                "keep_last": None,
                "history": [],
            }
            assert res["broken-state"]["state"]["pinned"] is None
            assert res["broken-state"]["default"] == 1
        assert "corrupt" in proc.stderr  # logged, not crashed
        assert (root / "m" / ".tmp-crashed").exists()
        assert not (root / "other" / ".state.lock").exists()
        assert stat.S_IMODE(os.stat(root / "m").st_mode) == 0o555
    finally:
        _chmod_tree(base, writable=True)
        shutil.rmtree(base, ignore_errors=True)
