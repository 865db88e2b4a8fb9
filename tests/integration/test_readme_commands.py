"""The README works as written: every command block it marks runs, in order, against a real stack
started the way `make up` starts it, and does what its marker says.

The marker is an HTML comment right before a ```bash block (invisible on the rendered page):

    <!-- readme-test: run
         files: digit.png       pictures the reader brings (the test draws a digit into each)
         expect: REGEX          (repeatable) the block's output must match it (re.MULTILINE)
    -->

Unmarked blocks are not run (they take minutes, need Docker or root, or hold placeholders).

How a reader is stood in for:
- the stack is scripts/run_local.py (the Procfile under honcho: gunicorn for both services, an RQ
  worker) on the real Redis of REDIS_URL, with a queue, registry and data folder of the test's
  own, on free ports. In each block `localhost:8001` / `localhost:8000` (or 127.0.0.1) become
  those ports — the only change made to the README's text — and the client gets them as
  TRAINER_URL / INFERENCE_URL, as `make up` tells a reader on other ports;
- every block runs with `bash -euo pipefail` (an unset variable or a failing command fails it)
  in one folder, the reader's repository: `.venv` in it links to the environment running the
  tests, `.venv/bin` is on PATH as after `source .venv/bin/activate`, `MNIST_DATA_DIR` is set;
- no answer may be an error (`{"error": {...}}`: curl -s shows error bodies but exits 0);
- every file the blocks leave in the folder must be one the repository's .gitignore ignores
  (the README's commands write models and reports where they are typed).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from shared.redis_embedded import free_port
from tests import REPO_ROOT
from tests.run_local_support import RunLocal, stack_env
from tests.service_support import digit_picture

pytestmark = [pytest.mark.slow]

README = REPO_ROOT / "README.md"

_MARKED_BLOCK = re.compile(
    r"^<!--\s*readme-test:(?P<marker>.*?)-->\n```bash\n(?P<script>.*?)\n```", re.DOTALL | re.M
)
_MARKER = re.compile(r"^<!--\s*readme-test:", re.MULTILINE)
_README_ADDRESS = re.compile(r"\b(?:localhost|127\.0\.0\.1):(8001|8000)\b")
_ERROR_ANSWER = re.compile(r'"error":\s*\{')
BLOCK_TIMEOUT = 120.0


@dataclass
class Block:
    """A marked command block: its place in the README, its script, what it needs and expects."""

    line: int
    script: str
    files: list[str] = field(default_factory=list)
    expect: list[str] = field(default_factory=list)


def marked_blocks(text: str) -> list[Block]:
    """The README's marked blocks, in order. A marker without a bash block right after it, or
    with a word this test does not know, is an error: it would silently test nothing."""
    blocks = []
    for match in _MARKED_BLOCK.finditer(text):
        lines = [line.strip() for line in match["marker"].strip().splitlines() if line.strip()]
        where = text.count("\n", 0, match.start()) + 1
        assert lines and lines[0] == "run", f"README line {where}: marker must start with 'run'"
        block = Block(line=where, script=match["script"])
        for entry in lines[1:]:
            key, sep, value = entry.partition(":")
            assert sep, f"README line {where}: {entry!r} is not 'key: value'"
            if key == "files":
                block.files += value.split()
            elif key == "expect":
                re.compile(value.strip())
                block.expect.append(value.strip())
            else:
                raise AssertionError(f"README line {where}: unknown marker key {key!r}")
        blocks.append(block)
    markers = len(_MARKER.findall(text))
    assert markers == len(blocks), "a readme-test marker is not right before a ```bash block"
    return blocks


def on_ports(script: str, trainer_port: int, inference_port: int) -> str:
    """The block with the README's addresses moved to the stack's ports (nothing else changed)."""
    ports = {"8001": trainer_port, "8000": inference_port}
    return _README_ADDRESS.sub(lambda m: f"127.0.0.1:{ports[m[1]]}", script)


def left_behind(folder: Path, brought: set[str]) -> list[str]:
    """Files the blocks wrote in the reader's folder, relative to it."""
    return sorted(
        str(path.relative_to(folder))
        for path in folder.rglob("*")
        if path.is_file() and path.parts[len(folder.parts)] not in {".venv", *brought}
    )


def not_ignored(paths: list[str]) -> list[str]:
    """Which of these paths, written at the repository's top, git would offer to commit."""
    if not paths:
        return []
    ignored = subprocess.run(
        ["git", "check-ignore", "--no-index", *paths],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    return [path for path in paths if path not in ignored]


def test_the_readme_commands_work_as_written(
    redis_url: str, queue: str, mnist_dir: Path, tmp_path: Path
) -> None:
    blocks = marked_blocks(README.read_text(encoding="utf-8"))
    assert len(blocks) >= 7, "quick start, CLI, HTTP API, inference x2, rollout, client"

    venv = Path(sys.prefix)
    assert (venv / "bin" / "activate").is_file(), f"the tests must run in a venv, not {venv}"
    reader = tmp_path / "repository"
    reader.mkdir()
    (reader / ".venv").symlink_to(venv)

    trainer_port, inference_port = free_port(), free_port()
    env = stack_env(tmp_path, mnist_dir, queue)
    env.update(REDIS_URL=redis_url, WORKER_PRELOAD_DATASETS="mnist")
    run = RunLocal(
        ["--trainer-port", str(trainer_port), "--inference-port", str(inference_port)], env
    )
    shell_env = {k: v for k, v in os.environ.items() if k != "API_TOKEN"}
    shell_env.update(
        PATH=os.pathsep.join([str(venv / "bin"), os.environ["PATH"]]),
        VIRTUAL_ENV=str(venv),
        MNIST_DATA_DIR=str(mnist_dir),
        DATA_DIR=str(tmp_path / "data"),
        TRAINER_URL=f"http://127.0.0.1:{trainer_port}",
        INFERENCE_URL=f"http://127.0.0.1:{inference_port}",
    )
    brought: set[str] = set()
    try:
        run.wait_for(r"digitflow is up")
        for block in blocks:
            for name in block.files:
                fmt = "JPEG" if name.lower().endswith((".jpg", ".jpeg")) else "PNG"
                (reader / name).write_bytes(digit_picture(fmt))
                brought.add(name)
            script = on_ports(block.script, trainer_port, inference_port)
            assert not re.search(r":800[01]\b", script), script
            try:
                done = subprocess.run(
                    ["bash", "-euo", "pipefail", "-c", script],
                    cwd=reader,
                    env=shell_env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                    timeout=BLOCK_TIMEOUT,
                )
            except subprocess.TimeoutExpired as exc:
                pytest.fail(f"README line {block.line}: over {BLOCK_TIMEOUT}s:\n{exc.output}")
            output = done.stdout
            context = (
                f"README line {block.line}:\n{script}\n--- output ---\n{output}\n"
                f"--- make up ---\n{run.latest_output()}"
            )
            assert done.returncode == 0, context
            assert not _ERROR_ANSWER.search(output), context
            for pattern in block.expect:
                assert re.search(pattern, output, re.MULTILINE), f"no {pattern!r}: {context}"

        left = left_behind(reader, brought)
        assert not_ignored(left) == [], f"not in .gitignore: {not_ignored(left)}"
        run.process.send_signal(signal.SIGINT)
        assert run.finish() == 0, run.output()
    finally:
        run.kill()
