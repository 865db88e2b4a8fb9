"""The one in-memory form every loader returns, and the error every loader raises."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from shared.images import N_CLASSES


class DatasetError(ValueError):
    """A dataset file is missing, malformed or failed verification; the message names the file.
    `transient` is True only when the failure was the network's (a refused connection, a timeout,
    HTTP 5xx/429 from every mirror): retrying later may succeed; the RQ job retries on that alone."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


def digit_class_names() -> list[str]:
    """ "0".."9": the class names of a dataset we know nothing more about."""
    return [str(i) for i in range(N_CLASSES)]


@dataclass
class Dataset:
    """A dataset in model-input form: float32 [N, 784] in [0, 1], int64 labels. `fingerprint`
    identifies the exact data, so a model's manifest can say what it was trained on."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    fingerprint: str
    class_names: list[str] = field(default_factory=digit_class_names)
    #: Where it came from: the folder or file path, for messages and manifests.
    source: str = ""


def to_model_input(images: np.ndarray) -> np.ndarray:
    """uint8 images [N, 28, 28] or [N, 784] → float32 [N, 784] in [0, 1] (the model contract)."""
    out = images.reshape(images.shape[0], -1).astype(np.float32)
    out /= np.float32(255.0)  # in place: one float array, not two
    return out
