"""Accuracy and training time of the presets, through the real `train` command.

    python -m benchmarks.accuracy [--data-dir DIR] [--fashion-data-dir DIR]
                                  [--only default,seed-basic,seed-deep,best,fashion,fashion-best]

Each run is `python -m trainer_service train --data-dir DIR --json [--preset NAME]` in a
subprocess (exactly what a user types), so the numbers include nothing the CLI would not do.
The JSON object on the last line of its stdout gives test_accuracy (official 10k test set),
train_seconds (the training loop, per-epoch validation included) and epochs. Results: a markdown
table on stdout and benchmarks/results/accuracy-<date>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import (
    REPO_ROOT,
    Interference,
    default_data_dir,
    load_average,
    machine_info,
    markdown_table,
    now_iso,
    wait_until_quiet,
    write_result,
)


@dataclass(frozen=True)
class Target:
    """What a preset must reach: test accuracy at least `accuracy`, training under `seconds`."""

    accuracy: float
    seconds: float | None = None
    note: str = ""
    dataset: str = "mnist"


TARGETS: dict[str, Target] = {
    "default": Target(0.985, 30.0, "train --data-dir DIR, no other option"),
    "seed-basic": Target(0.83, None, "784-10-10, 500 full-batch iterations"),
    "seed-deep": Target(0.966, None, "128-64-32-16, dropout, L2"),
    "best": Target(0.994, 600.0, "aim 99.5%"),
    "fashion": Target(0.905, 60.0, "found by a sweep (BENCHMARKS.md)", "fashion-mnist"),
    "fashion-best": Target(0.912, 600.0, "what a perceptron reaches (issue 23)", "fashion-mnist"),
    "cnn": Target(0.993, 300.0, "aim 99.4%"),
    "cnn-best": Target(0.9965, 1200.0, "aim 99.7%"),
    "fashion-cnn": Target(0.925, 900.0, "aim 93%", "fashion-mnist"),
}


def train_command(preset: str, data_dir: Path, out: Path, extra: list[str]) -> list[str]:
    cmd = [sys.executable, "-m", "trainer_service", "train", "--data-dir", str(data_dir)]
    if preset != "default":
        cmd += ["--preset", preset]
    return cmd + ["--out", str(out), "--json", *extra]


def run_preset(preset: str, data_dir: Path, extra: list[str] | None = None) -> dict[str, Any]:
    """Run one preset through the CLI; return its JSON summary plus timing and load."""
    with tempfile.TemporaryDirectory(prefix="digitflow-bench-") as tmp:
        cmd = train_command(preset, data_dir, Path(tmp) / "model.npz", list(extra or []))
        load_before = load_average()[0]
        start = time.perf_counter()
        stderr_lines: list[str] = []
        with Interference(children=True) as probe, open(Path(tmp) / "stdout.txt", "w+") as stdout:
            # stderr streams the per-epoch lines: echo them so a 10-minute run shows progress.
            proc = subprocess.Popen(
                cmd, cwd=REPO_ROOT, stdout=stdout, stderr=subprocess.PIPE, text=True
            )
            assert proc.stderr is not None
            for line in proc.stderr:
                stderr_lines.append(line.rstrip("\n"))
                print(f"  [{preset}] {line}", end="", file=sys.stderr, flush=True)
            returncode = proc.wait()
            wall = time.perf_counter() - start
            stdout.seek(0)
            out_text = stdout.read()
    if returncode != 0:
        tail = "\n".join(stderr_lines[-20:])
        raise RuntimeError(f"{' '.join(cmd)} exited with {returncode}:\n{tail}")
    lines = [line for line in out_text.splitlines() if line.strip()]
    summary = json.loads(lines[-1])
    target = TARGETS.get(preset)
    acc, secs = float(summary["test_accuracy"]), float(summary["train_seconds"])
    met = None
    if target is not None:
        met = acc >= target.accuracy and (target.seconds is None or secs < target.seconds)
    epoch_log = [line for line in stderr_lines if line.startswith("epoch")]
    if len(epoch_log) > 80:  # seed-basic: 500 one-step epochs; keep the file small
        epoch_log = [*epoch_log[:5], f"... {len(epoch_log) - 10} more ...", *epoch_log[-5:]]
    return {
        "preset": preset,
        "command": " ".join(["python", *cmd[1:]]),
        "test_accuracy": acc,
        "test_loss": summary.get("test_loss"),
        "train_seconds": secs,
        "epochs": summary["epochs"],
        "best_epoch": summary.get("best_epoch"),
        "process_seconds": wall,
        "load_before": load_before,
        "load_after": load_average()[0],
        "others_cpu_share": probe.share,
        "target": None if target is None else target.__dict__,
        "met": met,
        "config": summary.get("config"),
        "epoch_log": epoch_log,
    }


def report(results: list[dict[str, Any]]) -> str:
    rows = []
    for r in results:
        t = r["target"] or {}
        goal = f">= {t['accuracy'] * 100:g}%" if t else "-"  # 99.65 %, not a rounded 99.7 %
        if t and t.get("seconds"):
            goal += f" in < {t['seconds']:.0f} s"
        rows.append(
            [
                r["preset"],
                f"{r['test_accuracy']:.2%}",
                f"{r['train_seconds']:.1f}",
                r["epochs"],
                goal,
                {True: "MET", False: "NOT MET", None: "-"}[r["met"]],
                f"{r['others_cpu_share']:.0%}",
            ]
        )
    return markdown_table(
        [
            "preset",
            "test accuracy",
            "train seconds",
            "epochs",
            "target",
            "result",
            "others' CPU share",
        ],
        rows,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.accuracy", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--data-dir", type=Path, default=None, help="MNIST folder")
    parser.add_argument("--fashion-data-dir", type=Path, default=None, help="Fashion-MNIST folder")
    parser.add_argument(
        "--only",
        default=",".join(TARGETS),
        help="comma-separated presets to run (default: all)",
    )
    parser.add_argument(
        "--seed", type=int, default=None, help="pass --seed N to every run (default: the preset's)"
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="before each run, wait up to this long for other processes to use at most 10%% of "
        "the CPUs (default 600; 0 = do not wait)",
    )
    parser.add_argument(
        "--no-write", action="store_true", help="do not write benchmarks/results/*.json"
    )
    args, extra = parser.parse_known_args(argv)
    data_dirs = {
        "mnist": (args.data_dir or default_data_dir()).resolve(),
        "fashion-mnist": (args.fashion_data_dir or default_data_dir("fashion-mnist")).resolve(),
    }
    presets = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = [p for p in presets if p not in TARGETS]
    if unknown:
        parser.error(f"unknown preset(s) {unknown}; known: {list(TARGETS)}")
    # Extra arguments (e.g. --epochs 2) go to every train command: for smoke runs only.
    if args.seed is not None:
        extra = ["--seed", str(args.seed), *extra]
    results = []
    for preset in presets:
        if args.wait_quiet > 0:
            wait_until_quiet(0.1, args.wait_quiet)
        print(f"running {preset} ...", file=sys.stderr, flush=True)
        r = run_preset(preset, data_dirs[TARGETS[preset].dataset], extra)
        print(
            f"  {preset}: test accuracy {r['test_accuracy']:.4f}, "
            f"{r['train_seconds']:.1f}s of training, {r['epochs']} epochs",
            file=sys.stderr,
            flush=True,
        )
        results.append(r)
    print(report(results))
    smoke = len(extra) > (0 if args.seed is None else 2)  # other pass-through options
    if not args.no_write and not smoke:
        name = "accuracy" if set(presets) == set(TARGETS) else "accuracy-" + "-".join(presets)
        if args.seed is not None:
            name += f"-seed{args.seed}"
        payload = {
            "benchmark": "accuracy",
            "date": now_iso(),
            "data_dirs": {k: str(v) for k, v in data_dirs.items()},
            "env_threads": {
                k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")
            },
            "results": results,
            "machine": machine_info(),
        }
        print(f"wrote {write_result(name, payload)}", file=sys.stderr)
    return 0 if all(r["met"] is not False for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
