"""TrainConfig: the one schema for a training run, spoken by the CLI (`python -m trainer_service
train`), the trainer API (`POST /v1/jobs`), the RQ job and the registry manifest alike.

A preset fills in defaults; any field the caller sets explicitly wins over the preset. Every rule
a run depends on is checked here, cross-field ones included, so a config that validates trains:
the engine (shared.nn) and the pipeline check nothing again.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError, ValidationError

from shared.images import N_CLASSES, N_PIXELS

if TYPE_CHECKING:  # the engine (NumPy) is only imported once a model is built
    import numpy as np

    from shared.nn.model import Sequential
    from shared.nn.training import TrainingSpec

DatasetName = Literal["mnist", "fashion-mnist"]
Activation = Literal["relu", "leaky_relu", "sigmoid", "tanh"]
OptimizerName = Literal["sgd", "momentum", "nesterov", "rmsprop", "adam", "adamw"]
ScheduleName = Literal["constant", "step", "cosine"]
PresetName = Literal["default", "seed-basic", "seed-deep", "best", "fashion", "fashion-best"]

#: Model names are directory names in the registry: keep them boring.
MODEL_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"

#: What both Fashion-MNIST presets share: mirrored clothes and no rotation, shift or zoom (shifts
#: cost accuracy: a garment fills its frame), no weight decay or input dropout (the sweeps found
#: neither helps), label smoothing 0.1, Adam on a cosine schedule.
_FASHION_RECIPE: dict[str, Any] = {
    "dataset": "fashion-mnist",
    "activation": "relu",
    "batch_norm": False,
    "input_dropout": 0.0,
    "l2": 0.0,
    "weight_decay": 0.0,
    "label_smoothing": 0.1,
    "standardize": True,
    "optimizer": "adam",
    "lr_schedule": "cosine",
    "grad_clip": None,
    "augment": True,
    "elastic": False,
    "max_rotation": 0.0,
    "max_shift": 0.0,
    "max_scale": 0.0,
    "flip": True,
    "early_stopping_patience": None,
}

# Presets. "default" is what `train --data-dir DIR` with no other option runs.
PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    # The first seed: 784-10-10, ReLU, plain full-batch gradient descent, lr 0.1, 500 iterations.
    "seed-basic": {
        "hidden_layers": [10],
        "activation": "relu",
        "epochs": 500,
        "batch_size": 0,
        "optimizer": "sgd",
        "learning_rate": 0.1,
        "lr_schedule": "constant",
        "warmup_epochs": 0,
        "dropout": 0.0,
        "l2": 0.0,
        "batch_norm": False,
        "label_smoothing": 0.0,
        "augment": False,
        "val_fraction": 0.0,
        "early_stopping_patience": None,
        "standardize": False,
    },
    # The second seed: 128-64-32-16 hidden, dropout, L2.
    "seed-deep": {
        "hidden_layers": [128, 64, 32, 16],
        "activation": "relu",
        "epochs": 30,
        "batch_size": 64,
        "optimizer": "adam",
        "learning_rate": 1e-3,
        "lr_schedule": "constant",
        "warmup_epochs": 0,
        "dropout": 0.2,
        "l2": 1e-4,
        "augment": False,
        "label_smoothing": 0.0,
    },
    # Our strongest MLP: wide layers, light dropout, affine + elastic augmentation, cosine schedule
    # with warm-up. Every training field is pinned so changes to the defaults never alter it.
    # Tuned on a 10% validation split (BENCHMARKS.md); 64 epochs ~ 520 s on 2 quiet cores.
    "best": {
        "hidden_layers": [1024, 1024],
        "activation": "relu",
        "batch_norm": False,
        "dropout": 0.1,
        "input_dropout": 0.0,
        "l2": 0.0,
        "weight_decay": 0.0,
        "label_smoothing": 0.05,
        "standardize": True,
        "epochs": 64,
        "batch_size": 256,
        "optimizer": "adam",
        "learning_rate": 2e-3,
        "lr_schedule": "cosine",
        "warmup_epochs": 1,
        "grad_clip": None,
        "augment": True,
        "elastic": True,
        "max_rotation": 12.0,
        "max_shift": 2.0,
        "max_scale": 0.1,
        "flip": False,
        "val_fraction": 0.02,
        "early_stopping_patience": None,
    },
    # Fashion-MNIST, found by sweeps on a validation split (BENCHMARKS.md, "Fashion-MNIST
    # presets"). "fashion" fits a one-minute budget on 2 cores; "fashion-best" is the same recipe
    # widened and regularised harder (three sweeps at that width found nothing better on
    # validation: BENCHMARKS.md).
    "fashion": {
        **_FASHION_RECIPE,
        "hidden_layers": [512, 256],
        "dropout": 0.05,
        "epochs": 18,
        "batch_size": 128,
        "learning_rate": 1.5e-3,
        "warmup_epochs": 0,
        "val_fraction": 0.05,
    },
    "fashion-best": {
        **_FASHION_RECIPE,
        "hidden_layers": [1024, 1024],
        "dropout": 0.3,
        "epochs": 50,
        "batch_size": 256,
        "learning_rate": 1.5e-3,
        "warmup_epochs": 1,
        "val_fraction": 0.02,
    },
}


#: The values `TrainConfig._cross_field_rules` refuses inside a field's own bounds: batch_size 1
#: (batch norm), val_fraction 0 (early stopping). A rule that refuses values past a threshold is
#: broken at a range's end if anywhere; these are holes, which a sweep also checks inside its
#: ranges (trainer_service.sweeps.models). A new rule that refuses isolated values lists them.
RULE_HOLES: dict[str, tuple[float, ...]] = {"batch_size": (1,), "val_fraction": (0.0,)}


class TrainConfig(BaseModel):
    """Every knob of a training run. Unknown fields are rejected, so typos never pass silently."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    model: str | None = Field(
        default=None,
        pattern=MODEL_NAME_PATTERN,
        description="Registry name to publish under; defaults to the dataset's name.",
    )
    dataset: DatasetName = "mnist"
    preset: PresetName | None = None

    hidden_layers: list[int] = Field(default_factory=lambda: [512, 256], min_length=1, max_length=8)
    activation: Activation = "relu"
    batch_norm: bool = False
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0, description="Drop probability (not keep).")
    input_dropout: float = Field(
        default=0.0,
        ge=0.0,
        lt=1.0,
        description="Drop probability for the input pixels (Srivastava et al. 2014 used 0.2).",
    )
    l2: float = Field(default=0.0, ge=0.0, le=1.0)
    label_smoothing: float = Field(default=0.1, ge=0.0, lt=1.0)
    standardize: bool = Field(default=True, description="Subtract the training-set pixel mean.")

    epochs: int = Field(default=8, ge=1, le=1000)
    batch_size: int = Field(default=256, ge=0, le=60000, description="0 means full batch.")
    optimizer: OptimizerName = "adam"
    learning_rate: float = Field(default=2e-3, gt=0.0, le=10.0)
    momentum: float = Field(default=0.9, ge=0.0, lt=1.0)
    weight_decay: float = Field(default=0.0, ge=0.0, le=1.0, description="Decoupled (AdamW).")
    lr_schedule: ScheduleName = "cosine"
    warmup_epochs: int = Field(default=0, ge=0, le=100)
    grad_clip: float | None = Field(default=None, gt=0.0)

    augment: bool = True
    elastic: bool = False
    max_rotation: float = Field(
        default=12.0, ge=0.0, le=45.0, description="Augmentation: largest rotation (degrees)."
    )
    max_shift: float = Field(
        default=2.0, ge=0.0, le=6.0, description="Augmentation: largest shift (pixels)."
    )
    max_scale: float = Field(
        default=0.1, ge=0.0, le=0.5, description="Augmentation: largest relative zoom in or out."
    )
    flip: bool = Field(
        default=False,
        description="Augmentation: mirror half the images left-right (clothing, not digits).",
    )

    val_fraction: float = Field(default=0.1, ge=0.0, lt=0.5)
    early_stopping_patience: int | None = Field(default=None, ge=1, le=1000)
    train_limit: int | None = Field(
        default=None, ge=10, description="Train on the first N training images (tests, demos)."
    )
    seed: int = Field(default=0, ge=0, le=2**32 - 1)

    @field_validator("*", mode="before")
    @classmethod
    def _no_booleans_as_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        """JSON `true` is not 1: pydantic's lax mode would take it as one (a client's typo, never
        what was meant), so a number field given a boolean is an error."""
        if cls.model_fields[info.field_name].annotation is bool:
            return value
        items = value if isinstance(value, list) else [value]
        if any(isinstance(item, bool) for item in items):
            raise ValueError("must be a number, not a boolean")
        return value

    @field_validator("hidden_layers")
    @classmethod
    def _widths_positive(cls, widths: list[int]) -> list[int]:
        if not all(1 <= w <= 8192 for w in widths):
            raise ValueError("every hidden layer width must be between 1 and 8192")
        return widths

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        """Fill in the preset's values underneath whatever the caller set explicitly. A preset
        that is not one of PRESETS' names (any JSON type) is left for the field to reject."""
        preset = data.get("preset") if isinstance(data, dict) else None
        if isinstance(preset, str) and preset in PRESETS:
            given = {k: v for k, v in data.items() if v is not None or k == "preset"}
            return {**PRESETS[preset], **given}
        return data

    @model_validator(mode="after")
    def _cross_field_rules(self) -> TrainConfig:
        """Rules between fields; each error names the field to change."""
        if self.early_stopping_patience is not None and self.val_fraction == 0:
            _field_error(
                "early_stopping_patience",
                self.early_stopping_patience,
                "early stopping needs a validation split: set val_fraction > 0 or leave "
                "early_stopping_patience empty",
            )
        if self.batch_norm and self.batch_size == 1:
            _field_error(
                "batch_size",
                self.batch_size,
                "batch norm needs at least 2 samples per batch: use batch_size >= 2 "
                "(or 0 for full batch), or batch_norm false",
            )
        return self

    def training_spec(self) -> TrainingSpec:
        """The engine's hyperparameters for this run: every `TrainingSpec` field is a field of
        this config under the same name, so the spec is generated, never copied by hand."""
        # the engine (NumPy): validating a config (CLI, API) does not need it
        from shared.nn.training import TrainingSpec

        names = [f.name for f in dataclasses.fields(TrainingSpec)]
        return TrainingSpec(**{name: getattr(self, name) for name in names})

    def build_model(
        self, input_size: int = N_PIXELS, n_classes: int = N_CLASSES, mean: np.ndarray | None = None
    ) -> Sequential:
        """The untrained network: `shared.nn.model.build_mlp` with this config's architecture. With
        `standardize`, the first layer subtracts `mean` (the training split's per-pixel mean; None:
        zeros, i.e. the identity until a mean is known)."""
        import numpy as np  # the engine (NumPy): validating a config (CLI, API) does not need it

        from shared.nn.model import build_mlp  # the engine, as above

        if self.standardize and mean is None:
            mean = np.zeros(input_size, np.float32)
        return build_mlp(
            input_size=input_size,
            hidden_layers=self.hidden_layers,
            n_classes=n_classes,
            activation=self.activation,
            batch_norm=self.batch_norm,
            dropout=self.dropout,
            input_dropout=self.input_dropout,
            mean=mean if self.standardize else None,
            seed=self.seed,
        )

    @property
    def model_name(self) -> str:
        """The registry name this run publishes under."""
        return self.model or self.dataset

    def public_dict(self) -> dict[str, Any]:
        """JSON-ready dict, as stored in manifests and returned by the API."""
        return self.model_dump(mode="json")


def _field_error(field: str, value: Any, message: str) -> None:
    """Raise a ValidationError located at `field` (a plain ValueError in a model validator would
    carry no location, and every error this schema raises names its field)."""
    error = PydanticCustomError("cross_field", message)
    details = InitErrorDetails(type=error, loc=(field,), input=value)
    raise ValidationError.from_exception_data("TrainConfig", [details])
