"""`python -m trainer_service train|evaluate|download` end to end, in real subprocesses.

Trains once on a 3,000-image slice of the real MNIST (seconds), then checks the JSON summary, that
the model clearly learned, that the saved file round-trips through `evaluate`, that pictures
run through `picture_to_mnist` are classified, and that bad input exits 2 with one clear line.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from shared.blas import BLAS_THREAD_VARIABLES
from shared.config import TrainConfig
from tests import REPO_ROOT

pytestmark = pytest.mark.slow

TRAIN_ARGS = ["--train-limit", "3000", "--epochs", "5", "--hidden", "64", "--lr", "0.003"]


def run_cli(*args: str | Path, cwd: Path | None = None, timeout: float = 180):
    env = dict(os.environ)
    env.update(dict.fromkeys(BLAS_THREAD_VARIABLES, "1"))
    env.pop("DATASET_MIRRORS", None)
    return subprocess.run(
        [sys.executable, "-m", "trainer_service", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd or REPO_ROOT,
        env=env,
    )


def run_in_process(capsys, *args: str | Path) -> subprocess.CompletedProcess:
    """`main()` in this process (saves interpreter start-up); same contract as run_cli."""
    from trainer_service.cli.commands import main

    capsys.readouterr()
    try:
        rc = main([str(a) for a in args])
    except SystemExit as exc:  # argparse errors
        rc = exc.code
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(args, rc, captured.out, captured.err)


def assert_usage_error(proc, *fragments: str) -> None:
    """Exit 2, one line on stderr naming the problem, no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.fixture(scope="module")
def trained(tmp_path_factory, mnist_dir):
    out = tmp_path_factory.mktemp("cli") / "model.npz"
    proc = run_cli(
        "train", "--data-dir", mnist_dir, *TRAIN_ARGS, "--seed", "1", "--out", out, "--json"
    )
    assert proc.returncode == 0, proc.stderr
    return out, proc


def test_train_prints_epochs_and_a_json_summary(trained):
    out, proc = trained
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["test_accuracy"] > 0.85, summary
    assert summary["epochs"] == 5 and 1 <= summary["best_epoch"] <= 5
    assert summary["train_seconds"] > 0
    assert summary["model"] == str(out) and out.is_file()
    assert len(summary["model_sha256"]) == 64
    assert summary["n_train"] == 3000 and summary["n_test"] == 10000
    assert summary["dataset"] == "mnist" and len(summary["dataset_fingerprint"]) == 64
    config = TrainConfig.model_validate(summary["config"])
    assert config.hidden_layers == [64] and config.train_limit == 3000
    assert config.learning_rate == 0.003 and config.seed == 1
    epoch_lines = [line for line in proc.stderr.splitlines() if line.startswith("epoch ")]
    assert len(epoch_lines) == 5
    assert all(k in epoch_lines[0] for k in ("1/5", "train loss", "val loss", "acc", "lr"))
    assert "test accuracy" in proc.stderr


def test_model_file_round_trips_through_evaluate(trained, mnist_dir):
    out, proc = trained
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    ev = run_cli("evaluate", "--model", out, "--data-dir", mnist_dir, "--json")
    assert ev.returncode == 0, ev.stderr
    result = json.loads(ev.stdout.strip().splitlines()[-1])
    assert result["accuracy"] == pytest.approx(summary["test_accuracy"], abs=1e-12)
    assert result["n"] == 10000 and result["dataset"] == "mnist"
    assert np.array(result["confusion_matrix"]).sum() == 10000
    assert result["model_sha256"] == summary["model_sha256"]

    text = run_cli("evaluate", "--model", out, "--data-dir", mnist_dir)
    assert text.returncode == 0, text.stderr
    assert f"accuracy {summary['test_accuracy']:.4f}" in text.stdout
    rows = [line.split() for line in text.stdout.splitlines()[2:]]
    assert [r[0] for r in rows] == [str(c) for c in range(10)]
    assert sum(int(r[-1]) for r in rows) == 10000


def test_saved_metadata(trained):
    from shared.modelfile import load_model

    out, _ = trained
    loaded = load_model(out)
    meta = loaded.metadata
    assert meta["dataset"] == "mnist" and meta["class_names"] == [str(i) for i in range(10)]
    assert meta["config"]["hidden_layers"] == [64]
    assert meta["metrics"]["test_accuracy"] == meta["test_accuracy"]
    assert meta["metrics"]["n_test"] == 10000 and meta["model"] == "mnist"
    assert len(meta["history"]) == 5


def test_trained_model_classifies_preprocessed_pictures(trained, mnist_dir):
    """Digits photographed the other way round (dark on light, JPEG, scaled) still classify."""
    from shared.datasets import load_idx
    from shared.modelfile import load_model
    from shared.preprocess import picture_to_mnist

    model = load_model(trained[0]).model
    images = load_idx(mnist_dir / "t10k-images-idx3-ubyte.gz")[:100]
    labels = load_idx(mnist_dir / "t10k-labels-idx1-ubyte.gz")[:100]
    batch = []
    for d in images:
        picture = Image.fromarray(255 - d).resize((140, 140), Image.Resampling.BICUBIC)
        buf = io.BytesIO()
        picture.convert("RGB").save(buf, "JPEG", quality=85)
        batch.append(picture_to_mnist(buf.getvalue()))
    from_pictures = model.predict_proba(np.stack(batch)).argmax(axis=1)
    from_originals = model.predict_proba(images.reshape(100, 784).astype(np.float32) / 255).argmax(
        1
    )
    assert (from_pictures == labels).mean() > 0.8
    assert (from_pictures == from_originals).mean() > 0.85


def test_explicit_options_override_the_preset(tmp_path, mnist_dir):
    proc = run_cli(
        "train",
        "--data-dir",
        mnist_dir,
        "--preset",
        "seed-deep",
        "--epochs",
        "1",
        "--train-limit",
        "500",
        "--out",
        tmp_path / "m.npz",
        "--json",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    config = json.loads(proc.stdout.strip().splitlines()[-1])["config"]
    assert config["preset"] == "seed-deep"
    assert config["hidden_layers"] == [128, 64, 32, 16]  # from the preset
    assert config["l2"] == 1e-4 and config["lr_schedule"] == "constant"
    assert config["epochs"] == 1 and config["train_limit"] == 500  # explicitly given
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz"]


def test_train_names_the_file_it_wrote_last_and_says_when_it_replaced_one(
    tmp_path, mnist_dir, capsys, monkeypatch
):
    """Without --out every run writes ./model.npz: the last line says so, in full, and says
    when an earlier model was replaced (README: evaluate must score the model the reader means)."""
    monkeypatch.chdir(tmp_path)
    args = ("train", "--data-dir", mnist_dir, "--hidden", "16", "--epochs", "1")
    first = run_in_process(capsys, *args, "--train-limit", "500")
    assert first.returncode == 0, first.stderr
    model = tmp_path / "model.npz"
    assert first.stdout.splitlines()[-1] == f"model saved to {model}"
    assert model.is_file()

    again = run_in_process(capsys, *args, "--train-limit", "600", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout.splitlines()[-1])["model"] == "model.npz"
    last_said = again.stderr.strip().splitlines()[-1]
    assert last_said == f"model saved to {model} (replaced the file that was there)"


def test_bad_option_values_exit_2_naming_the_option(tmp_path, mnist_dir, capsys):
    proc = run_cli("train", "--data-dir", mnist_dir, "--epochs", "0", "--optimizer", "adagrad")
    assert_usage_error(proc, "--epochs", "greater than or equal to 1", "--optimizer", "adagrad")

    proc = run_in_process(capsys, "train", "--hidden", "64", "x", "--dropout", "1.5")
    assert_usage_error(proc, "--hidden", "'x'", "--dropout")
    proc = run_in_process(capsys, "train", "--no-such-option")
    assert_usage_error(proc, "unrecognized arguments: --no-such-option")


def test_a_network_is_given_as_json_and_checked_before_training(tmp_path, mnist_dir, capsys):
    deep = '[{"conv": 4, "kernel": 5}, {"pool": 2}, {"conv": 4, "kernel": 5}, {"pool": 2}, '
    too_deep = deep + '{"conv": 4, "kernel": 5}]'
    proc = run_in_process(capsys, "train", "--data-dir", mnist_dir, "--network", too_deep,
                          "--out", tmp_path / "m.npz")  # fmt: skip
    assert_usage_error(proc, "--network[4].kernel", "5x5 window is larger than its 4x4 input")
    proc = run_in_process(capsys, "train", "--network", '[{"pool": 2, "kernel": 2}]')
    assert_usage_error(proc, "--network[0]", "kernel is not a setting of a pool layer")
    proc = run_in_process(capsys, "train", "--network", '[{"dense": 8}', "--epochs", "1")
    assert_usage_error(proc, "argument --network: invalid JSON value")
    proc = run_in_process(capsys, "train", "--network", '[{"dense": 8}]', "--hidden", "8")
    assert_usage_error(proc, "--network", "one of the two")
    assert not (tmp_path / "m.npz").exists()

    out = tmp_path / "cnn.npz"
    proc = run_cli("train", "--data-dir", mnist_dir, "--network", deep + '{"dense": 16}]',
                   "--train-limit", "500", "--epochs", "1", "--out", out, "--json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.splitlines()[-1])
    assert summary["config"]["network"][0] == {"conv": 4, "kernel": 5, "stride": 1,
                                               "padding": "valid"}  # fmt: skip
    assert run_cli("evaluate", "--model", out, "--data-dir", mnist_dir).returncode == 0


def test_missing_and_broken_inputs_exit_2(tmp_path, mnist_dir, trained, capsys):
    assert_usage_error(
        run_in_process(capsys, "train", "--data-dir", tmp_path / "nowhere"),
        "--data-dir",
        "nowhere",
    )
    (tmp_path / "empty").mkdir()
    assert_usage_error(
        run_in_process(capsys, "train", "--data-dir", tmp_path / "empty", "--epochs", "1"),
        "missing train-images-idx3-ubyte.gz",
    )
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in mnist_dir.glob("*.gz"):
        (broken / f.name).symlink_to(f)
    (broken / "t10k-labels-idx1-ubyte.gz").unlink()
    (broken / "t10k-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8b\x08garbage")
    out = tmp_path / "m.npz"
    assert_usage_error(
        run_in_process(capsys, "train", "--data-dir", broken, "--epochs", "1", "--out", out),
        "t10k-labels-idx1-ubyte.gz",
    )
    assert not out.exists()
    assert_usage_error(
        run_in_process(capsys, "train", "--data-dir", mnist_dir, "--out", tmp_path / "no" / "m"),
        "does not exist",
    )

    # A broken model file, in a real process: one line, exit 2, no traceback.
    bad_model = tmp_path / "bad.npz"
    bad_model.write_bytes(b"this is not a model")
    assert_usage_error(
        run_cli("evaluate", "--model", bad_model, "--data-dir", mnist_dir), str(bad_model)
    )
    assert_usage_error(
        run_in_process(
            capsys, "evaluate", "--model", tmp_path / "absent.npz", "--data-dir", mnist_dir
        ),
        "absent.npz",
    )
    assert_usage_error(
        run_in_process(
            capsys, "evaluate", "--model", trained[0], "--data-dir", mnist_dir, "--dataset", "x"
        ),
        "unknown dataset 'x'",
    )


def test_download_command(tmp_path, mnist_dir, capsys):
    """Files already present and valid are verified, not fetched; no mirror works → exit 2."""
    dest = tmp_path / "data"
    dest.mkdir()
    for f in mnist_dir.glob("*.gz"):
        (dest / f.name).symlink_to(f)
    proc = run_cli("download", "--data-dir", dest, "--mirror", "http://127.0.0.1:9/")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(dest)
    proc = run_in_process(
        capsys, "download", "--data-dir", tmp_path / "new", "--mirror", "http://127.0.0.1:9/"
    )
    assert_usage_error(proc, "could not download", "127.0.0.1:9")
    assert list((tmp_path / "new").iterdir()) == []


def test_every_config_field_has_an_option():
    from trainer_service.cli.commands import TRAIN_OPTIONS

    fields = [field for _, field, _ in TRAIN_OPTIONS]
    assert sorted(fields) == sorted(TrainConfig.model_fields)
    assert len(set(fields)) == len(fields)
