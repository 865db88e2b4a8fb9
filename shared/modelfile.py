"""Model files: ONE .npz holding every array plus a JSON header, never pickles.

Layout: the model's `state()` arrays under their own keys ('<layer>.<name>', float32) and the key
`__header__` holding a JSON string:
    {"format": "digitflow-mlp", "format_version": 1, "spec": <Sequential.spec()>, "metadata": {...}}

Writes are atomic (temp file in the same folder, fsync, os.replace), so a reader — e.g. an
inference worker polling the registry — sees either the old file or the complete new one.
Loading validates everything and raises ModelFileError naming the file and the problem.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from shared.fsutil import write_atomic
from shared.nn.model import Sequential

FORMAT = "digitflow-mlp"
FORMAT_VERSION = 1
HEADER_KEY = "__header__"


class ModelFileError(ValueError):
    """A model file is missing, truncated, tampered with or does not describe a valid model."""

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path, self.problem = str(path), problem
        super().__init__(f"{path}: {problem}")


@dataclass
class LoadedModel:
    model: Sequential
    metadata: dict[str, Any] = field(default_factory=dict)
    sha256: str = ""


def save_model(
    path: str | os.PathLike[str], model: Sequential, metadata: dict[str, Any] | None = None
) -> str:
    """Write `model` (and JSON-able `metadata`) to `path` atomically; return the file's sha256."""
    path = Path(path)
    header = {"format": FORMAT, "format_version": FORMAT_VERSION, "metadata": metadata or {}}
    buf = io.BytesIO()
    try:
        text = json.dumps({**header, "spec": model.spec()}, sort_keys=True, allow_nan=False)
        arrays = {key: value.astype(np.float32) for key, value in model.state().items()}
        np.savez(buf, **{HEADER_KEY: np.array(text)}, **arrays)
    except (TypeError, ValueError) as exc:
        raise ModelFileError(path, f"metadata is not JSON-serialisable: {exc}") from exc
    data = buf.getvalue()
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, data, tmp_prefix=f".{path.name}.tmp-")
    return hashlib.sha256(data).hexdigest()


def load_model(path: str | os.PathLike[str], expected_sha256: str | None = None) -> LoadedModel:
    """Read and fully validate a model file; raise ModelFileError on any problem."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ModelFileError(path, f"cannot read file: {exc.strerror or exc}") from exc
    digest = hashlib.sha256(data).hexdigest()
    if expected_sha256 is not None and digest != expected_sha256.lower():
        raise ModelFileError(
            path, f"sha256 mismatch: expected {expected_sha256}, file has {digest}"
        )
    header, arrays = _read_npz(path, data)
    if (fmt := header.get("format")) != FORMAT:
        raise ModelFileError(path, f"header 'format' is {fmt!r}, expected {FORMAT!r}")
    if (version := header.get("format_version")) != FORMAT_VERSION:
        raise ModelFileError(
            path, f"unsupported format_version {version!r} (this code reads {FORMAT_VERSION})"
        )
    if missing := [k for k in ("spec", "metadata") if k not in header]:
        raise ModelFileError(path, f"header is missing {missing}")
    metadata = header["metadata"]
    if not isinstance(metadata, dict):
        raise ModelFileError(path, "header 'metadata' must be an object")
    for key, value in arrays.items():
        if value.dtype != np.float32:
            raise ModelFileError(path, f"array {key!r} has dtype {value.dtype}, expected float32")
        if not np.all(np.isfinite(value)):
            raise ModelFileError(path, f"array {key!r} contains NaN or infinity")
    try:
        model = Sequential.from_spec(header["spec"], arrays)
    except ValueError as exc:
        raise ModelFileError(path, f"invalid model: {exc}") from exc
    return LoadedModel(model=model, metadata=metadata, sha256=digest)


def _read_npz(
    path: str | os.PathLike[str], data: bytes
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    try:
        npz = np.load(io.BytesIO(data), allow_pickle=False)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        raise ModelFileError(
            path, f"not a readable .npz archive (truncated or corrupt?): {exc}"
        ) from exc
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise ModelFileError(path, "not an .npz archive (a bare .npy array?)")
    arrays: dict[str, np.ndarray] = {}
    with npz:
        for key in npz.files:
            try:
                arrays[key] = npz[key]
            except ValueError as exc:
                if "allow_pickle" in str(exc) or "object" in str(exc).lower():
                    raise ModelFileError(
                        path, f"array {key!r} is a pickled object array; refusing to load it"
                    ) from exc
                raise ModelFileError(path, f"array {key!r} is unreadable: {exc}") from exc
            except (zipfile.BadZipFile, EOFError, OSError) as exc:
                raise ModelFileError(path, f"array {key!r} is truncated or corrupt: {exc}") from exc
    raw = arrays.pop(HEADER_KEY, None)
    if raw is None:
        raise ModelFileError(path, f"missing the {HEADER_KEY!r} JSON header")
    if raw.shape != () or raw.dtype.kind != "U":
        raise ModelFileError(path, f"{HEADER_KEY!r} must be a single JSON string")
    try:
        header = json.loads(str(raw))
    except json.JSONDecodeError as exc:
        raise ModelFileError(path, f"{HEADER_KEY!r} is not valid JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise ModelFileError(path, f"{HEADER_KEY!r} must be a JSON object")
    return header, arrays
