"""Where the named datasets live on this machine, and where to download them from: passed to
`load_dataset`, built from the environment by `TrainerSettings.data_locations`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from shared.datasets.named import dataset_info


@dataclass(frozen=True)
class DataLocations:
    """Dataset folders and download mirrors."""

    #: Parent of the per-dataset folders `<data_dir>/<name>` (downloaded into when missing).
    data_dir: Path
    #: An existing copy of a dataset somewhere else, by dataset name; wins over `data_dir`.
    folders: Mapping[str, Path] = field(default_factory=dict)
    #: Mirror base URLs to download from instead of the built-in ones (may hold `{name}`).
    mirrors: tuple[str, ...] = ()

    def folder(self, name: str) -> Path:
        """The folder of named dataset `name`: its own override, else `<data_dir>/<name>`."""
        info = dataset_info(name)
        return self.folders.get(info.name) or self.data_dir / info.name
