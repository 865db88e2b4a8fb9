"""Where the named datasets live on this machine, and where to download them from.

The library functions take these as arguments (`load_dataset(name, folder, mirrors=...)`);
`from_environment` is the one place the environment variables documented in README.md are read,
called by the CLI and the worker at their edge.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from shared.datasets.named import DATASETS, dataset_info

#: DATA_DIR when unset: datasets go to ./var/data/<name>.
DEFAULT_DATA_DIR = Path("./var/data")


@dataclass(frozen=True)
class DataLocations:
    """Dataset folders and download mirrors (see `from_environment` for the variables)."""

    #: Parent of the per-dataset folders `<data_dir>/<name>` (downloaded into when missing).
    data_dir: Path = DEFAULT_DATA_DIR
    #: An existing copy of a dataset somewhere else, by dataset name; wins over `data_dir`.
    folders: Mapping[str, Path] = field(default_factory=dict)
    #: Mirror base URLs to download from instead of the built-in ones (may hold `{name}`).
    mirrors: tuple[str, ...] = ()

    def folder(self, name: str) -> Path:
        """The folder of named dataset `name`: its own override, else `<data_dir>/<name>`."""
        info = dataset_info(name)
        return self.folders.get(info.name) or self.data_dir / info.name


def from_environment(environ: Mapping[str, str]) -> DataLocations:
    """Read `MNIST_DATA_DIR` / `FASHION_MNIST_DATA_DIR`, `DATA_DIR` and `DATASET_MIRRORS`.

    `DATASET_MIRRORS` is a comma-separated list of base URLs; empty values count as unset.
    """
    folders = {
        name: Path(environ[i.env_var]) for name, i in DATASETS.items() if environ.get(i.env_var)
    }
    raw_mirrors = environ.get("DATASET_MIRRORS", "")
    return DataLocations(
        data_dir=Path(environ.get("DATA_DIR") or DEFAULT_DATA_DIR),
        folders=folders,
        mirrors=tuple(m.strip() for m in raw_mirrors.split(",") if m.strip()),
    )
