"""TrainConfig: the one schema for a training run, spoken by the CLI (`python -m trainer_service
train`), the trainer API (`POST /v1/jobs`), the RQ job and the registry manifest alike.

A preset fills in defaults; any field the caller sets explicitly wins over the preset. Every rule
a run depends on is checked here, cross-field ones included, so a config that validates trains:
the engine (shared.nn) and the pipeline check nothing again.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError, ValidationError

from shared.images import IMAGE_SIDE, N_CLASSES, N_PIXELS

if TYPE_CHECKING:  # the engine (NumPy) is only imported once a model is built
    import numpy as np

    from shared.nn.model import Sequential
    from shared.nn.training import TrainingSpec

DatasetName = Literal["mnist", "fashion-mnist"]
Activation = Literal["relu", "leaky_relu", "sigmoid", "tanh"]
OptimizerName = Literal["sgd", "momentum", "nesterov", "rmsprop", "adam", "adamw"]
ScheduleName = Literal["constant", "step", "cosine"]
PresetName = Literal[
    "default",
    "seed-basic",
    "seed-deep",
    "best",
    "fashion",
    "fashion-best",
    "cnn",
    "cnn-best",
    "fashion-cnn",
]

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

#: The `cnn` network: two 5x5 convolutions, each halved by a 2x2 max pool, then 256 units:
#: 28x28 -> 24x24x32 -> 12x12x32 -> 8x8x64 -> 4x4x64 -> 256 -> 10 (317k parameters; ~30 s an
#: epoch of 60,000 images on one core).
_CNN_NETWORK: list[dict[str, Any]] = [
    {"conv": 32, "kernel": 5},
    {"pool": 2},
    {"conv": 64, "kernel": 5},
    {"pool": 2},
    {"dense": 256},
    {"dropout": 0.4},
]

#: The `cnn-best` network: the `cnn` network with a third convolution, 3x3 "same" from the 4x4x64
#: maps into 128 channels: ... -> 4x4x64 -> 4x4x128 -> 256 -> 10 (654k parameters with batch
#: norm). With the same recipe it fits the distorted training images better than the `cnn`
#: network (training accuracy 99.9 % against 99.7 %), which stops near 99.65 % on the test set
#: (BENCHMARKS.md §2); its epochs take longer (33-36 s against 25-31 s side by side, §2).
_CNN_BEST_NETWORK: list[dict[str, Any]] = [
    {"conv": 32, "kernel": 5},
    {"pool": 2},
    {"conv": 64, "kernel": 5},
    {"pool": 2},
    {"conv": 128, "kernel": 3, "padding": "same"},
    {"dense": 256},
    {"dropout": 0.4},
]

#: What the CNN presets share with each other: the network's own dropout only, Adam on a cosine
#: schedule, batch 128, a small validation split.
_CNN_RECIPE: dict[str, Any] = {
    "activation": "relu",
    "dropout": 0.0,
    "input_dropout": 0.0,
    "l2": 0.0,
    "weight_decay": 0.0,
    "label_smoothing": 0.1,
    "standardize": True,
    "batch_size": 128,
    "optimizer": "adam",
    "lr_schedule": "cosine",
    "grad_clip": None,
    "augment": True,
    "val_fraction": 0.02,
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
    # Convolutional networks (figures to be measured: BENCHMARKS.md). "cnn" aims at >= 99.3 % in
    # <= 5 min on 2 cores: 8 epochs of mild affine augmentation (~64 ms a batch on one core).
    "cnn": {
        **_CNN_RECIPE,
        "network": _CNN_NETWORK,
        "batch_norm": False,
        "epochs": 8,
        "learning_rate": 1.5e-3,
        "warmup_epochs": 0,
        "elastic": False,
        "max_rotation": 10.0,
        "max_shift": 2.0,
        "max_scale": 0.1,
        "flip": False,
    },
    # A third convolution, batch norm and 5x the epochs: aims at >= 99.65 % in <= 20 min. Tried on
    # 2 cores (BENCHMARKS.md §2): the `cnn` network with affine + elastic augmentation, no batch
    # norm, 30 epochs 99.42 %; affine only, 40 epochs 99.53 %; with batch norm, 40 epochs
    # 99.61-99.69 % (ten runs; milder or stronger distortion, weight averaging, weight decay:
    # no better); this network, 40 epochs: 99.63-99.72 % (ten runs, one under 99.65 %); 34 and
    # 36 epochs: 99.62-99.68 %.
    "cnn-best": {
        **_CNN_RECIPE,
        "network": _CNN_BEST_NETWORK,
        "batch_norm": True,
        "epochs": 40,
        "learning_rate": 2e-3,
        "warmup_epochs": 1,
        "elastic": False,
        "max_rotation": 10.0,
        "max_shift": 2.0,
        "max_scale": 0.1,
        "flip": False,
    },
    # Fashion-MNIST: 3x3 "same" convolutions keep the garments' edges (a 5x5 valid one trims 2
    # pixels a side), batch norm, the Fashion recipe's mirroring; aims at >= 92.5 % in <= 15 min
    # (~110 ms a batch on one core: 15 epochs ~ 13 min).
    "fashion-cnn": {
        **_FASHION_RECIPE,
        **_CNN_RECIPE,
        "network": [
            {"conv": 32, "kernel": 3, "padding": "same"},
            {"pool": 2},
            {"conv": 64, "kernel": 3, "padding": "same"},
            {"pool": 2},
            {"dense": 256},
            {"dropout": 0.4},
        ],
        "batch_norm": True,
        "epochs": 15,
        "learning_rate": 1.5e-3,
        "warmup_epochs": 1,
    },
}


#: The values `TrainConfig._cross_field_rules` refuses inside a field's own bounds: batch_size 1
#: (batch norm), val_fraction 0 (early stopping). A rule that refuses values past a threshold is
#: broken at a range's end if anywhere; these are holes, which a sweep also checks inside its
#: ranges (trainer_service.sweeps.models). A new rule that refuses isolated values lists them.
RULE_HOLES: dict[str, tuple[float, ...]] = {"batch_size": (1,), "val_fraction": (0.0,)}


#: The kinds of layer a `network` entry can be (its one key among these names it) and the
#: settings each takes.
_LAYER_SETTINGS = {
    "conv": ("kernel", "stride", "padding"),
    "pool": ("stride",),
    "dense": (),
    "dropout": (),
}


class NetworkLayer(BaseModel):
    """One entry of `TrainConfig.network`: exactly one of conv, pool, dense or dropout, with
    that kind's settings. Each conv and dense layer is followed by the config's `activation`
    (after batch norm when `batch_norm` is on; both after the pool when one follows a conv:
    `shared.nn.model.build_network`)."""

    # strict: JSON `true` is not the number 1 (as `_no_booleans_as_numbers` below)
    model_config = ConfigDict(extra="forbid", strict=True)

    conv: int | None = Field(
        default=None, ge=1, le=1024, description="A convolution with this many output channels."
    )
    pool: int | None = Field(default=None, ge=1, le=16, description="Max pooling, pool x pool.")
    dense: int | None = Field(default=None, ge=1, le=8192, description="Fully connected units.")
    dropout: float | None = Field(default=None, ge=0.0, lt=1.0, description="Drop probability.")
    kernel: int | None = Field(default=None, ge=1, le=28, description="conv: kernel side.")
    stride: int | None = Field(
        default=None, ge=1, le=28, description="conv: default 1; pool: default the pool's size."
    )
    padding: Literal["valid", "same"] | None = Field(
        default=None, description="conv: default valid (no padding); same keeps height and width."
    )

    @model_validator(mode="after")
    def _one_kind(self) -> NetworkLayer:
        kinds = [kind for kind in _LAYER_SETTINGS if getattr(self, kind) is not None]
        if len(kinds) != 1:
            raise ValueError(f"give exactly one of {', '.join(_LAYER_SETTINGS)}")
        for name in ("kernel", "stride", "padding"):
            if getattr(self, name) is not None and name not in _LAYER_SETTINGS[kinds[0]]:
                raise ValueError(f"{name} is not a setting of a {kinds[0]} layer")
        if self.conv is not None:  # the defaults, written out so a stored config shows them
            self.stride, self.padding = self.stride or 1, self.padding or "valid"
        if self.pool is not None:
            self.stride = self.stride or self.pool
        return self

    @model_serializer(mode="wrap")
    def _settings_only(self, handler: Any) -> dict[str, Any]:
        """Only the entry's own kind and settings: {"pool": 2, "stride": 2}, not six nulls."""
        return {key: value for key, value in handler(self).items() if value is not None}


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

    hidden_layers: list[int] | None = Field(
        default_factory=lambda: [512, 256],
        min_length=1,
        max_length=8,
        description="A perceptron's hidden layer widths; null when `network` gives the layers.",
    )
    network: list[NetworkLayer] | None = Field(
        default=None,
        min_length=1,
        max_length=32,
        description="The layers instead of hidden_layers, e.g. [{conv: 32, kernel: 5}, {pool: 2}, "
        "{dense: 128}, {dropout: 0.3}]; a flatten before the first dense and the output layer "
        "of one unit per class are added.",
    )
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
    def _widths_positive(cls, widths: list[int] | None) -> list[int] | None:
        if widths is not None and not all(1 <= w <= 8192 for w in widths):
            raise ValueError("every hidden layer width must be between 1 and 8192")
        return widths

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        """Fill in the preset's values underneath whatever the caller set explicitly. A preset
        that is not one of PRESETS' names (any JSON type) is left for the field to reject."""
        if not isinstance(data, dict):
            return data
        preset = data.get("preset")
        if isinstance(preset, str) and preset in PRESETS:
            given = {k: v for k, v in data.items() if v is not None or k == "preset"}
            defaults = PRESETS[preset]
            # The caller's layers replace the preset's: a network its hidden layers and their
            # dropout, hidden layers its network.
            if "network" in given:
                replaced: tuple[str, ...] = ("hidden_layers", "dropout")
            else:
                replaced = ("network",) if "hidden_layers" in given else ()
            defaults = {k: v for k, v in defaults.items() if k not in replaced}
            data = {**defaults, **given}
        if data.get("network") is not None and "hidden_layers" not in data:
            data = {**data, "hidden_layers": None}  # the layers are the network's
        return data

    @model_validator(mode="after")
    def _cross_field_rules(self) -> TrainConfig:
        """Rules between fields; each error names the field to change."""
        if (self.network is None) == (self.hidden_layers is None):
            field = "network" if self.network else "hidden_layers"
            _field_error(
                field,
                getattr(self, field),
                "give the layers as hidden_layers (a perceptron) or as a network: one of the two",
            )
        if self.network is not None:
            _check_network(self.network)
            if self.dropout:
                _field_error(
                    "dropout",
                    self.dropout,
                    'with a network, dropout goes where it applies: {"dropout": p} entries',
                )
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

        from shared.nn.model import build_mlp, build_network  # the engine, as above

        if self.standardize and mean is None:
            mean = np.zeros(input_size, np.float32)
        common = {
            "n_classes": n_classes,
            "activation": self.activation,
            "batch_norm": self.batch_norm,
            "input_dropout": self.input_dropout,
            "mean": mean if self.standardize else None,
            "seed": self.seed,
        }
        if self.network is not None:
            side = math.isqrt(input_size)
            network = [layer.model_dump() for layer in self.network]
            return build_network(input_shape=(1, side, side), network=network, **common)
        return build_mlp(
            input_size=input_size, hidden_layers=self.hidden_layers, dropout=self.dropout, **common
        )

    @property
    def model_name(self) -> str:
        """The registry name this run publishes under."""
        return self.model or self.dataset

    def public_dict(self) -> dict[str, Any]:
        """JSON-ready dict, as stored in manifests and returned by the API."""
        return self.model_dump(mode="json")


def _check_network(network: list[NetworkLayer]) -> None:
    """Every entry fits the per-sample shape it receives, so a network that validates builds: a
    conv or pool window no larger than its input (square images of IMAGE_SIDE, as are square
    windows), convolutions and pools before the first dense layer. The arithmetic is
    `Conv2D.output_shape`'s and `MaxPool2D.output_shape`'s (kept apart: validating a config does
    not import the engine; tests/unit/test_config_network.py holds the two together)."""
    side, flat = IMAGE_SIDE, False
    for i, layer in enumerate(network):
        if layer.dense is not None:
            flat = True
        if layer.conv is None and layer.pool is None:
            continue
        if flat:
            message = "a conv or pool layer needs images: put it before the first dense layer"
            _field_error(("network", i), layer.model_dump(), message)
        key = "kernel" if layer.conv is not None else "pool"
        window, stride = getattr(layer, key), layer.stride or 1
        if window is None:
            _field_error(("network", i, key), None, "a conv layer needs its kernel size")
        elif layer.padding == "same":
            side = -(-side // stride)
        elif window > side:
            message = f"a {window}x{window} window is larger than its {side}x{side} input"
            _field_error(("network", i, key), window, message)
        else:
            side = (side - window) // stride + 1


def _field_error(field: str | tuple[str | int, ...], value: Any, message: str) -> None:
    """Raise a ValidationError located at `field` (a plain ValueError in a model validator would
    carry no location, and every error this schema raises names its field)."""
    error = PydanticCustomError("cross_field", message)
    loc = (field,) if isinstance(field, str) else field
    details = InitErrorDetails(type=error, loc=loc, input=value)
    raise ValidationError.from_exception_data("TrainConfig", [details])
