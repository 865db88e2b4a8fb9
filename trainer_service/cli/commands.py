"""`python -m trainer_service` (its `__main__` calls `main` here): train, evaluate and download
(plus `worker`); their options: `--help`.

Every `train` option maps 1:1 onto a `TrainConfig` field, and only options given explicitly are
passed on, so a preset's values are overridden exactly where the user asked (all argparse
defaults are None). Values are handed to pydantic as typed, so a bad value is reported the same
way as through the API (`shared.web.validation`): per field, here under the option's name.

Bad input (invalid options, missing or broken data, broken model files) ends with one line on
stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from shared.web.logging import configure_logging

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """A problem with the user's input: reported as one line on stderr, exit code 2."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (the usage block is one `--help` away)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


# --------------------------------------------------------------------------------------------
# train options ↔ TrainConfig fields

#: (option flags, TrainConfig field, kind: "bool", "list" or None). Every TrainConfig field has
#: exactly one entry.
TRAIN_OPTIONS: list[tuple[tuple[str, ...], str, str | None]] = [
    (("--model",), "model", None),
    (("--dataset",), "dataset", None),
    (("--preset",), "preset", None),
    (("--hidden",), "hidden_layers", "list"),
    (("--network",), "network", "json"),
    (("--activation",), "activation", None),
    (("--batch-norm",), "batch_norm", "bool"),
    (("--dropout",), "dropout", None),
    (("--input-dropout",), "input_dropout", None),
    (("--l2",), "l2", None),
    (("--label-smoothing",), "label_smoothing", None),
    (("--standardize",), "standardize", "bool"),
    (("--epochs",), "epochs", None),
    (("--batch-size",), "batch_size", None),
    (("--optimizer",), "optimizer", None),
    (("--lr", "--learning-rate"), "learning_rate", None),
    (("--momentum",), "momentum", None),
    (("--weight-decay",), "weight_decay", None),
    (("--lr-schedule", "--schedule"), "lr_schedule", None),
    (("--warmup-epochs",), "warmup_epochs", None),
    (("--grad-clip",), "grad_clip", None),
    (("--augment",), "augment", "bool"),
    (("--elastic",), "elastic", "bool"),
    (("--max-rotation",), "max_rotation", None),
    (("--max-shift",), "max_shift", None),
    (("--max-scale",), "max_scale", None),
    (("--flip",), "flip", "bool"),
    (("--val-fraction",), "val_fraction", None),
    (("--patience",), "early_stopping_patience", None),
    (("--train-limit",), "train_limit", None),
    (("--seed",), "seed", None),
]

FIELD_TO_OPTION = {field: flags[0] for flags, field, _ in TRAIN_OPTIONS}


def _field_help(field: str) -> str:
    """Help text from the schema itself: description, allowed values and default."""
    # heavy (pydantic, NumPy, the engine): only for this command; --help stays light
    from shared.config import TrainConfig

    info = TrainConfig.model_fields[field]
    parts = [info.description] if info.description else []
    literal_args = _literal_choices(info.annotation)
    if literal_args:
        parts.append("one of " + ", ".join(literal_args))
    default = info.get_default(call_default_factory=True)
    if default is not None or field in ("preset", "model"):
        parts.append(f"default {json.dumps(default)}")
    return "; ".join(parts)


def _literal_choices(annotation: Any) -> list[str]:
    for arg in (annotation, *typing.get_args(annotation)):
        if typing.get_origin(arg) is typing.Literal:
            return [str(a) for a in typing.get_args(arg)]
    return []


def JSON(text: str) -> Any:
    """`--network`'s type; argparse names it in its error: "invalid JSON value: '...'"."""
    return json.loads(text)


def _add_train_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a model locally and save it to an .npz file",
        description="Train a network (a perceptron, or convolutional: --network) on MNIST or "
        "Fashion-MNIST and save it (see shared/config.py for every option's meaning; options "
        "given explicitly override the --preset).",
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        help="dataset folder (IDX files, a Kaggle train.csv, or an .npz); default "
        "$MNIST_DATA_DIR / $FASHION_MNIST_DATA_DIR, else $DATA_DIR/<dataset> (downloaded if "
        "missing)",
    )
    config_group = p.add_argument_group("training configuration (TrainConfig)")
    for flags, field, kind in TRAIN_OPTIONS:
        kwargs: dict[str, Any] = {"dest": field, "default": None, "help": _field_help(field)}
        if kind == "bool":
            kwargs["action"] = argparse.BooleanOptionalAction
        elif kind == "list":
            kwargs.update(nargs="+", metavar="WIDTH")
        elif kind == "json":
            kwargs.update(type=JSON, metavar="JSON")
        else:
            kwargs["metavar"] = field.upper()
        config_group.add_argument(*flags, **kwargs)
    p.add_argument(
        "--out",
        type=Path,
        default=Path("model.npz"),
        help="model file to write (default ./model.npz, replaced if it exists; the last line "
        "names the file)",
    )
    p.add_argument(
        "--report",
        type=Path,
        metavar="DIR",
        help="also write the training report into DIR (created if missing): learning curves, "
        "confusion matrix, per-class precision/recall, worst mistakes (PNG) and report.json",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object (test_accuracy, epochs, model, config, ...) as the last "
        "line of stdout",
    )
    p.set_defaults(func=train_command)


def config_from_args(args: argparse.Namespace):
    """A validated TrainConfig from the options the user actually gave (UsageError otherwise)."""
    # heavy (pydantic, NumPy, the engine): only for this command; --help stays light
    from pydantic import ValidationError

    # heavy (pydantic, NumPy, the engine): only for this command; --help stays light
    from shared.config import TrainConfig
    from shared.web.validation import describe

    given = {
        field: getattr(args, field)
        for _, field, _ in TRAIN_OPTIONS
        if getattr(args, field, None) is not None
    }
    try:
        return TrainConfig(**given)
    except ValidationError as exc:
        # "(body)" is a rule across several options (e.g. early stopping needs a validation split).
        raise UsageError(describe(exc, {**FIELD_TO_OPTION, "(body)": "options"})) from None


# --------------------------------------------------------------------------------------------
# helpers


def _setup_logging() -> None:
    """Warnings and errors only, unless LOG_LEVEL asks for more: the CLI prints its own lines."""
    # heavy (pydantic, NumPy, the engine): only for this command; --help stays light
    from trainer_service.settings import TrainerSettings

    settings = TrainerSettings.load()
    level = settings.log_level if "log_level" in settings.model_fields_set else "WARNING"
    configure_logging(level, fmt="%(levelname)s %(name)s: %(message)s")


def _say(line: str, *, bar: bool = False) -> None:
    """A progress line on stderr; through tqdm when a bar is on screen so it is not garbled."""
    if bar:
        # tqdm: only when a progress bar is shown
        from tqdm import tqdm

        tqdm.write(line, file=sys.stderr)
    else:
        print(line, file=sys.stderr, flush=True)


def _fmt(value: float | None, spec: str = ".4f") -> str:
    return "-" if value is None else format(value, spec)


def format_epoch(rec: Any) -> str:
    """`epoch  3/12  train loss 0.2345 acc 0.9312  val loss 0.2101 acc 0.9400  lr 9.5e-04  4.1s`."""
    width = len(str(rec.epochs))
    return (
        f"epoch {rec.epoch:>{width}}/{rec.epochs}  "
        f"train loss {_fmt(rec.train_loss)} acc {_fmt(rec.train_accuracy)}  "
        f"val loss {_fmt(rec.val_loss)} acc {_fmt(rec.val_accuracy)}  "
        f"lr {rec.learning_rate:.2e}  {rec.seconds:.1f}s"
    )


def _check_out_path(out: Path) -> None:
    """Fail before training, not after, when the model file could not be written."""
    if out.is_dir():
        raise UsageError(f"--out {out}: is a directory; give a file name such as model.npz")
    parent = out.parent  # Path(".") for a bare file name
    if not parent.is_dir():
        raise UsageError(f"--out {out}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise UsageError(f"--out {out}: folder {parent} is not writable")


def _check_report_dir(report: Path) -> None:
    """Fail before training when the report folder could not be created or written."""
    if report.exists() and not report.is_dir():
        raise UsageError(f"--report {report}: exists and is not a folder")
    try:
        report.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--report {report}: cannot create the folder ({exc.strerror})") from None
    if not os.access(report, os.W_OK):
        raise UsageError(f"--report {report}: folder is not writable")


def _print_json(obj: dict[str, Any]) -> None:
    # pydantic and NumPy (shared.manifest): only for --json; --help stays light
    from shared.manifest import json_default

    print(json.dumps(obj, separators=(",", ":"), default=json_default), flush=True)


# --------------------------------------------------------------------------------------------
# commands


def _load_dataset(name: str, data_dir: Path | None) -> Any:
    """`--data-dir` as given (it must hold the data), else the folder the settings name
    (MNIST_DATA_DIR, ..., else DATA_DIR/<name>), downloaded there if missing."""
    # heavy (pydantic, NumPy, the engine): only for this command; --help stays light
    from shared.datasets import load_dataset
    from trainer_service.settings import TrainerSettings

    if data_dir is not None:
        return load_dataset(name, data_dir)
    locations = TrainerSettings.load().data_locations()
    return load_dataset(name, locations.folder(name), download=True, mirrors=locations.mirrors)


def train_command(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    out = args.out
    _check_out_path(out)
    if args.report is not None:
        _check_report_dir(args.report)
    if args.data_dir is not None and not args.data_dir.exists():
        raise UsageError(f"--data-dir {args.data_dir}: no such file or folder")
    _setup_logging()

    # heavy (pydantic, NumPy, the engine): only for this command; --help stays light
    from shared.manifest import Manifest
    from shared.modelfile import save_model
    from shared.pipeline import run_training
    from shared.reports import write_outcome_report

    # Load first, so a data problem is the only line on stderr (no half-started run).
    ds = _load_dataset(config.dataset, args.data_dir)
    bar = sys.stderr.isatty()
    hidden = (
        "-".join(map(str, config.hidden_layers))
        if config.hidden_layers
        else json.dumps(config.public_dict()["network"])
    )
    _say(
        f"training {config.dataset} ({ds.source}): {hidden} {config.activation}, "
        f"{config.optimizer} lr {config.learning_rate:g}, {config.epochs} epochs, "
        f"batch {config.batch_size}"
        + (f", first {config.train_limit} images" if config.train_limit else "")
    )

    outcome = run_training(
        config, dataset=ds, on_epoch=lambda rec: _say(format_epoch(rec), bar=bar), progress=bar
    )
    replaced = out.exists()
    manifest = Manifest.from_outcome(outcome)
    sha256 = save_model(out, outcome.model, metadata=manifest.model_file_metadata())
    summary = {**manifest.summary(), "model": str(out), "model_sha256": sha256}
    if args.report is not None:
        written = write_outcome_report(args.report, outcome, manifest)
        summary["report"] = {name: str(path) for name, path in written.items()}
        _say(f"report written to {args.report}: {', '.join(written)}", bar=bar)
    headline = (
        f"test accuracy {outcome.test_accuracy:.4f} (loss {float(outcome.metrics['loss']):.4f}) on "
        f"{outcome.n_test} {outcome.dataset} test images; {outcome.epochs_run} epochs in "
        f"{outcome.train_seconds:.1f}s (best epoch {outcome.best_epoch}"
        + (", stopped early" if outcome.stopped_early else "")
        + ")"
    )
    # The last line names the file, in full: without --out every run writes ./model.npz, so a
    # reader must see which file now holds this model and that an earlier one is gone.
    saved = f"model saved to {out.resolve()}" + (
        " (replaced the file that was there)" if replaced else ""
    )
    if args.json:
        _say(headline)
        _say(saved)
        _print_json(summary)
    else:
        print(headline, saved, sep="\n", flush=True)
    return 0


def _add_evaluate_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="evaluate a saved model on a dataset's test split",
        description="Accuracy, loss and a per-class report of a model file on the test split.",
    )
    p.add_argument("--model", type=Path, required=True, help="model .npz written by `train`")
    p.add_argument(
        "--data-dir",
        type=Path,
        help="dataset folder (default: as for `train`, downloaded if missing)",
    )
    p.add_argument(
        "--dataset", help="dataset name (default: the one recorded in the model file, else mnist)"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(func=evaluate_command)


def evaluate_command(args: argparse.Namespace) -> int:
    # heavy (pydantic, NumPy, the engine): only for this command; --help stays light
    from shared.datasets import DATASET_NAMES
    from shared.metrics import evaluate
    from shared.modelfile import load_model

    if args.data_dir is not None and not args.data_dir.exists():
        raise UsageError(f"--data-dir {args.data_dir}: no such file or folder")
    _setup_logging()
    loaded = load_model(args.model)
    name = args.dataset or (loaded.metadata or {}).get("dataset") or "mnist"
    if name not in DATASET_NAMES:
        raise UsageError(f"unknown dataset {name!r} (known: {', '.join(DATASET_NAMES)})")
    ds = _load_dataset(name, args.data_dir)
    if loaded.model.input_size != ds.x_test.shape[1]:
        raise UsageError(
            f"{args.model}: cannot evaluate on {name}: the model takes "
            f"{loaded.model.input_size} inputs, the images have {ds.x_test.shape[1]}"
        )
    proba = loaded.model.predict_proba(ds.x_test)
    result = evaluate(proba, ds.y_test, class_names=ds.class_names)
    if args.json:
        _print_json(
            {
                "model": str(args.model),
                "model_sha256": loaded.sha256,
                "dataset": name,
                "dataset_fingerprint": ds.fingerprint,
                **result,
            }
        )
        return 0
    print(
        f"{args.model}: accuracy {result['accuracy']:.4f}  loss {result['loss']:.4f}  "
        f"({result['n']} {name} test images)"
    )
    width = max(len(n) for n in ds.class_names) + 2
    print(f"{'class':<{width + 3}} precision  recall      f1  support")
    for row in result["per_class"]:
        label = f"{row['class']} {row.get('name', '')}".strip()
        if label == f"{row['class']} {row['class']}":
            label = str(row["class"])
        print(
            f"{label:<{width + 3}} {row['precision']:>9.4f} {row['recall']:>7.4f} "
            f"{row['f1']:>7.4f} {row['support']:>8d}"
        )
    return 0


def _add_download_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "download",
        help="download and verify a dataset's four IDX files",
        description="Fetch the dataset from its mirrors (or --mirror / $DATASET_MIRRORS), "
        "verifying each file's sha256 before putting it in place. Files already present "
        "and valid are kept.",
    )
    p.add_argument("--dataset", default="mnist", help="mnist or fashion-mnist (default mnist)")
    p.add_argument("--data-dir", type=Path, help="destination folder (default $DATA_DIR/<dataset>)")
    p.add_argument(
        "--mirror",
        action="append",
        metavar="URL",
        help="mirror base URL (repeatable; tried in order; '{name}' = dataset name)",
    )
    p.set_defaults(func=download_command)


def download_command(args: argparse.Namespace) -> int:
    # heavy (pydantic, NumPy, the engine): only for this command; --help stays light
    from shared.datasets import download_dataset
    from trainer_service.settings import TrainerSettings

    _setup_logging()
    locations = TrainerSettings.load().data_locations()
    dest = args.data_dir if args.data_dir is not None else locations.folder(args.dataset)
    path = download_dataset(args.dataset, dest, args.mirror or locations.mirrors)
    print(path)
    return 0


def _add_worker_parser(subparsers: argparse._SubParsersAction) -> None:
    """`worker`: the queued service's training worker (the trainer API runs under gunicorn)."""
    # RQ and Redis: only for the worker command; --help stays light
    from trainer_service.worker.process import add_worker_arguments, worker_command

    p = subparsers.add_parser(
        "worker",
        help="run an RQ training worker on $RQ_QUEUE",
        description="Run a training worker (RQ) on the queue $RQ_QUEUE at $REDIS_URL. "
        "Several workers may share one queue.",
    )
    add_worker_arguments(p)
    p.set_defaults(func=worker_command)


# --------------------------------------------------------------------------------------------
# dispatcher


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m trainer_service",
        description="digitflow trainer: train, evaluate and download locally; run a worker of "
        "the queued service (its HTTP API runs under gunicorn).",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_train_parser(subparsers)
    _add_evaluate_parser(subparsers)
    _add_download_parser(subparsers)
    _add_worker_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # heavy (pydantic, NumPy, the engine): only for this command; --help stays light
    from shared.datasets import DatasetError
    from shared.modelfile import ModelFileError
    from shared.web.settings import SettingsError

    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:
        # stdout closed early (`... | head`): not an error worth a message.
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the exit-time flush
        return 0
    except KeyboardInterrupt:
        print(f"{parser.prog} {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (UsageError, DatasetError, SettingsError, ModelFileError, OSError) as exc:
        # Bad input, or the environment (disk full, permission denied while saving, ...): not a
        # bug, so one line and no traceback.
        print(f"{parser.prog} {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
