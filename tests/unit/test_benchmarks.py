"""The benchmark helpers' arithmetic (the benchmarks themselves are run by hand, never here)."""

from __future__ import annotations

import numpy as np

from benchmarks.accuracy import TARGETS, train_command
from benchmarks.engine import GemmEpoch, batch_sizes, epoch_flops


def test_batch_sizes_cover_the_epoch_with_a_smaller_last_batch() -> None:
    sizes = batch_sizes(60000, 128)
    assert len(sizes) == 469
    assert sizes[:-1] == [128] * 468 and sizes[-1] == 96
    assert batch_sizes(256, 128) == [128, 128]


def test_epoch_flops_of_the_reference_net_by_hand() -> None:
    fwd = 784 * 256 + 256 * 128 + 128 * 10  # multiply-adds per row, forward
    dw = fwd  # dW = X.T @ dY has the same count
    dx = 256 * 128 + 128 * 10  # no dX for the first layer
    assert epoch_flops(60000) == 2 * (fwd + dw + dx) * 60000 == 60_426_240_000


def test_gemm_epoch_runs_the_counted_products() -> None:
    gemm = GemmEpoch(300, batch=128, layers=(6, 5, 4, 3))
    assert gemm.flops == epoch_flops(300, 128, (6, 5, 4, 3))
    assert gemm.sizes == [128, 128, 44]
    assert gemm.run() > 0
    # The last product of the last batch is layer 1's dW over the first 44 rows.
    expected = gemm.x[0][:44].T @ gemm.dy[0][:44]
    np.testing.assert_allclose(gemm.dw[0], expected, rtol=1e-5)


def test_train_command_is_the_plain_cli() -> None:
    from pathlib import Path

    cmd = train_command("default", Path("/data"), Path("/tmp/m.npz"), [])
    assert cmd[1:] == [
        "-m",
        "trainer_service",
        "train",
        "--data-dir",
        "/data",
        "--out",
        "/tmp/m.npz",
        "--json",
    ]
    assert "--preset" in train_command("best", Path("/data"), Path("/tmp/m.npz"), [])
    from shared.config import PRESETS

    assert set(TARGETS) == set(PRESETS)  # every preset has a target
    assert {TARGETS[p].dataset for p in TARGETS} == {"mnist", "fashion-mnist"}


def test_a_second_result_the_same_day_does_not_overwrite_the_first(tmp_path) -> None:
    import json

    from benchmarks.common import today, write_result

    first = write_result("engine", {"run": 1}, folder=tmp_path)
    second = write_result("engine", {"run": 2}, folder=tmp_path)
    third = write_result("engine", {"run": 3}, folder=tmp_path)
    assert first.name == f"engine-{today()}.json"
    assert second.name == f"engine-{today()}-run2.json"
    assert third.name == f"engine-{today()}-run3.json"
    assert [json.loads(p.read_text())["run"] for p in (first, second, third)] == [1, 2, 3]


def test_jobs_per_hour_and_the_scaling_report() -> None:
    from benchmarks.scaling import jobs_per_hour, report

    assert jobs_per_hour(6, 36.0) == 600.0
    assert jobs_per_hour(1, 0.0) == 0.0
    results = {
        "started_at": "2026-12-01T00:00:00+00:00",
        "machine": {"cpu": "x", "logical_cpus": 2},
        "settings": {"poll_seconds": 0.5},
        "workers": {"job": {"epochs": 1}, "jobs_per_batch": 2, "jobs_per_hour": {"1": 100.0,
                    "2": 150.0}, "two_vs_one_ratio": 1.5},
    }  # fmt: skip
    text = report(results)
    assert "| 1 | 100 |" in text and "1.5x" in text and "2 CPUs shared" in text


def test_sweeps_benchmark_grid_and_gains() -> None:
    """The sweep benchmark's grid has the 16 points its report promises, and the report splits
    the gain into parallel trials (sequential / parallel) and pruning (parallel / pruned)."""
    import argparse

    from benchmarks.sweeps import RUNS, report, sweep_body

    body = sweep_body(argparse.Namespace(quick=False, epochs=8, train_limit=20000))
    points = 1
    for values in body["space"].values():
        points *= len(values)
    assert points == 16 and body["sampler"] == "grid" and body["base"]["val_fraction"] > 0
    walls = {"sequential": 80.0, "parallel": 50.0, "parallel + pruning": 20.0}
    runs = [
        {
            "name": name,
            "workers": workers,
            "blas_threads": threads,
            "parallelism": parallelism,
            "pruner": pruner,
            "wall_seconds": walls[name],
            "best_value": 0.98,
            "pruned": 0,
            "trials": 16,
            "epochs_trained": 128,
            "others_cpu_share": 0.1,
        }
        for name, workers, threads, parallelism, pruner in RUNS
    ]
    text = report({"runs": runs})
    assert "from parallel trials: 1.60x; from pruning: 2.50x; together 4.00x" in text
    assert "(wall time 0.25x of sequential)" in text


def test_profile_stacks_go_to_their_innermost_part() -> None:
    """py-spy's raw lines (outermost frame first, then a count): the innermost frame that names
    a part wins, so time in prometheus_client under telemetry is "figures", and a decoder's
    NumPy call is "decode"; the rest of a request is "HTTP"."""
    from benchmarks.serving import classify_stacks

    raw = "\n".join(
        [
            "run (gunicorn/workers/sync.py:1);handle (gunicorn/workers/sync.py:2) 50",
            "handle (sync.py:2);__call__ (inference_service/front.py:3);observe_request "
            "(inference_service/telemetry.py:4);inc (prometheus_client/values.py:5) 7",
            "handle (sync.py:2);predict (inference_service/predict.py:6);decode_instances "
            "(inference_service/decoders/instances.py:7);asarray (numpy/core.py:8) 11",
            "handle (sync.py:2);predict (inference_service/predict.py:6);logits "
            "(shared/nn/inference.py:9) 13",
            "handle (sync.py:2);access (gunicorn/glogging.py:10);info (logging/__init__.py:11) 3",
            "garbage without a count",
        ]
    )
    assert classify_stacks(raw) == {
        "logging": 3,
        "figures": 7,
        "decode": 11,
        "forward": 13,
        "answer": 0,
        "HTTP": 50,
    }


def test_server_ratios_pair_the_runs_of_each_rep() -> None:
    """A host whose speed moves between reps: the ratio of two medians mixes the reps (here
    1,010 / 2,000 = 0.51, though two reps of three are within 1 %); the paired ratio is the
    median of each rep's own, 0.99. The order alternates so neither server always goes first."""
    from benchmarks.serving import paired_ratios, rotation_order

    def run(rps: float, p50: float) -> dict:
        return {"rps": rps, "p50_us": p50, "p99_us": 2 * p50}

    ref = [run(3000, 300), run(1000, 900), run(2000, 450)]
    ours = [run(2970, 330), run(1010, 900), run(1000, 450)]
    got = paired_ratios(ours, ref)
    assert got["throughput_ratio_per_rep"] == [0.99, 1.01, 0.5]
    assert got["throughput_ratio"] == 0.99
    assert got["p50_ratio_per_rep"] == [1.1, 1.0, 1.0] and got["p50_ratio"] == 1.0
    assert got["p99_ratio"] == 1.0
    assert [rotation_order(["bare", "ours", "v"], rep) for rep in range(3)] == [
        ["bare", "ours", "v"], ["v", "ours", "bare"], ["bare", "ours", "v"]
    ]  # fmt: skip


def test_the_engine_benchmark_times_the_cnn_presets_network() -> None:
    """The CNN epoch is the `cnn` preset's network (dropout entry included), trained as the MLP
    epoch is: no augmentation, batch 128, Adam at a constant rate, no validation split."""
    from benchmarks.engine import BATCH, train_config
    from shared.config import TrainConfig

    cnn, mlp = train_config("cnn", 3), train_config("mlp", 3)
    assert cnn.network == TrainConfig(preset="cnn").network
    assert [layer.kind for layer in cnn.build_model().layers] == [
        "standardize", "reshape", "conv2d", "maxpool2d", "relu", "conv2d", "maxpool2d", "relu",
        "flatten", "dense", "relu", "dropout", "dense",
    ]  # fmt: skip
    for config in (cnn, mlp):
        assert (config.batch_size, config.optimizer, config.augment) == (BATCH, "adam", False)
        assert (config.val_fraction, config.lr_schedule, config.seed) == (0.0, "constant", 3)
    assert mlp.hidden_layers == [256, 128] and mlp.network is None


def test_the_layers_benchmark_times_every_layer_for_each_block_size() -> None:
    """`benchmarks.layers`: one entry per layer of the preset's network for each im2col block
    size compared, the engine's own block size put back afterwards."""
    import shared.nn.conv as conv
    from benchmarks.layers import run
    from shared.config import TrainConfig

    engines = conv.IM2COL_BLOCK_FLOATS
    result = run("cnn", threads=1, steps=1, rounds=1, blocks=[1 << 16, 1 << 21])
    restored = conv.IM2COL_BLOCK_FLOATS
    assert restored == engines
    kinds = [layer.kind for layer in TrainConfig(preset="cnn").build_model().layers]
    assert list(result["blocks"]) == [str(1 << 16), str(1 << 21)]
    for entry in result["blocks"].values():
        assert [e["kind"] for e in entry["layers"]] == kinds
        conv_layers = [e for e in entry["layers"] if e["kind"] == "conv2d"]
        assert all(e["forward_ms"] > 0 and e["backward_ms"] > 0 for e in conv_layers)
        assert entry["step_ms"] >= sum(e["forward_ms"] for e in entry["layers"])
    assert result["blocks"][str(1 << 16)]["ratio_to_first"] == 1.0


def test_the_layers_benchmark_compares_the_conv_of_another_commit_step_by_step() -> None:
    """`benchmarks.layers --conv-from REF`: REF's Conv2D, loaded from git on its own, computes
    what the tree's does and is timed beside it in whole training steps."""
    import numpy as np

    import shared.nn.conv as conv
    from benchmarks.layers import compare_convs, conv_class_at

    at_head = conv_class_at("HEAD")
    assert at_head is not conv.Conv2D and at_head.__name__ == "Conv2D"
    x = np.random.default_rng(0).random((3, 2, 9, 9), dtype=np.float32)
    ours, theirs = (cls(2, 4, 3, rng=np.random.default_rng(1)) for cls in (conv.Conv2D, at_head))
    np.testing.assert_allclose(theirs.forward(x, False), ours.forward(x, False), rtol=1e-6)
    result = compare_convs("cnn", threads=1, steps=2, refs=["HEAD"])
    assert list(result["versions"]) == ["HEAD", "tree"]
    assert all(v["step_ms"] > 0 for v in result["versions"].values())
    assert result["versions"]["HEAD"]["ratio_to_first"] == 1.0
