"""Where a training step's time goes, layer by layer, and what the im2col block size does to it.

    python -m benchmarks.layers [--preset cnn] [--threads 2] [--steps 10] [--rounds 4]
                                [--block-floats 524288 2097152 ...]
    python -m benchmarks.layers --conv-from REF [REF ...] [--preset cnn-best] [--steps 200]

One training step of a preset's network (random images, batch = the preset's, training mode):
each layer's forward and backward timed on its own (the backward of the first trainable layer
skips its input gradient, as `Sequential.backward` does). With several `--block-floats`, the
step is timed for each value of `shared.nn.conv.IM2COL_BLOCK_FLOATS` in turn, `steps` steps in
a row after 5 untimed ones (as training runs them: the same model step after step, its buffers
warm), and the values take turns for `rounds` rounds, every other round in reverse order (so
background load hits all alike); medians over every timed step, and each value's step time as a
ratio to the first value's. Results: a table on stdout and
benchmarks/results/layers-<date>.json.

`--conv-from REF ...` compares versions of the convolution instead: the Conv2D class of each
commit's `shared/nn/conv.py` (read with `git show`, everything else this tree's) is swapped into a
copy of the same model, sharing its weights, and whole training steps (forward, loss, backward)
take turns version by version, step by step, for `steps` steps: a host whose speed drifts over
seconds slows every version alike, which separate processes or rounds would not see. Medians, and
each version's ratio to the first (this tree is the last, "tree").
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any

from benchmarks.common import REPO_ROOT, machine_info, markdown_table, write_result

WARM_UP = 5


def step_times(model: Any, x: Any, grad: Any) -> tuple[list[float], list[float]]:
    """Seconds of each layer's forward and backward in one training step of `model`."""
    clock = time.perf_counter
    forward = []
    h = x
    for layer in model.layers:
        started = clock()
        h = layer.forward(h, True)
        forward.append(clock() - started)
    backward = [0.0] * len(model.layers)
    g = grad
    first = model._first_trainable
    for i in range(len(model.layers) - 1, first - 1, -1):
        started = clock()
        g = model.layers[i].backward(g, need_input_grad=i > first)
        backward[i] = clock() - started
    return forward, backward


def run(preset: str, threads: int, steps: int, rounds: int, blocks: list[int]) -> dict[str, Any]:
    import numpy as np

    import shared.nn.conv as conv
    from benchmarks.engine import set_threads
    from shared.config import TrainConfig

    set_threads(threads)
    config = TrainConfig(preset=preset)
    models = {block: config.build_model() for block in blocks}  # own buffers each
    rng = np.random.default_rng(0)
    x = rng.random((config.batch_size, 784), dtype=np.float32)
    grad = rng.standard_normal((config.batch_size, 10)).astype(np.float32)
    times: dict[int, list[tuple[list[float], list[float]]]] = {block: [] for block in blocks}
    saved = conv.IM2COL_BLOCK_FLOATS
    try:
        for r in range(rounds):
            for block in blocks if r % 2 == 0 else blocks[::-1]:
                conv.IM2COL_BLOCK_FLOATS = block
                for step in range(WARM_UP + steps):
                    measured = step_times(models[block], x, grad)
                    if step >= WARM_UP:
                        times[block].append(measured)
    finally:
        conv.IM2COL_BLOCK_FLOATS = saved
    kinds = [layer.kind for layer in models[blocks[0]].layers]
    result: dict[str, Any] = {
        "preset": preset, "threads": threads, "steps": steps, "rounds": rounds, "blocks": {}
    }  # fmt: skip
    for block in blocks:
        per_layer = [
            {
                "layer": i,
                "kind": kind,
                "forward_ms": 1e3 * statistics.median(f[i] for f, _ in times[block]),
                "backward_ms": 1e3 * statistics.median(b[i] for _, b in times[block]),
            }
            for i, kind in enumerate(kinds)
        ]
        step_ms = 1e3 * statistics.median(sum(f) + sum(b) for f, b in times[block])
        result["blocks"][str(block)] = {"step_ms": step_ms, "layers": per_layer}
    first = result["blocks"][str(blocks[0])]["step_ms"]
    for entry in result["blocks"].values():
        entry["ratio_to_first"] = entry["step_ms"] / first
    return result


def conv_class_at(ref: str) -> Any:
    """The Conv2D class of `shared/nn/conv.py` at commit `ref`, loaded as a module of its own."""
    import subprocess
    import types

    source = subprocess.run(["git", "show", f"{ref}:shared/nn/conv.py"], cwd=REPO_ROOT,
                            capture_output=True, text=True, check=True).stdout  # fmt: skip
    module = types.ModuleType(f"conv_at_{ref}")
    exec(compile(source, f"{ref}:shared/nn/conv.py", "exec"), module.__dict__)
    return module.Conv2D


def compare_convs(preset: str, threads: int, steps: int, refs: list[str]) -> dict[str, Any]:
    """Median training-step ms of the preset's network with each version's Conv2D (`--conv-from`),
    the versions taking turns step by step."""
    import numpy as np

    import shared.nn.conv as conv
    from benchmarks.engine import set_threads
    from shared.config import TrainConfig
    from shared.nn.losses import SoftmaxCrossEntropy

    set_threads(threads)
    config = TrainConfig(preset=preset)
    classes = {ref: conv_class_at(ref) for ref in refs} | {"tree": conv.Conv2D}
    models = {}
    for label, cls in classes.items():
        model = config.build_model()
        for i, layer in enumerate(model.layers):
            if isinstance(layer, conv.Conv2D):
                twin = cls(layer.in_channels, layer.out_channels, layer.kernel_size,
                           stride=layer.stride, padding=layer.padding, bias=layer.use_bias)  # fmt: skip
                # The same weights as the layer it replaces: views into the model's parameters.
                twin.W, twin.dW = layer.W, layer.dW
                if layer.use_bias:
                    twin.b, twin.db = layer.b, layer.db
                model.layers[i] = twin
        models[label] = model
    rng = np.random.default_rng(0)
    x = rng.random((config.batch_size, 784), dtype=np.float32)
    y = rng.integers(0, 10, config.batch_size)
    loss = SoftmaxCrossEntropy(config.label_smoothing)

    def step(model: Any) -> float:
        started = time.perf_counter()
        loss.forward(model.forward(x, training=True), y)
        model.backward(loss.backward())
        return time.perf_counter() - started

    labels = list(models)
    times: dict[str, list[float]] = {label: [] for label in labels}
    for i in range(WARM_UP + steps):
        for label in labels if i % 2 == 0 else labels[::-1]:
            seconds = step(models[label])
            if i >= WARM_UP:
                times[label].append(seconds)
    first = statistics.median(times[labels[0]])
    return {
        "preset": preset, "threads": threads, "steps": steps,
        "versions": {label: {"step_ms": 1e3 * statistics.median(t),
                             "ratio_to_first": statistics.median(t) / first}
                     for label, t in times.items()},
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.layers", description=__doc__)
    parser.add_argument("--preset", default="cnn", help="a preset with a network (default cnn)")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--steps", type=int, default=10, help="timed steps per value and round")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--block-floats", type=int, nargs="+", default=None,
                        help="IM2COL_BLOCK_FLOATS values to compare (default: the engine's)")  # fmt: skip
    parser.add_argument("--conv-from", nargs="+", metavar="REF", default=None,
                        help="commits whose Conv2D to time against this tree's, step by step")  # fmt: skip
    args = parser.parse_args(argv)
    if args.conv_from:
        result = compare_convs(args.preset, args.threads, args.steps, args.conv_from)
        rows = [[label, f"{v['step_ms']:.2f}", f"{v['ratio_to_first']:.3f}"]
                for label, v in result["versions"].items()]  # fmt: skip
        print(markdown_table(["Conv2D of", "step ms (median)", "ratio to the first"], rows))
        result["machine"] = machine_info()
        print("\nwrote", write_result("layers-conv", result))
        return 0
    import shared.nn.conv as conv

    blocks = args.block_floats or [conv.IM2COL_BLOCK_FLOATS]
    result = run(args.preset, args.threads, args.steps, args.rounds, blocks)
    for block, entry in result["blocks"].items():
        print(f"\nIM2COL_BLOCK_FLOATS = {block}: step {entry['step_ms']:.1f} ms "
              f"({entry['ratio_to_first']:.3f} of the first)")  # fmt: skip
        rows = [[e["layer"], e["kind"], f"{e['forward_ms']:.2f}", f"{e['backward_ms']:.2f}"]
                for e in entry["layers"]]  # fmt: skip
        print(markdown_table(["layer", "kind", "forward ms", "backward ms"], rows))
    result["machine"] = machine_info()
    print("\nwrote", write_result("layers", result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
