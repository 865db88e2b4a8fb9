"""Names the registry gives and accepts: the files of a version folder, and the checks every
client-supplied model name, alias, version and extra file name passes before it becomes a path."""

from __future__ import annotations

import re
from typing import Any

from shared.config import MODEL_NAME_PATTERN
from shared.registry.errors import InvalidNameError

WEIGHTS_FILE = "weights.npz"
MANIFEST_FILE = "manifest.json"
STATE_FILE = "state.json"
LOCK_FILE = ".state.lock"
TMP_PREFIX = ".tmp-"
STATE_TMP_PREFIX = ".state.json.tmp-"

#: Versions are positive integers without leading zeros, at most 9 digits.
MAX_VERSION = 999_999_999
VERSION_PATTERN = r"[1-9][0-9]{0,8}"
_VERSION_RE = re.compile(VERSION_PATTERN)
_NAME_RE = re.compile(MODEL_NAME_PATTERN)
#: Extra files live next to weights.npz: plain file names only.
_EXTRA_FILE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
#: References resolve() understands besides versions and aliases.
RESERVED_REFS = frozenset({"latest", "default"})
_RESERVED_FILES = frozenset({WEIGHTS_FILE, MANIFEST_FILE})
#: Keys publish() computes; whatever the caller passed under these names is replaced.
REQUIRED_MANIFEST_KEYS = ("sha256", "size_bytes", "created_at", "package_version")


# --------------------------------------------------------------------------------------------
# Validation


def validate_model_name(name: Any) -> str:
    """Return `name` if it is a safe registry name (shared.config.MODEL_NAME_PATTERN), else raise:
    the pattern is ASCII-only with no dots or slashes, so a valid name can never be "..", an
    absolute path, contain NUL or a unicode look-alike, or be longer than 64 characters."""
    if not isinstance(name, str) or _NAME_RE.fullmatch(name) is None:
        raise InvalidNameError(
            f"invalid model name {_short(name)}: must match {MODEL_NAME_PATTERN} "
            "(lowercase ASCII letters, digits, '_' and '-', 1-64 characters)"
        )
    return name


def validate_alias(alias: Any) -> str:
    """Return `alias` if valid: the model-name pattern, not all digits, not "latest"/"default"
    (digits are reserved for versions and the two keywords for resolve(), so a reference string
    always has exactly one meaning)."""
    if not isinstance(alias, str) or _NAME_RE.fullmatch(alias) is None:
        raise InvalidNameError(f"invalid alias {_short(alias)}: must match {MODEL_NAME_PATTERN}")
    if alias.isdigit():
        raise InvalidNameError(f"invalid alias {alias!r}: all-digit names are versions")
    if alias in RESERVED_REFS:
        raise InvalidNameError(f"invalid alias {alias!r}: reserved word")
    return alias


def validate_version(version: Any) -> int:
    """Return the version as an int if it is 1..MAX_VERSION (int or canonical digit string);
    booleans, floats, "0", negatives, leading zeros, signs, whitespace and non-ASCII digits are
    all rejected with InvalidNameError."""
    if isinstance(version, bool):
        raise InvalidNameError(f"invalid version {version!r}")
    if isinstance(version, int):
        if 1 <= version <= MAX_VERSION:
            return version
        raise InvalidNameError(f"invalid version {_short(version)}: must be 1..{MAX_VERSION}")
    if isinstance(version, str) and _VERSION_RE.fullmatch(version):
        return int(version)
    raise InvalidNameError(
        f"invalid version {_short(version)}: must be a positive integer 1..{MAX_VERSION}"
    )


def is_model_name(text: str) -> bool:
    """Whether a folder entry is named like a model (for scans; clients go through validation)."""
    return _NAME_RE.fullmatch(text) is not None


def is_version_name(text: str) -> bool:
    """Whether a folder entry is named like a version: a canonical positive integer."""
    return _VERSION_RE.fullmatch(text) is not None


def is_sha256(value: Any) -> bool:
    """Whether `value` is a lowercase hex sha256, as manifests store them."""
    return isinstance(value, str) and _SHA256_RE.fullmatch(value) is not None


def validate_extra_file_name(fname: Any) -> str:
    """Return `fname` if it may name an extra file beside weights.npz, else InvalidNameError."""
    if (
        not isinstance(fname, str)
        or _EXTRA_FILE_RE.fullmatch(fname) is None
        or fname in _RESERVED_FILES
    ):
        raise InvalidNameError(
            f"invalid extra file name {_short(fname)}: plain ASCII file name, "
            f"not {sorted(_RESERVED_FILES)}"
        )
    return fname


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
