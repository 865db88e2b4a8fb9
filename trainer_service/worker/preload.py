"""What a training worker loads once, before it forks work horses.

RQ runs every job in a fresh work horse forked from the worker: what the worker has imported or
loaded, each horse inherits for free (copy-on-write); what it has not, each horse pays for again.
Measured on 2 cores (benchmarks/lifecycle.py), per job: ~1.5 s of imports (NumPy, the engine,
the pipeline, the registry, matplotlib) and ~0.4-0.5 s to decompress, hash and convert MNIST.

So the worker imports those modules and loads the datasets present locally
(WORKER_PRELOAD_DATASETS) before it listens. A horse uses a preloaded dataset only if its source
files are still exactly the ones read (same path, inode, size, mtime and ctime of each IDX file);
otherwise the job loads it as before. Each horse gets its own copy-on-write view, so a job can
never change what the next job sees. Memory: a preloaded dataset stays resident in the idle
worker (MNIST: ~220 MB as float32); the horse shares those pages, so a job's peak is unchanged.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shared.datasets import DataLocations

log = logging.getLogger(__name__)

_datasets: dict[str, tuple[Any, Any]] = {}  # name -> (source signature, Dataset)


def import_job_modules() -> None:
    """Import what a job needs besides its own module (the worker imports that one: it imports
    this module). Call after the BLAS thread settings are in the environment."""
    import matplotlib.backends.backend_agg  # noqa: F401  (shared.reports imports it lazily)
    import matplotlib.figure  # noqa: F401

    import shared.datasets  # noqa: F401
    import shared.modelfile  # noqa: F401
    import shared.nn.training  # noqa: F401
    import shared.pipeline  # noqa: F401
    import shared.registry  # noqa: F401
    import shared.reports  # noqa: F401
    import trainer_service.sweeps.coordinator  # noqa: F401  (sweep trials: Optuna)


def source_signature(folder: Path) -> tuple | None:
    """Identity of the IDX files in `folder` (what `load_dataset` would read now); None if it is
    not a complete IDX folder."""
    from shared.datasets import find_idx_files  # the datasets (NumPy): where one is loaded

    try:
        if not folder.is_dir():
            return None
        files = find_idx_files(folder)
        if any(path is None for path in files.values()):
            return None
        stats = {key: os.stat(path) for key, path in sorted(files.items())}
    except OSError:
        return None
    return str(folder), tuple(
        (key, str(files[key]), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        for key, st in stats.items()
    )


def preload_datasets(names: Iterable[str], locations: DataLocations) -> list[str]:
    """Load each named dataset present locally (never downloads); returns those loaded."""
    from shared.datasets import DatasetError, load_dataset  # NumPy: where a dataset is loaded

    loaded = []
    for name in names:
        folder = locations.folder(name)
        before = source_signature(folder)
        if before is None:
            log.info("dataset %s is not present locally; jobs load it themselves", name)
            continue
        started = time.perf_counter()
        try:
            ds = load_dataset(name, folder, download=False)
        except (DatasetError, OSError) as exc:
            log.warning("dataset %s not preloaded (%s); jobs load it themselves", name, exc)
            continue
        if source_signature(folder) != before:  # changed while we read it
            log.warning("dataset %s changed while preloading; jobs load it themselves", name)
            continue
        _datasets[name] = (before, ds)
        loaded.append(name)
        log.info(
            "dataset %s preloaded in %.2fs (%d train, %d test images)",
            name,
            time.perf_counter() - started,
            len(ds.y_train),
            len(ds.y_test),
        )
    return loaded


def preloaded_dataset(name: str, folder: Path) -> Any | None:
    """The preloaded Dataset for `name` if it came from `folder`, whose files are unchanged
    since, else None."""
    entry = _datasets.get(name)
    if entry is None:
        return None
    if source_signature(folder) != entry[0]:
        log.info("dataset %s changed on disk since the worker preloaded it; loading it", name)
        return None
    return entry[1]
