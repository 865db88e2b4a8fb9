"""Client-supplied names → paths under the root, checked twice: by the name patterns, then by
the normalised path staying inside the root and never going through a symlink.

Hot-path helpers work on plain strings: pathlib costs more than the lstat calls here.
"""

from __future__ import annotations

import os
import stat
from typing import Any

from shared.registry.errors import (
    InvalidNameError,
    ModelNotFoundError,
    RegistryError,
    VersionNotFoundError,
)
from shared.registry.files import lstat_or_none
from shared.registry.names import (
    is_model_name,
    is_version_name,
    validate_model_name,
    validate_version,
)


class RegistryPaths:
    """The folders of a registry root (resolved once, here)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = os.path.realpath(os.fspath(root))
        self.prefix = self.root.rstrip(os.sep) + os.sep

    def inside_root(self, path: str | os.PathLike[str]) -> str:
        """Second line of defence (after the name patterns): the normalised path must be a
        strict descendant of the root."""
        norm = os.path.normpath(os.fspath(path))
        if not norm.startswith(self.prefix) or norm == self.root:
            raise InvalidNameError(f"{path} resolves outside the registry root")
        return norm

    def _checked_dir(self, path: str, missing: type[RegistryError], what: str) -> str:
        """lstat (never follows symlinks): a symlinked model or version folder could point
        anywhere, so it is refused instead of resolved; this is cheaper than realpath()."""
        self.inside_root(path)
        st = lstat_or_none(path)
        if st is not None and stat.S_ISLNK(st.st_mode):
            raise InvalidNameError(
                f"{path} is a symlink, which could lead outside the registry root"
            )
        if st is None or not stat.S_ISDIR(st.st_mode):
            raise missing(what)
        return path

    def model(self, name: str) -> str:
        """The folder of model `name` (which may not exist yet)."""
        return self.inside_root(self.prefix + validate_model_name(name))

    def existing_model(self, name: str) -> str:
        """The folder of model `name`; ModelNotFoundError if there is none."""
        return self._checked_dir(
            self.model(name), ModelNotFoundError, f"model {name!r} not found in the registry"
        )

    def version(self, name: str, version: Any) -> str:
        """The folder of a published version; VersionNotFoundError if there is none."""
        v = validate_version(version)
        path = f"{self.existing_model(name)}{os.sep}{v}"
        try:
            return self._checked_dir(
                path, VersionNotFoundError, f"model {name!r} has no version {v}"
            )
        except InvalidNameError:
            # a symlink named like a version is not a version (versions() does not list it)
            raise VersionNotFoundError(f"model {name!r} has no version {v}") from None

    def model_names_on_disk(self) -> list[str]:
        """Every model-shaped folder under the root, sorted, whether or not it has versions."""
        try:
            with os.scandir(self.root) as it:
                return sorted(
                    e.name for e in it if is_model_name(e.name) and e.is_dir(follow_symlinks=False)
                )
        except (FileNotFoundError, NotADirectoryError):
            return []


def version_entries(model_dir: str | os.PathLike[str]) -> list[os.DirEntry[str]]:
    """The entries of a model folder named like versions (of any type)."""
    with os.scandir(model_dir) as it:
        return [e for e in it if is_version_name(e.name)]
