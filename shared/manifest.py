"""The manifest: what a trained model is, built once from a run's outcome, and the one NumPy →
JSON conversion.

The registry's ``manifest.json``, the model file's metadata, report.json's numbers, the RQ job's
result and the command line's ``--json`` line are all views of one `Manifest`, so they cannot
disagree. Readers must not require keys: older versions lack newer keys, and anything may be
published with a manifest of its own (the benchmarks publish ``{"metrics": {}}``). So this module
builds; readers keep reading plain dicts with ``.get``.
"""

from __future__ import annotations

import datetime as _dt
import math
import socket
from collections.abc import Mapping, Sequence
from pathlib import PurePath
from typing import Any

from pydantic import BaseModel, ConfigDict

__all__ = ["Manifest", "ManifestMetrics", "SweepTrial", "json_default", "json_value"]


def json_value(value: Any, *, nan_as_none: bool = False) -> Any:
    """`value` with NumPy scalars and arrays made plain JSON values (recursively through dicts,
    lists and tuples; dict keys made strings), Paths made strings; anything else untouched.
    Duck-typed (``tolist``/``item``), so the registry can use it without importing NumPy.
    `nan_as_none`: NaN becomes None (RQ job meta and results: a diverged epoch's loss must not make
    the job's JSON unreadable); otherwise a NaN stays, for strict writers to refuse."""
    if isinstance(value, dict):
        return {str(k): json_value(v, nan_as_none=nan_as_none) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_value(v, nan_as_none=nan_as_none) for v in value]
    if isinstance(value, float):
        return None if nan_as_none and math.isnan(value) else value
    if hasattr(value, "dtype") and hasattr(value, "tolist"):  # NumPy arrays and scalars
        return json_value(value.tolist(), nan_as_none=nan_as_none)
    return str(value) if isinstance(value, PurePath) else value


def json_default(obj: Any) -> Any:
    """``json.dumps(default=json_default)``: the same conversion for what json cannot encode."""
    converted = json_value(obj)
    if converted is obj:
        raise TypeError(f"{type(obj).__name__} is not JSON serialisable")
    return converted


class ManifestMetrics(BaseModel):
    """The manifest's ``metrics``: test-set numbers of the published weights."""

    model_config = ConfigDict(extra="allow")

    test_accuracy: float | None = None
    test_loss: float | None = None
    n_test: int | None = None
    per_class: list[dict[str, Any]] | None = None
    confusion_matrix: list[list[int]] | None = None

    @classmethod
    def of(cls, metrics: Mapping[str, Any]) -> ManifestMetrics:
        """From `shared.metrics.evaluate`'s result (``accuracy``/``loss``/``n``), or from a
        manifest's own ``metrics`` (taken as they are, so the two stay equal value for value)."""
        plain = json_value(dict(metrics), nan_as_none=True)
        if "test_accuracy" in plain:
            return cls.model_validate(plain)
        return cls(
            test_accuracy=plain.get("accuracy"),
            test_loss=plain.get("loss"),
            n_test=plain.get("n"),
            per_class=plain.get("per_class"),
            confusion_matrix=plain.get("confusion_matrix"),
        )

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class SweepTrial(BaseModel):
    """A sweep trial's version: which sweep, which trial, its parameters and objective."""

    sweep_id: str
    trial: int
    params: dict[str, Any]
    objective: str
    value: float | None


class Manifest(BaseModel):
    """Everything needed to reproduce and judge a trained model (the registry adds sha256,
    size_bytes, files, created_at and package_version when it publishes one)."""

    model_config = ConfigDict(extra="forbid")

    model: str
    dataset: str
    config: dict[str, Any]
    metrics: ManifestMetrics
    class_names: list[str]
    history: list[dict[str, Any]]
    best_epoch: int
    epochs_run: int
    stopped_early: bool
    train_seconds: float
    n_train: int
    dataset_fingerprint: str
    #: The RQ job that trained it (None: the command line).
    job_id: str | None = None
    trained_on: str
    trained_at: str
    #: A sweep trial's version: never "latest" nor an unpinned default (trainer_service.sweeps.coordinator).
    staged: bool | None = None
    sweep: SweepTrial | None = None

    @classmethod
    def from_outcome(
        cls,
        outcome: Any,
        *,
        job_id: str | None = None,
        history: Sequence[Mapping[str, Any]] | None = None,
    ) -> Manifest:
        """The manifest of a `shared.pipeline.TrainingOutcome`. `history`: the epoch records as
        the job already reported them (so manifest and job agree), else the outcome's own."""
        if history is None:
            history = [r.to_dict() if hasattr(r, "to_dict") else dict(r) for r in outcome.history]
        history = json_value(list(history), nan_as_none=True)
        metrics = ManifestMetrics.of(outcome.metrics)
        if metrics.n_test is None:
            metrics.n_test = outcome.n_test
        return cls(
            model=outcome.config.model_name,
            dataset=outcome.dataset,
            config=outcome.config.public_dict(),
            metrics=metrics,
            class_names=[str(c) for c in outcome.class_names],
            history=history,
            best_epoch=int(outcome.best_epoch),
            epochs_run=len(history),
            stopped_early=bool(outcome.stopped_early),
            train_seconds=float(outcome.train_seconds),
            n_train=int(outcome.n_train or 0),
            dataset_fingerprint=outcome.fingerprint,
            job_id=job_id,
            trained_on=socket.gethostname(),
            trained_at=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        )

    def to_json(self) -> dict[str, Any]:
        """The registry's manifest.json body (``staged`` and ``sweep`` only on sweep trials)."""
        unset = {k for k in ("staged", "sweep") if getattr(self, k) is None}
        return self.model_dump(mode="json", exclude=unset)

    def model_file_metadata(self) -> dict[str, Any]:
        """The model file's metadata: the manifest, and its test accuracy at the top level (where
        model files have always had it)."""
        return {**self.to_json(), "test_accuracy": self.metrics.test_accuracy}

    def summary(self) -> dict[str, Any]:
        """The command line's ``train --json`` object: the headline numbers and the config."""
        return {
            "dataset": self.dataset,
            "dataset_fingerprint": self.dataset_fingerprint,
            "n_train": self.n_train,
            "n_test": self.metrics.n_test,
            "test_accuracy": self.metrics.test_accuracy,
            "test_loss": self.metrics.test_loss,
            "train_seconds": self.train_seconds,
            "epochs": self.epochs_run,
            "best_epoch": self.best_epoch,
            "stopped_early": self.stopped_early,
            "config": self.config,
        }

    def job_result(self, version: int) -> dict[str, Any]:
        """The RQ job's result once `version` is published."""
        return {
            "model": self.model,
            "model_version": version,
            "test_accuracy": self.metrics.test_accuracy,
            "best_epoch": self.best_epoch,
            "epochs_run": self.epochs_run,
            "train_seconds": self.train_seconds,
            "dataset_fingerprint": self.dataset_fingerprint,
        }
