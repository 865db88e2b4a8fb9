"""A versioned model registry (think MLflow registry + TF Serving dirs) on a plain shared folder,
the default, or on S3-compatible object storage (``s3://bucket/prefix``: see `shared.registry.s3`
for its layout and why). One `Registry` class (core.py) holds everything both must do alike;
a `Storage` (storage.py) is what differs: `local.LocalStorage` and `s3.S3Storage`. Both pass one
shared test suite (tests/integration/test_registry_suite.py).

The folder's layout::

    <root>/<name>/<version>/weights.npz       the model file, copied verbatim
    <root>/<name>/<version>/manifest.json     sha256, size, created_at, package_version, caller's data
    <root>/<name>/<version>/<extra files>     optional, hashed into manifest["files"]
    <root>/<name>/state.json                  {"pinned", "aliases", "traffic", "shadow",
                                               "keep_last", "history"}
    <root>/<name>/<version>                   an empty FILE: a deleted version (its number is never reused)
    <root>/<name>/.state.lock                 flock target for state changes (writers only)
    <root>/<name>/.tmp-<uuid>/                a publish in progress (or a crashed one); never listed

Why it is built this way:

* A version only becomes visible through one atomic ``os.rename(tmp_dir, <name>/<v>)``. The rename
  fails if ``<v>`` already holds a version, so the number is allocated by the filesystem itself:
  publishers in different processes or on different machines sharing the volume cannot collide,
  and a publisher killed at any point leaves at most an invisible ``.tmp-*`` folder.
* The folder name is the version number; the manifest never stores it (readers add ``"version"``).
* A temp folder's name carries its publisher (``.tmp-<uuid>.<pid>.<host>``): the next publish
  removes the temp folder of a publisher on this host that is no longer running (SIGKILLed
  mid-publish) at once, and anything else once it is older than ``stale_temp_seconds``.
* Readers never write anything (no lock files, no cleanup), so inference can mount the volume
  read-only. Verification (manifest + sha256 of every file) is cached by file identity
  (inode, size, mtime_ns, ctime_ns) so the 0.5 s poll in every gunicorn worker costs a few stats.
* A broken version (bad manifest, missing or tampered files) is skipped by ``latest_version`` /
  ``default_version``, reported by ``describe_versions`` and logged once.
* ``state.json`` is replaced atomically under an exclusive ``flock`` so concurrent pin, alias,
  traffic split and shadow changes never lose updates; a corrupt file is logged and the last good
  state is served until the next write repairs it.
* Every client-supplied name, alias and version is validated against a strict ASCII pattern, and
  paths are resolved and checked to stay inside the root as a second line of defence.

One module per concern (README.md's Architecture table lists them, each module's docstring says
what it holds); each imports only the others' public names. Import from the package.
"""

from shared.registry.cache import DEFAULT_CACHE_MAX_MB
from shared.registry.core import Registry
from shared.registry.errors import (
    AliasNotFoundError,
    BrokenVersionError,
    InvalidNameError,
    ModelNotFoundError,
    ReadOnlyRegistryError,
    RegistryError,
    VersionInUseError,
    VersionNotFoundError,
)
from shared.registry.names import validate_alias, validate_model_name, validate_version
from shared.registry.publishing import process_running
from shared.registry.state import KeepLast, TrafficRoute, TrafficSplit, VersionRef, resolve_ref
from shared.registry.storage import RegistryUnavailableError
from shared.registry.views import (
    ModelDetail,
    ModelList,
    ModelSummary,
    ShadowRef,
    VersionSummary,
    aliases_by_version,
    model_detail,
    model_summaries,
    model_summary,
)

__all__ = [
    "DEFAULT_CACHE_MAX_MB",
    "KeepLast",
    "ModelDetail",
    "ModelList",
    "ModelSummary",
    "ShadowRef",
    "TrafficRoute",
    "TrafficSplit",
    "VersionRef",
    "VersionSummary",
    "AliasNotFoundError",
    "BrokenVersionError",
    "InvalidNameError",
    "ModelNotFoundError",
    "ReadOnlyRegistryError",
    "Registry",
    "VersionInUseError",
    "RegistryError",
    "RegistryUnavailableError",
    "VersionNotFoundError",
    "aliases_by_version",
    "model_detail",
    "model_summaries",
    "model_summary",
    "process_running",
    "resolve_ref",
    "validate_alias",
    "validate_model_name",
    "validate_version",
]
