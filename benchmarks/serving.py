"""HTTP serving benchmark (issue 6): the inference service against a bare Flask endpoint.

    python -m benchmarks.serving            # ~6 min; results/serving-<date>.json
    python -m benchmarks.serving --quick    # ~1 min, a few seconds per point

One run measures, side by side (ratios matter: absolute figures drift on a shared machine):

1. single-image predict over HTTP at concurrency 1, 8 and 32 — p50/p95/p99 and requests/s — for
   the real service (``gunicorn -c inference_service/gunicorn.conf.py
   "inference_service.app:create_app()"``, default settings) and for benchmarks/bare_app.py under
   the same gunicorn configuration, driven by the same wrk script, interleaved (bare, ours, ours,
   bare, ...), medians reported, each ratio the median of the reps' paired ratios
   (`paired_ratios`);
2. batch predict, images/s for batches of 1, 32, 256 and 1024, for a JSON body, a ``.npy`` body
   (/v1) and the V2 binary tensor extension, against the in-process forward pass of the same model
   (``predict_proba``, one BLAS thread like a worker);
3. cold start: gunicorn start → first ``/readyz`` 200, and memory (RSS, PSS, USS from
   /proc/PID/smaps_rollup) per worker with one and with ten model versions loaded;
4. routes (``--sections routes``): one image through /v1 JSON, /v2 JSON and /v2 binary on the
   same server, interleaved, each V2 route as a ratio to /v1;
5. profile (``--sections profile``): where one worker's time goes under single-image load at
   c=8, from a py-spy sampling profile (HTTP, decode, forward, figures, logging, answer);
6. rollout (``--sections rollout``, not in the default set): single-image predict on the default
   route at concurrency 1 and 8, interleaved, with the default version alone, with a 90/10
   traffic split, and with a shadow version; ratios to the default alone, and how many requests
   the shadow compared or dropped.

The model is trained once per run (default architecture, one epoch, the real CLI) and published
into a temporary registry twice, with a 90/10 traffic split over the two versions (as a rollout
runs it; ``--no-split``: one version); every process and temporary folder is cleaned up at the end.
``--env KEY=VALUE`` starts both servers with extra settings (e.g. ``GUNICORN_THREADS=4``), which
is how the levers were compared.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.client
import io
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from benchmarks.common import (
    REPO_ROOT,
    Interference,
    cpu_busy_ticks,
    default_data_dir,
    machine_info,
    markdown_table,
    now_iso,
    process_cpu_seconds,
    save_result,
    stop_process_group,
    wait_until_quiet,
)
from shared.redis_embedded import free_port

HERE = Path(__file__).resolve().parent
WRK_SCRIPT = HERE / "wrk_post.lua"
MODEL_NAME = "mnist"
OURS_APP = "inference_service.app:create_app()"
BARE_APP = "benchmarks.bare_app:create_app()"
GUNICORN_CONF = "inference_service/gunicorn.conf.py"
PREDICT_PATH = f"/v1/models/{MODEL_NAME}/predict"
INFER_PATH = f"/v2/models/{MODEL_NAME}/infer"

CONCURRENCY = (1, 8, 32)
BATCHES = (1, 32, 256, 1024)
BODY_KINDS = ("json", "npy", "v2-binary")

#: Targets of issues 6 and 21 (checked and printed, never asserted).
TARGETS = {
    "c8_split_throughput_ratio_min": 0.95,
    "shadow_p50_ratio_max": 1.1,
    "c8_throughput_ratio_min": 0.80,
    "c8_p99_ratio_max": 1.5,
    "c1_p50_ms_max": 0.5,
    "c1_p99_ms_max": 1.0,
    "binary_vs_inprocess_at_1024_min": 0.80,
    "v2_vs_v1_min": 0.95,
}


# ---------------------------------------------------------------------------------------------
# processes


def http_get(port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def http_post(
    port: int, path: str, body: bytes, content_type: str, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", path, body, {"Content-Type": content_type, **(headers or {})})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def server_env(
    registry: Path | None, port: int, extra: dict[str, str], root: Path = REPO_ROOT
) -> dict[str, str]:
    """The environment a server gets: ours, minus anything a test or shell left that would change
    the defaults being measured (a shared metrics folder, thread counts). `root` is the source
    tree it runs (another checkout for the baseline), first on its PYTHONPATH."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in {
            "PROMETHEUS_MULTIPROC_DIR",
            "WEB_CONCURRENCY",
            "GUNICORN_THREADS",
            "GUNICORN_CMD_ARGS",
            "MODEL_CACHE_SIZE",
            "REGISTRY_POLL_SECONDS",
            "LOG_LEVEL",
        }
    }
    env["INFERENCE_PORT"] = str(port)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    if registry is not None:
        env["MODEL_REGISTRY_DIR"] = str(registry)
    env.update(extra)
    return env


@dataclass
class Server:
    """One gunicorn master (and its workers) on a free loopback port."""

    app: str
    registry: Path | None
    log_path: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    #: The source tree it runs: this checkout, or the baseline's (`--baseline`).
    root: Path = REPO_ROOT
    port: int = 0
    proc: subprocess.Popen | None = None
    started_at: float = 0.0

    def start(self) -> Server:
        self.port = free_port()
        self.log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        cmd = [sys.executable, "-m", "gunicorn", "-c", GUNICORN_CONF, self.app]
        self.started_at = time.perf_counter()
        self.proc = subprocess.Popen(
            cmd,
            cwd=self.root,
            env=server_env(self.registry, self.port, self.extra_env, self.root),
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() reaches every worker
        )
        return self

    def wait_ready(self, timeout: float = 60.0, path: str = "/readyz") -> float:
        """Seconds from start() until `path` first answered 200 (polled every 5 ms)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.app} exited ({self.proc.returncode}); see {self.log_path}"
                )
            with contextlib.suppress(OSError, http.client.HTTPException):
                if http_get(self.port, path, timeout=2)[0] == 200:
                    return time.perf_counter() - self.started_at
            time.sleep(0.005)
        raise RuntimeError(f"{self.app} not ready after {timeout}s; see {self.log_path}")

    def worker_pids(self) -> list[int]:
        assert self.proc is not None
        pid = self.proc.pid
        try:
            text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
        except OSError:
            return []
        return sorted(int(p) for p in text.split())

    def stop(self) -> None:
        proc = self.proc
        if proc is None:
            return
        stop_process_group(proc, timeout=25)
        self.proc = None
        self.log.close()


@contextlib.contextmanager
def baseline_checkout(ref: str | None, work: Path) -> Iterator[tuple[str, Path] | None]:
    """(ref, a detached checkout of `ref`) for the rotation's baseline server, removed after;
    None without a ref. It runs with this checkout's virtualenv: its own code comes first on the
    server's PYTHONPATH."""
    if ref is None:
        yield None
        return
    root = work / "baseline-src"
    subprocess.run(["git", "-C", str(REPO_ROOT), "worktree", "add", "--detach", "-q", str(root), ref],
                   check=True)  # fmt: skip
    try:
        yield ref, root
    finally:
        subprocess.run(["git", "-C", str(REPO_ROOT), "worktree", "remove", "--force", str(root)],
                       check=False)  # fmt: skip


@contextlib.contextmanager
def running(server: Server, ready_path: str = "/readyz") -> Iterator[Server]:
    server.start()
    try:
        server.wait_ready(path=ready_path)
        yield server
    finally:
        server.stop()


class OthersProbe:
    """Share of the machine's CPUs used by processes that are neither this benchmark, its wrk
    runs, nor the given servers (master and workers) while a block runs: the disturbance."""

    def __init__(self, *servers: Server) -> None:
        self.servers = servers

    def _ours(self) -> float:
        t = os.times()
        total = t.user + t.system + t.children_user + t.children_system
        for server in self.servers:
            if server.proc is not None:
                total += sum(map(process_cpu_seconds, [server.proc.pid, *server.worker_pids()]))
        return total

    def __enter__(self) -> OthersProbe:
        self.ticks, self.own, self.wall = cpu_busy_ticks(), self._ours(), time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        busy0, total0 = self.ticks
        busy1, total1 = cpu_busy_ticks()
        wall = time.perf_counter() - self.wall
        ours = self._ours() - self.own
        others = (busy1 - busy0) / os.sysconf("SC_CLK_TCK") - ours
        self.share = max(0.0, others / (wall * (os.cpu_count() or 1))) if total1 > total0 else 0.0


# ---------------------------------------------------------------------------------------------
# the load generator


def wrk_binary() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    return path


def parse_wrk(stdout: str) -> dict[str, Any]:
    """The JSON line the Lua done() prints, plus derived requests/s and error count."""
    for line in stdout.splitlines():
        if line.startswith("WRK_JSON "):
            out = json.loads(line[len("WRK_JSON ") :])
            break
    else:
        raise RuntimeError(f"no WRK_JSON line in wrk output:\n{stdout[-2000:]}")
    seconds = out["duration_us"] / 1e6
    out["rps"] = out["requests"] / seconds if seconds > 0 else 0.0
    out["errors"] = sum(
        out[k]
        for k in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts")
    )
    return out


def run_wrk(
    port: int,
    path: str,
    body_file: Path,
    *,
    connections: int,
    seconds: int,
    content_type: str = "application/json",
    header: str = "",
    host: str = "127.0.0.1",
) -> dict[str, Any]:
    """wrk with one thread (the load generator shares the 2 cores; one epoll thread drives 32
    connections easily) and `connections` open connections for `seconds`, against `host`."""
    env = dict(os.environ)
    env.update(BENCH_BODY=str(body_file), BENCH_CONTENT_TYPE=content_type, BENCH_HEADER=header)
    cmd = [
        wrk_binary(),
        "-t1",
        f"-c{connections}",
        f"-d{max(1, int(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(WRK_SCRIPT),
        f"http://{host}:{port}{path}",
    ]
    with Interference(children=True) as probe:
        done = subprocess.run(
            cmd, env=env, capture_output=True, text=True, timeout=seconds + 60, check=False
        )
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr[-2000:]}")
    out = parse_wrk(done.stdout)
    out["wrk_cpu_seconds"] = round(probe.cpu, 3)
    return out


# ---------------------------------------------------------------------------------------------
# bodies


def sample_images(n: int, seed: int = 0) -> np.ndarray:
    """n MNIST test images as uint8 [n, 784] (random ones if the data set is missing)."""
    try:
        from shared.datasets import load_dataset

        data = load_dataset("mnist", default_data_dir())
        x = data.x_test[:n]
        if x.dtype != np.uint8:
            x = np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)
        if len(x) == n:
            return x.reshape(n, 784)
    except Exception:  # noqa: BLE001 - bodies only need plausible pixels
        pass
    return np.random.default_rng(seed).integers(0, 256, (n, 784), dtype=np.uint8)


def json_body(x: np.ndarray) -> bytes:
    """The documented /v1 body: raw 0-255 integers."""
    import orjson

    return orjson.dumps({"instances": x.astype(np.int64).tolist()})


def npy_body(x: np.ndarray) -> bytes:
    """float32 [N, 784] pixels in [0, 1] as a .npy file."""
    buf = io.BytesIO()
    np.save(buf, (x.astype(np.float32) / np.float32(255.0)), allow_pickle=False)
    return buf.getvalue()


def v2_json_body(x: np.ndarray) -> bytes:
    """A V2 infer request with the pixels as a UINT8 JSON tensor (the README's example)."""
    import orjson

    tensor = {"name": "input", "datatype": "UINT8", "shape": [len(x), 784]}
    return orjson.dumps({"inputs": [{**tensor, "data": x.astype(np.int64).ravel().tolist()}]})


def v2_binary_body(x: np.ndarray) -> tuple[bytes, str]:
    """(body, header length) of a V2 infer request, FP32 tensor and outputs both binary."""
    import orjson

    raw = (x.astype(np.float32) / np.float32(255.0)).astype("<f4").tobytes()
    head = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "datatype": "FP32",
                    "shape": [len(x), 784],
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "parameters": {"binary_data_output": True},
        }
    )
    return head + raw, str(len(head))


@dataclass
class Request:
    path: str
    body_file: Path
    content_type: str
    header: str = ""


def make_request(kind: str, x: np.ndarray, folder: Path) -> Request:
    n = len(x)
    if kind == "json":
        body, ctype, header, path = json_body(x), "application/json", "", PREDICT_PATH
    elif kind == "npy":
        body, ctype, header, path = npy_body(x), "application/x-npy", "", PREDICT_PATH
    elif kind == "v2-json":
        body, ctype, header, path = v2_json_body(x), "application/json", "", INFER_PATH
    elif kind == "v2-binary":
        body, length = v2_binary_body(x)
        ctype, header, path = (
            "application/octet-stream",
            f"Inference-Header-Content-Length: {length}",
            INFER_PATH,
        )
    else:  # pragma: no cover
        raise ValueError(kind)
    file = folder / f"body-{kind}-{n}.bin"
    file.write_bytes(body)
    return Request(path, file, ctype, header)


def check_request(port: int, req: Request, n: int) -> None:
    """One request by hand: the body is accepted and answers n predictions (no silent 4xx)."""
    headers = {}
    if req.header:
        name, value = req.header.split(":", 1)
        headers[name] = value.strip()
    status, body = http_post(port, req.path, req.body_file.read_bytes(), req.content_type, headers)
    if status != 200:
        raise RuntimeError(f"{req.path} ({req.content_type}) answered {status}: {body[:300]!r}")
    if req.path == PREDICT_PATH:
        got = len(json.loads(body)["predictions"])
    elif not req.header:  # V2 JSON answer
        outputs = {o["name"]: o for o in json.loads(body)["outputs"]}
        got = len(outputs["predictions"]["data"])
    else:  # V2 binary answer: JSON header, then FP32 [n, 10] and INT64 [n]
        got = (len(body) - body.index(b"}]}") - 3) // (10 * 4 + 8)
    if got != n:
        raise RuntimeError(f"{req.path}: {got} predictions for {n} images")


# ---------------------------------------------------------------------------------------------
# sections


QUIET_WAIT = [20.0]  # seconds quiet() may wait; --quiet-wait sets it


def quiet(log: Any) -> None:
    """Wait (up to --quiet-wait s) for other processes to leave the CPUs mostly idle."""
    if QUIET_WAIT[0] <= 0:
        return
    share = wait_until_quiet(0.10, QUIET_WAIT[0])
    if share > 0.10:
        log(f"  (machine busy: other processes use {share:.0%} of the CPUs)")


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over repeated wrk runs of one point."""
    keys = ("rps", "p50_us", "p95_us", "p99_us", "mean_us", "max_us")
    out = {k: round(median([r[k] for r in runs]), 1) for k in keys}
    out["errors"] = sum(r["errors"] for r in runs)
    out["requests"] = sum(r["requests"] for r in runs)
    out["others_cpu_share"] = round(median([r.get("others_cpu_share", 0.0) for r in runs]), 3)
    return out


T = TypeVar("T")

#: What a ratio of two servers compares: throughput, and latency percentiles.
RATIO_KEYS = {"throughput_ratio": "rps", "p50_ratio": "p50_us", "p99_ratio": "p99_us"}


def paired_ratios(runs: list[dict[str, Any]], ref_runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each of `RATIO_KEYS` as the median, over reps, of the rep's ratio to the reference's run
    in the same rep (and the per-rep ratios). Why paired: this host moves one server's
    throughput by ±15 % between points minutes apart (BENCHMARKS.md §3, runs 9 and 10), so a
    ratio of two medians can pair one server's fast minute with the other's slow one; the two
    runs of a rep are back to back (`rotation_order`)."""
    out: dict[str, Any] = {}
    for name, key in RATIO_KEYS.items():
        per_rep = [round(r[key] / b[key], 3) for r, b in zip(runs, ref_runs, strict=True) if b[key]]
        out[name] = round(median(per_rep), 3) if per_rep else None
        out[f"{name}_per_rep"] = per_rep
    return out


def rotation_order(labels: list[T], rep: int) -> list[T]:
    """The servers' order in rep `rep`: as given, then reversed, by turns (A B C, C B A, ...), so
    a drift of the host's speed during a rep does not always favour the same server."""
    return labels if rep % 2 == 0 else labels[::-1]


def bench_latency(
    work: Path,
    registry: Path,
    *,
    concurrency: tuple[int, ...],
    seconds: int,
    reps: int,
    extra_env: dict[str, str],
    log: Any,
    variants: dict[str, dict[str, str]] | None = None,
    baseline: tuple[str, Path] | None = None,
) -> dict[str, Any]:
    """Single-image predict, ours vs bare, interleaved; medians per concurrency. Each of
    `variants` (label → extra environment) is one more server of ours in the same rotation, so a
    lever is measured against the default and bare in one run; so is `baseline` (a git ref and
    its checkout: the service as it was, with its own defaults)."""
    x = sample_images(1)
    req = make_request("json", x, work)
    servers = {
        "bare": Server(BARE_APP, None, work / "bare.log", extra_env),
        "ours": Server(OURS_APP, registry, work / "ours.log", extra_env),
    }
    for label, env in (variants or {}).items():
        servers[f"ours[{label}]"] = Server(
            OURS_APP, registry, work / f"ours-{label}.log", {**extra_env, **env}
        )
    if baseline is not None:
        ref, root = baseline
        servers[f"baseline[{ref}]"] = Server(
            OURS_APP, registry, work / "baseline.log", extra_env, root=root
        )
    with contextlib.ExitStack() as stack:
        for server in servers.values():
            stack.enter_context(running(server))
        for label, server in servers.items():
            if label != "bare":
                check_request(server.port, req, 1)
        raw = rotate(servers, req, concurrency, seconds=seconds, reps=reps, log=log)
    table = {}
    for c in concurrency:
        b = summarise(raw["bare"][str(c)])
        point: dict[str, Any] = {"bare": b}
        for label in servers:
            if label == "bare":
                continue
            o = summarise(raw[label][str(c)])
            ratios = paired_ratios(raw[label][str(c)], raw["bare"][str(c)])
            if label == "ours":
                point.update({"ours": o, **ratios})
            else:
                point.setdefault("variants", {})[label] = {**o, **ratios}
        table[str(c)] = point
    return {
        "seconds_per_point": seconds,
        "reps": reps,
        "variants": variants or {},
        "baseline": None if baseline is None else baseline[0],
        "points": table,
        "raw": raw,
    }


def rotate(
    servers: dict[str, Server],
    req: Request,
    concurrency: tuple[int, ...],
    *,
    seconds: int,
    reps: int,
    log: Any,
) -> dict[str, dict[str, list]]:
    """wrk against running `servers` in rotation (warm-up first), `reps` times per concurrency:
    label → concurrency → runs."""
    raw: dict[str, dict[str, list]] = {label: {} for label in servers}
    for server in servers.values():  # warm-up: imports, first requests, BLAS buffers
        run_wrk(server.port, req.path, req.body_file, connections=8, seconds=1)
    for c in concurrency:
        quiet(log)
        for rep in range(reps):
            for label in rotation_order(list(servers), rep):
                server = servers[label]
                with OthersProbe(*servers.values()) as probe:
                    result = run_wrk(
                        server.port, req.path, req.body_file, connections=c, seconds=seconds
                    )
                result["others_cpu_share"] = round(probe.share, 3)
                raw[label].setdefault(str(c), []).append(result)
                log(
                    f"  c={c:<3} rep {rep + 1}/{reps} {label:<4} {result['rps']:8.0f} req/s  "
                    f"p50 {result['p50_us'] / 1e3:6.3f} ms  p95 {result['p95_us'] / 1e3:6.3f}  "
                    f"p99 {result['p99_us'] / 1e3:6.3f}  errors {result['errors']}  "
                    f"others {result['others_cpu_share']:.0%}"
                )
    return raw


#: The single-image bodies the routes section compares on one server (v1 JSON is the reference).
ROUTE_KINDS = ("json", "v2-json", "v2-binary")


def bench_routes(
    work: Path,
    registry: Path,
    *,
    concurrency: tuple[int, ...],
    seconds: int,
    reps: int,
    extra_env: dict[str, str],
    log: Any,
) -> dict[str, Any]:
    """One image through /v1 JSON, /v2 JSON and /v2 binary on the same server, interleaved:
    medians per concurrency and each V2 route's throughput and p50 as a ratio to /v1's."""
    x = sample_images(1)
    reqs = {kind: make_request(kind, x, work) for kind in ROUTE_KINDS}
    raw: dict[str, dict[str, list]] = {kind: {} for kind in ROUTE_KINDS}
    with running(Server(OURS_APP, registry, work / "routes.log", extra_env)) as server:
        for req in reqs.values():
            check_request(server.port, req, 1)
            run_wrk(server.port, req.path, req.body_file, connections=8, seconds=1,
                    content_type=req.content_type, header=req.header)  # fmt: skip
        for c in concurrency:
            quiet(log)
            for rep in range(reps):
                for kind in rotation_order(list(reqs), rep):
                    req = reqs[kind]
                    result = run_wrk(server.port, req.path, req.body_file, connections=c,
                                     seconds=seconds, content_type=req.content_type,
                                     header=req.header)  # fmt: skip
                    raw[kind].setdefault(str(c), []).append(result)
                    log(f"  c={c:<3} rep {rep + 1}/{reps} {kind:<9} {result['rps']:8.0f} req/s  "
                        f"p50 {result['p50_us'] / 1e3:6.3f} ms  errors {result['errors']}")  # fmt: skip
    points = {}
    for c in concurrency:
        ref = summarise(raw["json"][str(c)])
        point: dict[str, Any] = {"json": ref}
        for kind in ROUTE_KINDS[1:]:
            o = summarise(raw[kind][str(c)])
            point[kind] = {**o, **paired_ratios(raw[kind][str(c)], raw["json"][str(c)])}
        points[str(c)] = point
    return {"seconds_per_point": seconds, "reps": reps, "points": points, "raw": raw}


#: Where a sampled stack's time goes: the first of these found walking from the innermost frame
#: outwards names its part; anything else in a request is "HTTP" (gunicorn's parsing and writing,
#: the WSGI glue, routing).
PROFILE_PARTS = (
    ("logging", ("gunicorn/glogging.py", "/logging/__init__.py")),
    ("figures", ("inference_service/telemetry.py", "prometheus_client/")),
    ("decode", ("inference_service/decoders/",)),
    ("forward", ("shared/nn/",)),
    ("answer", ("inference_service/responses.py",)),
)


def classify_stacks(raw: str) -> dict[str, int]:
    """Samples per part (PROFILE_PARTS, else "HTTP") of py-spy's raw output: one line per
    distinct stack, ``frame;frame;... count``, frames outermost first."""
    out = {part: 0 for part, _ in PROFILE_PARTS} | {"HTTP": 0}
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        part = "HTTP"
        for frame in reversed(stack.split(";")):
            found = next((p for p, keys in PROFILE_PARTS if any(k in frame for k in keys)), None)
            if found is not None:
                part = found
                break
        out[part] += int(count)
    return out


def bench_profile(
    work: Path,
    registry: Path,
    *,
    seconds: int,
    extra_env: dict[str, str],
    log: Any,
    root: Path = REPO_ROOT,
) -> dict[str, Any]:
    """Where one worker's time goes under single-image load at c=8: py-spy samples the worker
    (idle waits excluded) while wrk drives the service; each sample is given to a part. `root`:
    the source tree served (the baseline's checkout for the "before" breakdown)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        raise SystemExit("the profile section needs py-spy: pip install 'py-spy>=0.4,<1'")
    req = make_request("json", sample_images(1), work)
    out = work / f"profile-{root.name}.txt"
    server = Server(OURS_APP, registry, work / f"profile-{root.name}.log", extra_env, root=root)
    with running(server):
        check_request(server.port, req, 1)
        run_wrk(server.port, req.path, req.body_file, connections=8, seconds=1)  # warm-up
        quiet(log)
        server_pids = server.worker_pids()
        worker = server_pids[0]
        record = subprocess.Popen(
            [spy, "record", "--pid", str(worker), "--duration", str(seconds), "--rate", "1000",
             "--format", "raw", "--nonblocking", "-o", str(out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        load = run_wrk(server.port, req.path, req.body_file, connections=8, seconds=seconds + 1)
        record.wait(timeout=seconds + 30)
    samples = classify_stacks(out.read_text() if out.exists() else "")
    total = sum(samples.values())
    # Samples are 1 ms apart; the sampled worker answers about 1/workers of the requests.
    workers = len(server_pids) or 1
    handled = load["rps"] * seconds / workers
    per_request_us = {
        part: round(n * 1000 / handled, 1) if handled else None for part, n in samples.items()
    }
    shares = {part: round(n / total, 3) if total else None for part, n in samples.items()}
    log("  " + ", ".join(f"{p} {shares[p]:.0%}" for p in samples if total))
    return {
        "seconds": seconds,
        "rps": load["rps"],
        "samples": samples,
        "shares": shares,
        "per_request_us": per_request_us,
    }


#: The rollout section's servers: label → what its registry holds besides versions 1 and 2 of
#: the same model file (so every side costs the same forward pass).
ROLLOUT_SETUPS = ("default", "split-90-10", "shadow")


def bench_rollout(
    work: Path,
    model_path: Path,
    *,
    concurrency: tuple[int, ...],
    seconds: int,
    reps: int,
    extra_env: dict[str, str],
    log: Any,
) -> dict[str, Any]:
    """Single-image predict on the default route, interleaved: the default version alone, a
    90/10 traffic split, and the default version with a shadow; ratios to the default alone,
    and what the shadow managed (requests compared, runs dropped) from GET /v1/models/<name>."""
    from shared.registry import Registry

    x = sample_images(1)
    req = make_request("json", x, work)
    servers = {}
    for label in ROLLOUT_SETUPS:
        folder = work / f"rollout-{label}"
        registry = Registry(folder)
        for _ in range(2):
            registry.publish(MODEL_NAME, model_path, {"metrics": {}, "source": "benchmarks"})
        registry.pin(MODEL_NAME, 1)
        if label == "split-90-10":
            registry.set_traffic(
                MODEL_NAME, [{"version": 1, "weight": 90}, {"version": 2, "weight": 10}]
            )
        elif label == "shadow":
            registry.set_shadow(MODEL_NAME, 2)
        servers[label] = Server(OURS_APP, folder, work / f"rollout-{label}.log", extra_env)
    with contextlib.ExitStack() as stack:
        for server in servers.values():
            stack.enter_context(running(server))
            check_request(server.port, req, 1)
        raw = rotate(servers, req, concurrency, seconds=seconds, reps=reps, log=log)
        status, body = http_get(servers["shadow"].port, f"/v1/models/{MODEL_NAME}")
        live = json.loads(body)["live"] if status == 200 else {}
    points = {}
    for c in concurrency:
        base = summarise(raw["default"][str(c)])
        point: dict[str, Any] = {"default": base}
        for label in ROLLOUT_SETUPS[1:]:
            o = summarise(raw[label][str(c)])
            point[label] = {**o, **paired_ratios(raw[label][str(c)], raw["default"][str(c)])}
        points[str(c)] = point
    shadow = live.get("shadows", {}).get("2", {})
    served = sum(v["requests"] for v in live.get("versions", {}).values())
    return {
        "seconds_per_point": seconds,
        "reps": reps,
        "points": points,
        "shadow": {
            "served_requests": served,
            "compared_requests": shadow.get("requests", 0),
            "dropped": live.get("shadow_dropped", 0),
            "agreement": shadow.get("agreement"),
        },
        "raw": raw,
    }


def inprocess_rate(model_path: Path, x: np.ndarray, seconds: float) -> float:
    """Images/s of model.predict_proba on float32 [N, 784] in [0, 1], one BLAS thread."""
    from threadpoolctl import threadpool_limits

    from shared.modelfile import load_model

    model = load_model(model_path).model
    xf = x.astype(np.float32) / np.float32(255.0)
    with threadpool_limits(1):
        model.predict_proba(xf)  # warm-up
        rates = []
        for _ in range(3):
            n, start = 0, time.perf_counter()
            while (elapsed := time.perf_counter() - start) < seconds / 3 or n == 0:
                model.predict_proba(xf)
                n += 1
            rates.append(n * len(x) / elapsed)
    return max(rates)


def bench_batch(
    work: Path,
    registry: Path,
    model_path: Path,
    *,
    batches: tuple[int, ...],
    seconds: int,
    reps: int,
    extra_env: dict[str, str],
    log: Any,
    baseline: tuple[str, Path] | None = None,
) -> dict[str, Any]:
    """Images/s per body kind and batch size over one connection, against in-process; with a
    `baseline` (a git ref and its checkout), its `.npy` rate too, in the same rotation, and
    ours as a paired ratio to it."""
    images = sample_images(max(batches))
    servers = {"ours": Server(OURS_APP, registry, work / "ours-batch.log", extra_env)}
    if baseline is not None:
        servers["baseline"] = Server(
            OURS_APP, registry, work / "baseline-batch.log", extra_env, root=baseline[1]
        )
    points: dict[str, dict[str, Any]] = {}
    with contextlib.ExitStack() as stack:
        for server in servers.values():
            stack.enter_context(running(server))
        for n in batches:
            x = images[:n]
            requests = {kind: make_request(kind, x, work) for kind in BODY_KINDS}
            points_of = [("ours", kind) for kind in BODY_KINDS]
            if baseline is not None:
                points_of.append(("baseline", "npy"))
            for label, kind in points_of:
                check_request(servers[label].port, requests[kind], n)  # also the warm-up
            runs: dict[tuple[str, str], list[dict[str, Any]]] = {point: [] for point in points_of}
            quiet(log)
            probe = OthersProbe(*servers.values()).__enter__()
            for rep in range(reps):
                for label, kind in rotation_order(points_of, rep):
                    req = requests[kind]
                    r = run_wrk(servers[label].port, req.path, req.body_file, connections=1,
                                seconds=seconds, content_type=req.content_type,
                                header=req.header)  # fmt: skip
                    if r["errors"]:
                        raise RuntimeError(f"batch {n} {label} {kind}: {r['errors']} errors")
                    runs[(label, kind)].append(r)
            probe.__exit__(None, None, None)
            inproc = inprocess_rate(model_path, x, max(1.0, seconds / 2))
            row: dict[str, Any] = {
                "inprocess": round(inproc, 1),
                "others_cpu_share": round(probe.share, 3),
            }
            for kind in BODY_KINDS:
                rate = median([r["rps"] * n for r in runs[("ours", kind)]])
                row[kind] = round(rate, 1)
                row[f"{kind}_vs_inprocess"] = round(rate / inproc, 3)
            if baseline is not None:
                base = runs[("baseline", "npy")]
                rate = median([r["rps"] * n for r in base])
                paired = paired_ratios(runs[("ours", "npy")], base)
                row["baseline"] = {
                    "ref": baseline[0],
                    "npy": round(rate, 1),
                    "npy_vs_inprocess": round(rate / inproc, 3),
                    "npy_ours_vs_baseline": paired["throughput_ratio"],
                    "npy_ours_vs_baseline_per_rep": paired["throughput_ratio_per_rep"],
                }
            row["body_bytes"] = {k: r.body_file.stat().st_size for k, r in requests.items()}
            points[str(n)] = row
            log(
                f"  batch {n:<5} "
                + "  ".join(f"{k} {row[k]:10.0f}" for k in (*BODY_KINDS, "inprocess"))
                + " images/s"
                + (f"  (npy at {baseline[0]}: {row['baseline']['npy']:.0f})" if baseline else "")
            )
    return {"seconds_per_point": seconds, "reps": reps, "connections": 1, "points": points}


def smaps_rollup(pid: int) -> dict[str, float]:
    """RSS, PSS and USS (private clean + dirty) of one process in MiB."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[-1] == "kB":
            fields[parts[0].rstrip(":")] = int(parts[1])
    mib = 1024.0
    return {
        "rss_mib": round(fields.get("Rss", 0) / mib, 1),
        "pss_mib": round(fields.get("Pss", 0) / mib, 1),
        "uss_mib": round(
            (fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)) / mib, 1
        ),
    }


def fill_workers(server: Server, versions: list[int], body: bytes, tries: int = 20) -> dict:
    """Predict with every version until every worker reports all of them loaded (/readyz)."""
    want = {f"{MODEL_NAME}:{v}" for v in versions}
    n_workers = len(server.worker_pids())
    seen: dict[int, set[str]] = {}

    def views() -> dict[int, set[str]]:
        out: dict[int, set[str]] = {}
        with ThreadPoolExecutor(8) as pool:
            for _status, raw in pool.map(lambda _: http_get(server.port, "/readyz"), range(24)):
                body_ = json.loads(raw)
                out[body_["pid"]] = set(body_.get("loaded", []))
        return out

    for _ in range(tries):
        for v in versions:
            path = f"/v1/models/{MODEL_NAME}/versions/{v}/predict"
            post = functools.partial(http_post, server.port, path, body, "application/json")
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda _, post=post: post(), range(16)))
        seen = views()
        if len(seen) >= n_workers and all(want <= s for s in seen.values()):
            break
    return {str(pid): sorted(s) for pid, s in seen.items()}


def bench_cold_start(
    work: Path,
    registry: Path,
    model_path: Path,
    *,
    repeats: int,
    versions: int,
    extra_env: dict[str, str],
    log: Any,
) -> dict[str, Any]:
    body = json_body(sample_images(1))
    starts = []
    memory_one: dict[str, Any] = {}
    for i in range(repeats):
        server = Server(OURS_APP, registry, work / "cold.log", extra_env).start()
        try:
            seconds = server.wait_ready(timeout=60)
            starts.append(seconds)
            if i == repeats - 1:
                loaded = fill_workers(server, [1], body)
                memory_one = {
                    "workers": {str(p): smaps_rollup(p) for p in server.worker_pids()},
                    "master": smaps_rollup(server.proc.pid),  # type: ignore[union-attr]
                    "loaded": loaded,
                }
        finally:
            server.stop()
        log(f"  cold start {i + 1}/{repeats}: /readyz 200 after {seconds:.2f} s")

    # Ten versions: a second registry with `versions` copies, a cache that holds them all.
    from shared.registry import Registry

    many = work / "registry-many"
    reg = Registry(many)
    for _ in range(versions):
        reg.publish(MODEL_NAME, model_path, {"metrics": {}, "source": "benchmarks.serving"})
    env = {**extra_env, "MODEL_CACHE_SIZE": str(max(versions, 4))}
    server = Server(OURS_APP, many, work / "many.log", env).start()
    try:
        server.wait_ready(timeout=60)
        loaded = fill_workers(server, list(range(1, versions + 1)), body)
        memory_many = {
            "workers": {str(p): smaps_rollup(p) for p in server.worker_pids()},
            "master": smaps_rollup(server.proc.pid),  # type: ignore[union-attr]
            "loaded": loaded,
            "model_cache_size": env["MODEL_CACHE_SIZE"],
        }
    finally:
        server.stop()
    per = {
        k: median([w[k] for w in memory_many["workers"].values()])
        for k in ("rss_mib", "pss_mib", "uss_mib")
    }
    log(f"  {versions} versions: per worker {per}")
    return {
        "ready_seconds": [round(s, 3) for s in starts],
        "ready_seconds_median": round(median(starts), 3),
        "model_file_bytes": model_path.stat().st_size,
        "memory_one_version": memory_one,
        "memory_many_versions": {"versions": versions, **memory_many},
    }


# ---------------------------------------------------------------------------------------------
# model


def train_model(out: Path, data_dir: Path, log: Any) -> dict[str, Any]:
    """One epoch of the default architecture through the real CLI (one command, a few seconds)."""
    cmd = [sys.executable, "-m", "trainer_service", "train", "--data-dir", str(data_dir),
           "--epochs", "1", "--out", str(out), "--json"]  # fmt: skip
    log("training the benchmark model: " + " ".join(cmd[1:]))
    done = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"training failed:\n{done.stderr[-3000:]}")
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    return {"command": cmd[1:], "test_accuracy": summary.get("test_accuracy"),
            "hidden_layers": summary.get("config", {}).get("hidden_layers")}  # fmt: skip


def publish_model(registry: Path, model_path: Path) -> int:
    from shared.registry import Registry

    return Registry(registry).publish(
        MODEL_NAME, model_path, {"metrics": {}, "source": "benchmarks.serving"}
    )


def set_split(registry: Path) -> None:
    from shared.registry import Registry

    Registry(registry).set_traffic(
        MODEL_NAME, [{"version": 1, "weight": 90}, {"version": 2, "weight": 10}], actor="benchmark"
    )


# ---------------------------------------------------------------------------------------------
# report


def targets_met(results: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    lat = results.get("latency", {}).get("points", {})
    if "8" in lat:
        p = lat["8"]
        out["c8_throughput_ratio"] = [
            p["throughput_ratio"],
            p["throughput_ratio"] >= TARGETS["c8_throughput_ratio_min"],
        ]
        out["c8_p99_ratio"] = [p["p99_ratio"], p["p99_ratio"] <= TARGETS["c8_p99_ratio_max"]]
    if "1" in lat:
        o = lat["1"]["ours"]
        out["c1_p50_ms"] = [o["p50_us"] / 1e3, o["p50_us"] / 1e3 < TARGETS["c1_p50_ms_max"]]
        out["c1_p99_ms"] = [o["p99_us"] / 1e3, o["p99_us"] / 1e3 < TARGETS["c1_p99_ms_max"]]
    for c, p in results.get("routes", {}).get("points", {}).items():
        for kind in ROUTE_KINDS[1:]:
            ratio = p[kind]["throughput_ratio"]
            out[f"c{c}_{kind}_vs_v1"] = [ratio, ratio >= TARGETS["v2_vs_v1_min"]]
    rollout = results.get("rollout", {}).get("points", {})
    if "8" in rollout:
        split = rollout["8"]["split-90-10"]["throughput_ratio"]
        out["c8_split_throughput_ratio"] = [
            split,
            split >= TARGETS["c8_split_throughput_ratio_min"],
        ]
    for c in rollout:
        p50 = rollout[c]["shadow"]["p50_ratio"]
        out[f"c{c}_shadow_p50_ratio"] = [p50, p50 <= TARGETS["shadow_p50_ratio_max"]]
    batch = results.get("batch", {}).get("points", {})
    if "1024" in batch:
        row = batch["1024"]
        best = max(row["npy_vs_inprocess"], row["v2-binary_vs_inprocess"])
        out["binary_vs_inprocess_at_1024"] = [
            best,
            best >= TARGETS["binary_vs_inprocess_at_1024_min"],
        ]
    return out  # fmt: skip


def report(results: dict[str, Any]) -> str:
    parts = []
    lat = results.get("latency")
    if lat:
        rows = []
        for c, p in lat["points"].items():
            for label in ("bare", "ours"):
                s = p[label]
                rows.append([c, label, f"{s['rps']:.0f}", f"{s['p50_us'] / 1e3:.3f}",
                             f"{s['p95_us'] / 1e3:.3f}", f"{s['p99_us'] / 1e3:.3f}", s["errors"]])  # fmt: skip
            rows.append([c, "ours/bare", f"{p['throughput_ratio']:.2f}", "", "",
                         f"{p['p99_ratio']:.2f}", ""])  # fmt: skip
            for label, v in p.get("variants", {}).items():
                rows.append([c, label, f"{v['rps']:.0f}", f"{v['p50_us'] / 1e3:.3f}",
                             f"{v['p95_us'] / 1e3:.3f}", f"{v['p99_us'] / 1e3:.3f}", v["errors"]])  # fmt: skip
                rows.append([c, f"{label}/bare", f"{v['throughput_ratio']:.2f}", "", "",
                             f"{v['p99_ratio']:.2f}", ""])  # fmt: skip
        parts.append(
            markdown_table(
                ["concurrency", "server", "req/s", "p50 ms", "p95 ms", "p99 ms", "errors"], rows
            )
        )
    rollout = results.get("rollout")
    if rollout:
        rows = []
        for c, p in rollout["points"].items():
            for label in ROLLOUT_SETUPS:
                s = p[label]
                ratio = (
                    ""
                    if label == "default"
                    else (
                        f"{s['throughput_ratio']:.2f} / {s['p50_ratio']:.2f} / {s['p99_ratio']:.2f}"
                    )
                )
                rows.append([c, label, f"{s['rps']:.0f}", f"{s['p50_us'] / 1e3:.3f}",
                             f"{s['p99_us'] / 1e3:.3f}", ratio, s["errors"]])  # fmt: skip
        parts.append(
            markdown_table(
                [
                    "concurrency",
                    "default route",
                    "req/s",
                    "p50 ms",
                    "p99 ms",
                    "vs default: req/s / p50 / p99",
                    "errors",
                ],
                rows,
            )  # fmt: skip
        )
        sh = rollout["shadow"]
        parts.append(
            f"shadow: {sh['compared_requests']} of {sh['served_requests']} requests compared, "
            f"{sh['dropped']} dropped (queue full)"
        )
    routes = results.get("routes")
    if routes:
        rows = []
        for c, p in routes["points"].items():
            rows.append(
                [
                    c,
                    "/v1 JSON",
                    f"{p['json']['rps']:.0f}",
                    f"{p['json']['p50_us'] / 1e3:.3f}",
                    "",
                    "",
                ]
            )
            for kind in ROUTE_KINDS[1:]:
                o = p[kind]
                rows.append([c, kind, f"{o['rps']:.0f}", f"{o['p50_us'] / 1e3:.3f}",
                             f"{o['throughput_ratio']:.2f}", f"{o['p50_ratio']:.2f}"])  # fmt: skip
        parts.append(markdown_table(["concurrency", "route", "req/s", "p50 ms",
                                     "req/s vs /v1", "p50 vs /v1"], rows))  # fmt: skip
    for key, label in (("profile", "this checkout"), ("profile_baseline", "the baseline")):
        prof = results.get(key)
        if not prof:
            continue
        rows = [[part, f"{prof['shares'][part]:.0%}", prof["per_request_us"][part]]
                for part in prof["samples"] if prof["shares"][part] is not None]  # fmt: skip
        parts.append(
            f"{label}, one worker at c=8 ({prof['rps']:.0f} req/s over both workers, py-spy):\n\n"
            + markdown_table(["part", "share of the worker's busy time", "µs per request"], rows)
        )
    batch = results.get("batch")
    if batch:
        rows = []
        for n, row in batch["points"].items():
            rows.append([n, *(f"{row[k]:.0f} ({row[f'{k}_vs_inprocess']:.0%})" for k in BODY_KINDS),
                         f"{row['inprocess']:.0f}"])  # fmt: skip
        parts.append(
            markdown_table(["batch", *(f"{k} images/s" for k in BODY_KINDS), "in-process"], rows)
        )
        based = [(n, row["baseline"]) for n, row in batch["points"].items() if "baseline" in row]
        if based:
            header = ["batch", f"npy images/s at {based[0][1]['ref']}", "this tree / it"]
            rows = [
                [
                    n,
                    f"{b['npy']:.0f} ({b['npy_vs_inprocess']:.0%})",
                    f"{b['npy_ours_vs_baseline']:.2f}",
                ]
                for n, b in based
            ]
            parts.append(markdown_table(header, rows))
    cold = results.get("cold_start")
    if cold:
        rows = []
        for label, mem in (("1 version", cold["memory_one_version"]),
                           (f"{cold['memory_many_versions']['versions']} versions", cold["memory_many_versions"])):  # fmt: skip
            for pid, m in mem.get("workers", {}).items():
                rows.append([label, f"worker {pid}", m["rss_mib"], m["pss_mib"], m["uss_mib"]])
            if "master" in mem:
                m = mem["master"]
                rows.append([label, "master", m["rss_mib"], m["pss_mib"], m["uss_mib"]])
        parts.append(
            f"cold start: /readyz 200 after {cold['ready_seconds_median']:.2f} s (median of {cold['ready_seconds']})"
        )
        parts.append(markdown_table(["registry", "process", "RSS MiB", "PSS MiB", "USS MiB"], rows))
    targets = results.get("targets")
    if targets:
        parts.append(
            "targets: "
            + ", ".join(f"{k} {v[0]:.3g} {'met' if v[1] else 'MISSED'}" for k, v in targets.items())
        )
    return "\n\n".join(parts)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# main


def parse_env(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--env wants KEY=VALUE, got {pair!r}")
        out[key] = value
    return out


def parse_variants(specs: list[str]) -> dict[str, dict[str, str]]:
    out = {}
    for spec in specs:
        label, sep, pairs = spec.partition(":")
        if not sep or not label or not label.replace("-", "").replace("_", "").isalnum():
            raise SystemExit(f"--variant wants LABEL:KEY=VALUE[,KEY=VALUE], got {spec!r}")
        out[label] = parse_env([p for p in pairs.split(",") if p])
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.serving", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--quick", action="store_true", help="1 s per point, one repetition")
    p.add_argument(
        "--seconds", type=int, default=None, help="wrk duration per point (default 5; --quick 1)"
    )
    p.add_argument(
        "--reps", type=int, default=None, help="repetitions per point (default 3; --quick 1)"
    )
    p.add_argument(
        "--sections",
        default="latency,batch,cold",
        help="comma-separated subset of latency,routes,profile,rollout,batch,cold",
    )
    p.add_argument("--concurrency", type=int, nargs="+", default=list(CONCURRENCY))
    p.add_argument("--batches", type=int, nargs="+", default=list(BATCHES))
    p.add_argument(
        "--cold-repeats", type=int, default=None, help="cold starts (default 3; --quick 1)"
    )
    p.add_argument("--versions", type=int, default=10, help="versions loaded for the memory figure")
    p.add_argument(
        "--model", type=Path, default=None, help="use this model file instead of training one"
    )
    p.add_argument(
        "--data-dir", type=Path, default=None, help="MNIST folder (default $MNIST_DATA_DIR)"
    )
    p.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra server environment (both servers)",
    )
    p.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="LABEL:KEY=VALUE[,KEY=VALUE]",
        help="one more server of ours in the latency rotation, with this environment "
        "(e.g. quiet:ACCESS_LOG=off)",
    )
    p.add_argument(
        "--split",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="latency, routes, profile and batch with a 90/10 traffic split set, as a rollout "
        "runs (--no-split: one version)",
    )
    p.add_argument(
        "--baseline",
        default=None,
        metavar="GIT_REF",
        help="one more server in the latency rotation: the service as it was at this commit "
        "(a checkout of its own, removed afterwards)",
    )
    p.add_argument(
        "--quiet-wait",
        type=float,
        default=20.0,
        help="seconds to wait for a quiet machine before each block (0: never)",
    )
    p.add_argument(
        "--out", type=Path, default=None, help="results file (default results/serving-<date>.json)"
    )
    p.add_argument("--no-write", action="store_true", help="print only")
    return p  # fmt: skip


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    seconds = args.seconds or (1 if args.quick else 5)
    reps = args.reps or (1 if args.quick else 3)
    cold_repeats = args.cold_repeats or (1 if args.quick else 3)
    sections = {s.strip() for s in args.sections.split(",") if s.strip()}
    unknown = sections - {"latency", "routes", "batch", "cold", "rollout", "profile"}
    if unknown:
        raise SystemExit(f"unknown sections {sorted(unknown)}")
    extra_env = parse_env(args.env)
    variants = parse_variants(args.variant)
    QUIET_WAIT[0] = args.quiet_wait
    wrk_binary()

    def log(msg: str) -> None:
        print(msg, flush=True)

    # A SIGTERM (make interrupted, a timeout) must still run the finally blocks below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = Path(tempfile.mkdtemp(prefix="digitflow-bench-serving-"))
    results: dict[str, Any] = {
        "benchmark": "serving",
        "started_at": now_iso(),
        "command": "python -m benchmarks.serving "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine_info(),
        "settings": {
            "seconds_per_point": seconds,
            "reps": reps,
            "extra_env": extra_env,
            "variants": variants,
            "load_generator": "wrk -t1 (benchmarks/wrk_post.lua)",
        },  # fmt: skip
    }
    try:
        if args.model is not None:
            model_path = args.model
            results["model"] = {"file": str(args.model)}
        else:
            model_path = work / "model.npz"
            results["model"] = train_model(model_path, args.data_dir or default_data_dir(), log)
        registry = work / "registry"
        publish_model(registry, model_path)
        if args.split:
            # As a user runs a rollout: two versions (the same weights, so the same forward pass)
            # and a 90/10 split of the default route, which every request then goes through.
            publish_model(registry, model_path)
            set_split(registry)
            results["settings"]["traffic_split"] = "90/10 over versions 1 and 2"
        if "latency" in sections:
            log("single-image predict, bare Flask vs the inference service (interleaved):")
            with baseline_checkout(args.baseline, work) as baseline:
                results["latency"] = bench_latency(work, registry, concurrency=tuple(args.concurrency),
                                                   seconds=seconds, reps=reps, extra_env=extra_env,
                                                   log=log, variants=variants, baseline=baseline)  # fmt: skip
        if "rollout" in sections:
            log("default route: alone, with a 90/10 traffic split, with a shadow (interleaved):")
            results["rollout"] = bench_rollout(work, model_path, concurrency=(1, 8), seconds=seconds,
                                               reps=reps, extra_env=extra_env, log=log)  # fmt: skip
        if "routes" in sections:
            log("one image: /v1 JSON vs /v2 JSON vs /v2 binary on one server (interleaved):")
            results["routes"] = bench_routes(work, registry, concurrency=tuple(args.concurrency),
                                             seconds=seconds, reps=reps, extra_env=extra_env, log=log)  # fmt: skip
        if "profile" in sections:
            log("where a worker's time goes at c=8 (py-spy):")
            results["profile"] = bench_profile(work, registry, seconds=max(seconds, 5),
                                               extra_env=extra_env, log=log)  # fmt: skip
            if args.baseline is not None:
                log(f"the same at {args.baseline}:")
                with baseline_checkout(args.baseline, work) as (_, root):
                    results["profile_baseline"] = bench_profile(
                        work, registry, seconds=max(seconds, 5), extra_env=extra_env, log=log,
                        root=root)  # fmt: skip
        if "batch" in sections:
            log("batch predict over one connection vs in-process predict_proba:")
            with baseline_checkout(args.baseline, work) as baseline:
                results["batch"] = bench_batch(work, registry, model_path,
                                               batches=tuple(args.batches), seconds=seconds,
                                               reps=reps, extra_env=extra_env, log=log,
                                               baseline=baseline)  # fmt: skip
        if "cold" in sections:
            log("cold start and memory:")
            results["cold_start"] = bench_cold_start(work, registry, model_path, repeats=cold_repeats,
                                                     versions=args.versions, extra_env=extra_env, log=log)  # fmt: skip
        results["targets"] = targets_met(results)
        results["finished_at"] = now_iso()
        results["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log("")
    log(report(results))
    if not args.no_write:
        log(f"\nresults: {save_result('serving', results, args.out)}")
    return results


if __name__ == "__main__":
    main()
