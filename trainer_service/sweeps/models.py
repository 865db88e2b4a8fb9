"""A sweep's request and its view. The body of `POST /v1/sweeps` (`SweepRequest`): a base
TrainConfig, a search space and how to search it, validated once, here: every key of the space
is a TrainConfig field, every value (or range end, or value inside a range that a cross-field
rule refuses) makes a valid TrainConfig together with the base, and every combination keeps a
validation split (the objective is measured on it, never on the test set). Errors name
`space.<field>`.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from shared.config import MODEL_NAME_PATTERN, RULE_HOLES, TrainConfig
from shared.fieldpath import field_path
from trainer_service import queueing

#: Fields a sweep may not vary: every trial publishes under the base's model name.
FIXED_FIELDS = ("model", "preset")
MAX_TRIALS = 1000
MAX_VALIDATED_COMBINATIONS = 1000


class Uniform(BaseModel):
    model_config = ConfigDict(extra="forbid")
    uniform: tuple[float, float]


class LogUniform(BaseModel):
    model_config = ConfigDict(extra="forbid")
    log_uniform: tuple[float, float]


class IntRange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    int: tuple[int, int]


class Choice(BaseModel):
    model_config = ConfigDict(extra="forbid")
    choice: list[Any] = Field(min_length=1, max_length=MAX_TRIALS)


Dimension = list[Any] | Uniform | LogUniform | IntRange | Choice

README_EXAMPLE: dict[str, Any] = {
    "base": {"dataset": "mnist", "epochs": 6, "train_limit": 20000},
    "space": {
        "learning_rate": {"log_uniform": [0.0001, 0.01]},
        "hidden_layers": {"choice": [[256], [512, 256]]},
        "dropout": {"uniform": [0.0, 0.3]},
        "batch_size": [128, 256],
    },
    "trials": 8,
    "parallelism": 2,
    "objective": "val_accuracy",
    "pruner": "median",
    "promote_to": "candidate",
}


class SweepRequest(BaseModel):
    """A search over training settings, run as ordinary training jobs."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [README_EXAMPLE]})

    base: TrainConfig = Field(description="The settings every trial starts from.")
    space: dict[str, Dimension] = Field(
        min_length=1,
        max_length=len(TrainConfig.model_fields),
        description="TrainConfig field → a list of values (a grid when every entry is a list "
        "and `trials` is left out), or {uniform|log_uniform|int: [lo, hi]}, or {choice: [...]}.",
    )
    trials: int | None = Field(
        default=None, ge=1, le=MAX_TRIALS, description="Required unless the space is a grid."
    )
    parallelism: int = Field(default=1, ge=1, le=64, description="Trials running at once.")
    objective: Literal["val_accuracy", "val_loss"] = "val_accuracy"
    pruner: Literal["none", "median", "successive_halving"] = "none"
    sampler: Literal["grid", "random", "tpe"] | None = Field(
        default=None, description="Default: grid for a grid space, else tpe."
    )
    promote_to: str | None = Field(
        default=None,
        pattern=MODEL_NAME_PATTERN,
        description="Where the best trial's version goes live, only if it beats what is there: "
        'an alias, or "default" (the winner is pinned as the default). Trial versions are '
        "published staged: nothing is served from them until this promotion.",
    )
    seed: int | None = Field(
        default=None, ge=0, le=2**31, description="Makes the sampler's choices reproducible."
    )
    keep: int = Field(default=3, ge=0, le=MAX_TRIALS, description="Best trial versions kept.")

    @model_validator(mode="after")
    def _check_space(self) -> SweepRequest:
        base = self.base.model_dump(mode="json", exclude_unset=True)
        if self.base.val_fraction == 0 and "val_fraction" not in self.space:
            _error(
                ("base", "val_fraction"), 0, "a sweep needs a validation split: val_fraction > 0"
            )
        for key, dim in self.space.items():
            _check_dimension(key, dim, base)
        target = self.promote_to or ""
        if target.isdigit() or target == "latest":
            _error(("promote_to",), target, 'an alias (not all digits, not "latest") or "default"')
        if self.is_grid and self.grid_size > MAX_TRIALS:
            _error(("space",), None, f"the grid has more than {MAX_TRIALS} combinations")
        _check_combinations(self.space, base)
        if not self.is_grid and self.trials is None:
            _error(("trials",), None, "required unless every entry of the space is a list")
        if self.sampler == "grid" and not all(isinstance(d, list) for d in self.space.values()):
            _error(("sampler",), "grid", "the grid sampler needs every entry of the space a list")
        return self

    @property
    def is_grid(self) -> bool:
        lists = all(isinstance(d, list) for d in self.space.values())
        return lists and (self.sampler == "grid" or (self.sampler is None and self.trials is None))

    @property
    def grid_size(self) -> int:
        distinct = ({json.dumps(v, sort_keys=True) for v in dim} for dim in self.space.values())
        return math.prod(len(values) for values in distinct)  # type: ignore[misc]

    @property
    def n_trials(self) -> int:
        return self.grid_size if self.is_grid and self.trials is None else int(self.trials or 1)

    @property
    def sampler_name(self) -> str:
        return "grid" if self.is_grid else (self.sampler or "tpe")


@dataclass(frozen=True)
class SweepPlan:
    """What a validated `SweepRequest` decided, stored in the sweep's record and read back as is:
    validating a request checks every combination of its space (43 ms for a 1,000-point grid),
    and the coordinator step, the view and the listing read a sweep many times."""

    #: The base config as submitted (`exclude_unset`): each trial's config is base + params.
    base: dict[str, Any]
    #: The space as JSON: a list of values, or {"uniform"|"log_uniform"|"int"|"choice": ...}.
    space: dict[str, Any]
    n_trials: int
    parallelism: int
    objective: str
    pruner: str
    sampler: str
    seed: int | None
    promote_to: str | None
    keep: int

    @classmethod
    def of(cls, request: SweepRequest) -> SweepPlan:
        as_is = {"space", "parallelism", "objective", "pruner", "seed", "promote_to", "keep"}
        return cls(
            base=request.base.model_dump(mode="json", exclude_unset=True),
            n_trials=request.n_trials,
            sampler=request.sampler_name,
            **request.model_dump(mode="json", include=as_is),
        )

    @classmethod
    def of_record(cls, record: dict[str, Any]) -> SweepPlan:
        """The plan a sweep's record stores; a record written before plans were stored has
        only its request, validated this once."""
        plan = record.get("plan")
        if plan is None:
            return cls.of(SweepRequest.model_validate(record["request"]))
        return cls(**plan)


def _error(loc: tuple[Any, ...], value: Any, message: str) -> None:
    raise ValidationError.from_exception_data(
        "SweepRequest",
        [InitErrorDetails(type=PydanticCustomError("space", message), loc=loc, input=value)],
    )


def _check_trial(base: dict[str, Any], params: dict[str, Any]) -> None:
    if TrainConfig.model_validate({**base, **params}).val_fraction == 0:
        raise ValueError("a sweep needs a validation split: val_fraction > 0")


def _check_dimension(key: str, dim: Any, base: dict[str, Any]) -> None:
    """`key` is a field a sweep may vary; each value (each range end) is valid with the base."""
    loc = ("space", key)
    if key not in TrainConfig.model_fields or key in FIXED_FIELDS:
        _error(loc, key, f"not a TrainConfig field a sweep can vary ({', '.join(FIXED_FIELDS)} "
               "are fixed)")  # fmt: skip
    annotation = str(TrainConfig.model_fields[key].annotation)
    if isinstance(dim, list) and not dim:
        _error(loc, None, "an empty list of values")
    if not isinstance(dim, list | Choice):
        kind, (lo, hi) = next(iter(dim.model_dump().items()))
        wanted = "int" if kind == "int" else "float"
        if wanted not in annotation or (kind != "int" and "int" in annotation):
            _error(loc, None, f"{kind} needs a field of type {wanted}")
        if not lo < hi:
            _error(loc, None, f"{kind}: the low end must be below the high end")
        if kind == "log_uniform" and lo <= 0:
            _error(loc, None, "log_uniform: the low end must be above 0")
    for value in _corners(key, dim):
        try:
            _check_trial(base, {key: value})
        except (ValidationError, ValueError, TypeError) as exc:
            _error(loc, None, f"value {json.dumps(value)[:80]} is not valid: {_first(exc)}")


def _check_combinations(space: dict[str, Any], base: dict[str, Any]) -> None:
    """Cross-field rules (batch norm needs batches of 2, ...): every combination of the values of
    lists and choices and the ends and holes of ranges (`_corners`) is a valid config, up to
    MAX_VALIDATED_COMBINATIONS of them. For a grid that is every trial; a random or TPE sweep
    must not meet an invalid one in a worker, where it could only fail."""
    keys = list(space)
    combos = itertools.product(*(_corners(k, space[k]) for k in keys))
    for combo in itertools.islice(combos, MAX_VALIDATED_COMBINATIONS):
        params = dict(zip(keys, combo, strict=True))
        try:
            _check_trial(base, params)
        except (ValidationError, ValueError, TypeError) as exc:
            _error(("space",), None, f"combination {params} is not valid: {_first(exc)}")


def _corners(key: str, dim: Any) -> list[Any]:
    """A dimension's values (list, choice), or the ends of its range and the values inside it a
    cross-field rule refuses (RULE_HOLES): a threshold rule is broken at an end if anywhere, a
    hole (batch_size 1 with batch norm, in {"int": [0, 512]}) only inside."""
    if isinstance(dim, list):
        return dim
    if isinstance(dim, Choice):
        return dim.choice
    lo, hi = next(iter(dim.model_dump().values()))
    return [lo, *(v for v in RULE_HOLES.get(key, ()) if lo < v < hi), hi]


def _first(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        err = exc.errors(include_url=False)[0]
        where = field_path(err.get("loc", ()))
        return f"{where}: {err.get('msg', 'invalid')}" if where else str(err.get("msg"))
    return str(exc)


class SweepStatus(StrEnum):
    """A sweep is running until every trial is done (finished: the verdict is in `promotion`)
    or it is canceled (DELETE: queued trials canceled, running ones stopped, nothing promoted)."""

    RUNNING = "running"
    FINISHED = "finished"
    CANCELED = "canceled"


class TrialStatus(StrEnum):
    """A trial: queued (its job waits for a worker), running, finished (its version published,
    `value` its objective), pruned (stopped after an epoch by the pruner; nothing published),
    failed (its job failed or died; a dead one is retried once, see `retried_by`), canceled
    (queued or running when its sweep was canceled)."""

    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"
    PRUNED = "pruned"
    FAILED = "failed"
    CANCELED = "canceled"


class SweepTrial(BaseModel):
    """One trial: an ordinary training job (`job_id`) with sampled `params`."""

    number: int
    job_id: str
    params: dict[str, Any]
    status: TrialStatus
    job_status: queueing.PublicStatus | Literal["expired"] = Field(
        description="its job's status (GET /v1/jobs/<job_id>); expired: the job's record is gone "
        "(RESULT_TTL, FAILURE_TTL)"
    )
    pruned: bool
    value: float | None = Field(description="the objective of the published weights")
    curve: list[dict[str, Any]] = Field(description="the objective after every epoch")
    model_version: int | None
    retry_of: int | None = Field(
        description="the trial this one retries: its job died (worker or work horse killed)"
    )
    retried_by: int | None = Field(description="the trial that retries this one")
    started_at: str | None
    ended_at: str | None


class SweepView(BaseModel):
    """A sweep: status, every trial, the best so far, the promotion verdict."""

    sweep_id: str
    status: SweepStatus
    model: str
    objective: str
    n_trials: int
    parallelism: int
    sampler: str
    pruner: str
    created_at: str
    ended_at: str | None
    trials: list[SweepTrial]
    best: SweepTrial | None
    promotion: dict[str, Any] | None
    removed_versions: list[int]
    request: dict[str, Any]
