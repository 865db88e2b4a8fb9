"""The registry on S3-compatible object storage (``MODEL_REGISTRY_URL=s3://bucket/prefix``), with
the guarantees of the folder registry. Talks S3 through boto3; the endpoint, region and
credentials come from the standard AWS variables (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``...), read by boto3 itself.

Layout under ``<prefix>/``::

    models.json                              {"models": [names]}: the model index
    <name>/state.json                        the model's state object, the single source of truth:
                                             {"versions": {"<v>": {"upload", "objects"}},
                                              "last_version", "revision",
                                              "pinned", "aliases", "traffic", "shadow", "keep_last",
                                              "history"}
    <name>/uploads/<upload>/weights.npz      a version's objects, under the unique name of the
    <name>/uploads/<upload>/<extra files>    publish that wrote them (`publisher_tag`:
    <name>/uploads/<upload>/manifest.json    <uuid>.<pid>.<host>); never written again

Why it is built this way (S3 has no rename and no lock):

* **Visible only when complete.** A publish uploads its files, then the manifest, under its own
  upload name, then *commits*: a compare-and-swap write of ``state.json`` (``If-Match: <etag>``,
  or ``If-None-Match: *`` for a model's first version) that appends version ``last_version + 1``
  with the upload name and the ETag of every object. Readers list versions from ``state.json``
  alone, so an upload that was never committed (a crashed publisher) is invisible; it is removed
  by a later publish once its publisher is dead (same host) or it is ``stale_temp_seconds`` old.
* **No two publishers get one number, no pin or alias update is lost.** Every change to a model,
  publish or state change, is a read-modify-write of that one object, and the conditional write
  makes a concurrent writer fail (412, or 409 while another conditional write is in flight)
  instead of overwriting: it re-reads and retries. Numbers come from ``last_version`` (never
  reused, even after a delete). ``revision`` grows with every write, so a body is never
  rewritten byte for byte: an ETag (the MD5 of the body) can never come back (no ABA).
* **A delete is one commit** (the version leaves ``state.json`` under the same compare-and-swap
  that checks nothing refers to it), then its objects are removed.
* **Verification.** A committed version is checked against its commit: one LIST of its upload
  (every listed file present, with the manifest's size and the committed ETag: an object
  replaced later is caught) and the manifest (parsed like the folder registry's). The result is
  cached for `VERIFY_TTL_SECONDS`. Every byte used is sha256-checked on download: weights and
  report files are fetched into a local cache folder (``REGISTRY_CACHE_DIR``) and only returned
  when their sha256 matches the manifest; a mismatch makes the version broken. The folder is
  pruned to ``REGISTRY_CACHE_MAX_MB``, never a version a process holds (`shared.registry.cache`).
* **Cheap change detection.** ``change_token`` reads the index and each model's state object
  with ``If-None-Match: <etag>``: an idle poll is one 304 per object, no listing. The index is
  written (compare-and-swap) only when a model gets its first publish.
* **Readers never write** to the bucket (inference needs only GetObject and ListBucket). A
  corrupt ``state.json`` is logged and the last good one seen is served; the next write repairs
  it from that copy (keeping the bad bytes as ``state.json.corrupt-<time>``), and refuses when
  this process never saw a good one: the version index must never be lost.
* **Outages.** Every failure to reach the store (connection refused, timeout, 5xx, access
  denied) is a `RegistryUnavailableError` (HTTP 503), so inference keeps serving what it loaded
  and says so; nothing is cached as broken because of an outage.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import logging
import os
import random
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, Field, StrictInt, StringConstraints

from shared.config import MODEL_NAME_PATTERN
from shared.registry.cache import DEFAULT_CACHE_MAX_MB, DownloadCache
from shared.registry.errors import (
    BrokenVersionError,
    FirstTime,
    ModelNotFoundError,
    RegistryError,
    VersionNotFoundError,
)
from shared.registry.files import hash_file, hash_stream, json_bytes, now_iso
from shared.registry.names import (
    MANIFEST_FILE,
    STATE_FILE,
    VERSION_PATTERN,
    WEIGHTS_FILE,
    is_model_name,
)
from shared.registry.publishing import final_manifest, publisher_is_dead, publisher_tag
from shared.registry.state import (
    MAX_STATE_BYTES,
    Change,
    StateFile,
    apply_change,
    delete_version_change,
    parse_state,
)
from shared.registry.storage import RegistryUnavailableError, Storage
from shared.registry.verification import (
    MAX_MANIFEST_BYTES,
    ManifestProblem,
    broken,
    check_manifest,
)

logger = logging.getLogger("shared.registry")

INDEX_FILE = "models.json"
UPLOADS = "uploads"
#: A verified version is re-checked (one LIST) when its result is older than this.
VERIFY_TTL_SECONDS = 60.0
#: Compare-and-swap attempts before a write gives up (each loser re-reads; backoff ≤ 1 s).
MAX_CAS_ATTEMPTS = 200
#: Seconds to connect / to wait for an answer; 3 attempts (botocore "standard" retries).
CONNECT_TIMEOUT = 3.0
READ_TIMEOUT = 15.0
_UPLOAD_PATTERN = r"^[0-9a-f]{32}\.[0-9]{1,10}\.[A-Za-z0-9_-]{1,64}$"


class _Missing(Exception):
    """The object does not exist (404)."""


class _NotModified(Exception):
    """A conditional GET's 304."""


class _Conflict(Exception):
    """A conditional write lost: the object changed (412) or another write is in flight (409)."""


def parse_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` → ("bucket", "some/prefix/"); no prefix → ""."""
    if not url.startswith("s3://"):
        raise ValueError(f"{url!r} is not an s3:// URL")
    bucket, _, prefix = url[len("s3://") :].partition("/")
    if not bucket:
        raise ValueError(f"{url!r} names no bucket")
    prefix = prefix.strip("/")
    return bucket, (prefix + "/" if prefix else "")


class _Index(BaseModel):
    """models.json: the names of the models ever published."""

    models: list[Annotated[str, StringConstraints(pattern=MODEL_NAME_PATTERN)]]


class _Commit(BaseModel):
    """A committed version in the state object: its upload and the ETag of every object."""

    upload: Annotated[str, StringConstraints(pattern=_UPLOAD_PATTERN)]
    objects: dict[str, str]
    at: Any = None


class _Doc(StateFile):
    """A model's state object: the shared state fields plus the version index."""

    versions: dict[Annotated[str, StringConstraints(pattern=f"^{VERSION_PATTERN}$")], _Commit] = {}
    last_version: Annotated[StrictInt, Field(ge=0)] = 0
    revision: Annotated[StrictInt, Field(ge=0)] = 0


def _new_doc() -> dict[str, Any]:
    return _Doc().model_dump()


def _state_of(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: doc[k] for k in StateFile.model_fields}


def _etag(value: str) -> str:
    return value.strip('"')


class S3Storage(Storage):
    """A registry in an S3 bucket (see the module docstring). Thread-safe; its boto3 client is
    made per process (a client must not cross a fork)."""

    def __init__(
        self,
        url: str,
        *,
        cache_dir: str | os.PathLike[str] | None = None,
        cache_max_mb: int = DEFAULT_CACHE_MAX_MB,
    ) -> None:
        self.bucket, self.prefix = parse_url(url)
        self.location = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        default_cache = Path(tempfile.gettempdir()) / f"digitflow-registry-cache-{os.getuid()}"
        cache_root = Path(cache_dir) if cache_dir is not None else default_cache
        self.cache = DownloadCache(cache_root / self.bucket / self.prefix, cache_max_mb << 20)
        self._lock = threading.Lock()
        self._client: Any = None
        self._client_pid = -1
        #: name → (etag, doc) of the last state object read or written (doc: last good parse)
        self._docs: dict[str, tuple[str, dict[str, Any]]] = {}
        self._last_good: dict[str, dict[str, Any]] = {}
        self._corrupt: dict[str, str] = {}  # name → etag of a corrupt body seen
        self._first = FirstTime()
        self._index: tuple[str, list[str]] | None = None
        #: (name, version, upload) → (checked at, manifest | None, reason | None)
        self._verified: dict[tuple[str, int, str], tuple[float, dict | None, str | None]] = {}

    def __repr__(self) -> str:
        return f"S3Storage({self.location!r})"

    # ---- S3 calls: every failure to reach the store becomes RegistryUnavailableError ---------

    def _s3(self) -> Any:
        # boto3: an optional dependency, only for an S3 registry
        import boto3
        from botocore.config import Config

        with self._lock:
            if self._client is None or self._client_pid != os.getpid():
                config = Config(
                    connect_timeout=CONNECT_TIMEOUT,
                    read_timeout=READ_TIMEOUT,
                    retries={"mode": "standard", "max_attempts": 3},
                )
                self._client = boto3.session.Session().client("s3", config=config)
                self._client_pid = os.getpid()
            return self._client

    def _call(self, op: str, **kwargs: Any) -> Any:
        # boto3: an optional dependency, only for an S3 registry
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self._s3(), op)(Bucket=self.bucket, **kwargs)
        except ClientError as exc:
            err = exc.response.get("Error", {})
            code = str(err.get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in ("NoSuchKey", "404", "NotFound"):
                raise _Missing() from None
            if status in (409, 412) or code in ("PreconditionFailed", "ConditionalRequestConflict"):
                raise _Conflict() from None
            if code == "304" or status == 304:
                raise _NotModified() from None
            raise RegistryUnavailableError(
                f"object store {self.location}: {op} failed: {code or status} "
                f"{err.get('Message', '')}".rstrip()
            ) from None
        except BotoCoreError as exc:  # connection refused, timeouts, no credentials ...
            raise RegistryUnavailableError(
                f"object store {self.location} unreachable: {exc}"
            ) from None

    def _get(self, key: str, limit: int, etag: str | None = None) -> tuple[str, bytes] | None:
        """(etag, body) of `key`; None when `etag` still matches (304). _Missing if absent."""
        kwargs: dict[str, Any] = {"Key": key}
        if etag is not None:
            kwargs["IfNoneMatch"] = f'"{etag}"'
        try:
            resp = self._call("get_object", **kwargs)
        except _NotModified:
            return None
        with contextlib.closing(resp["Body"]) as body:
            if int(resp.get("ContentLength") or 0) > limit:
                raise RegistryError(f"{self.location}/{key} is larger than {limit} bytes")
            data = body.read(limit + 1)
        return _etag(resp["ETag"]), data

    def _put(self, key: str, data: bytes, *, if_match: str | None = None, create=False) -> str:
        """Write `key`; with `if_match` / `create` only if it is still that object / absent
        (_Conflict otherwise). Returns the new ETag."""
        kwargs: dict[str, Any] = {"Key": key, "Body": data}
        if if_match is not None:
            kwargs["IfMatch"] = f'"{if_match}"'
        elif create:
            kwargs["IfNoneMatch"] = "*"
        try:
            return _etag(self._call("put_object", **kwargs)["ETag"])
        except _Missing:  # If-Match on an object deleted meanwhile
            raise _Conflict() from None

    def _list(self, prefix: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"Prefix": prefix}
        while True:
            resp = self._call("list_objects_v2", **kwargs)
            out.extend(resp.get("Contents", []))
            if not resp.get("IsTruncated"):
                return out
            kwargs["ContinuationToken"] = resp["NextContinuationToken"]

    def _delete(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):
            batch = [{"Key": k} for k in keys[start : start + 1000]]
            self._call("delete_objects", Delete={"Objects": batch, "Quiet": True})

    def _key(self, *parts: str) -> str:
        return self.prefix + "/".join(parts)

    def _upload_prefix(self, name: str, upload: str) -> str:
        return self._key(name, UPLOADS, upload) + "/"

    # ---- the index of model names ------------------------------------------------------------

    def _index_names(self) -> list[str]:
        """The model names of models.json (conditional GET); the last good list, or a listing
        of the prefix, when it is corrupt."""
        cached = self._index
        try:
            got = self._get(self._key(INDEX_FILE), MAX_STATE_BYTES, cached and cached[0])
        except _Missing:
            self._index = None
            return []
        if got is None:
            assert cached is not None
            return cached[1]
        etag, raw = got
        try:
            names = _Index.model_validate_json(raw).models
        except ValueError as exc:
            if self._first(("index", etag)):
                logger.error(
                    "registry: %s/%s is corrupt (%s); using a listing of the prefix until a "
                    "publish rewrites it", self.location, INDEX_FILE, exc
                )  # fmt: skip
            names = self._listed_names()
        names = sorted(set(names))
        self._index = (etag, names)
        return names

    def _listed_names(self) -> list[str]:
        resp = self._call("list_objects_v2", Prefix=self.prefix, Delimiter="/")
        found = [
            p["Prefix"][len(self.prefix) :].rstrip("/") for p in resp.get("CommonPrefixes", [])
        ]
        return [n for n in found if is_model_name(n)]

    def _register(self, name: str) -> None:
        """Make sure models.json lists `name` (compare-and-swap; done before a model's first
        upload, so a listed model may have no version yet: `model_names` skips those)."""
        for attempt in range(MAX_CAS_ATTEMPTS):
            names = self._index_names()
            if name in names and self._index is not None:
                return
            cached = self._index
            body = json_bytes({"models": sorted({*names, name})})
            try:
                etag = self._put(
                    self._key(INDEX_FILE), body, if_match=cached and cached[0], create=not cached
                )
            except _Conflict:
                _backoff(attempt)
                continue
            self._index = (etag, sorted({*names, name}))
            return
        raise RegistryError(f"{self.location}: could not register model {name!r} (contention)")

    # ---- the state object --------------------------------------------------------------------

    def _doc(self, name: str) -> tuple[str, dict[str, Any]]:
        """(etag, doc) of the model's state object, read conditionally; ModelNotFoundError.
        A corrupt body is logged once and the last good doc seen is returned (empty if none)."""
        key = self._key(name, STATE_FILE)
        with self._lock:
            cached = self._docs.get(name)
            bad_etag = self._corrupt.get(name)
        try:
            got = self._get(key, MAX_STATE_BYTES, cached[0] if cached else bad_etag)
        except _Missing:
            with self._lock:
                self._docs.pop(name, None)
                self._corrupt.pop(name, None)
            raise ModelNotFoundError(f"model {name!r} not found in the registry") from None
        if got is None:  # 304
            if cached is not None:
                return cached
            return bad_etag or "", self._fallback(name)
        etag, raw = got
        try:
            doc = parse_state(raw, _Doc)
        except ValueError as exc:
            fallback = self._fallback(name)
            if self._first(("corrupt", name, etag)):
                logger.error(
                    "registry: %s is corrupt (%s); using the last good state seen (pinned=%s, "
                    "%d aliases, %d versions) until the next state change rewrites it",
                    f"{self.location}/{name}/{STATE_FILE}", exc, fallback["pinned"],
                    len(fallback["aliases"]), len(fallback["versions"]),
                )  # fmt: skip
            with self._lock:
                self._docs.pop(name, None)
                self._corrupt[name] = etag
            return etag, fallback
        doc["last_version"] = max([doc["last_version"], *(int(k) for k in doc["versions"])])
        with self._lock:
            self._docs[name] = (etag, doc)
            self._last_good[name] = doc
            self._corrupt.pop(name, None)
        return etag, doc

    def _fallback(self, name: str) -> dict[str, Any]:
        with self._lock:
            good = self._last_good.get(name)
        return copy.deepcopy(good) if good is not None else _new_doc()

    def _commit(self, name: str, edit: Callable[[dict[str, Any]], Any], *, create: bool) -> Any:
        """Read-modify-write the state object by compare-and-swap until it sticks; `edit`
        changes the doc in place and returns (changed, result). `create`: the object may not
        exist yet (a model's first publish)."""
        key = self._key(name, STATE_FILE)
        for attempt in range(MAX_CAS_ATTEMPTS):
            try:  # a conditional read: a 304 means the cached copy is current
                etag, doc = self._doc(name)
                exists = True
            except ModelNotFoundError:
                if not create:
                    raise
                etag, doc, exists = "", _new_doc(), False
            with self._lock:
                corrupt = self._corrupt.get(name) == etag and exists
                known_good = name in self._last_good
            if corrupt and not known_good:
                raise RegistryError(
                    f"{self.location}/{name}/{STATE_FILE} is corrupt and this process never saw "
                    "a good copy; restore it (its version index must not be lost)"
                )
            new = copy.deepcopy(doc)
            changed, result = edit(new)
            if not changed and not corrupt:
                return result
            new["revision"] = doc["revision"] + 1
            if corrupt:
                self._keep_corrupt_copy(name, key)
            try:
                new_etag = self._put(
                    key, json_bytes(new), if_match=etag if exists else None, create=not exists
                )
            except _Conflict:
                _backoff(attempt)
                continue
            with self._lock:
                self._docs[name] = (new_etag, new)
                self._last_good[name] = new
                self._corrupt.pop(name, None)
            return result
        raise RegistryError(f"{self.location}: could not commit to model {name!r} (contention)")

    def _keep_corrupt_copy(self, name: str, key: str) -> None:
        copy_key = self._key(name, f"{STATE_FILE}.corrupt-{int(time.time())}")
        try:
            self._call("copy_object", Key=copy_key, CopySource={"Bucket": self.bucket, "Key": key})
            logger.error("registry: repairing %s; the corrupt copy is kept at %s", key, copy_key)
        except (RegistryError, _Missing) as exc:
            logger.error("registry: repairing %s (could not keep a copy: %s)", key, exc)

    # ---- listing -----------------------------------------------------------------------------

    def model_names(self) -> list[str]:
        names = []
        for name in self._index_names():
            try:
                if self._doc(name)[1]["versions"]:
                    names.append(name)
            except ModelNotFoundError:
                continue  # registered, first publish not committed (yet)
        return names

    def require_model(self, name: str) -> None:
        self._doc(name)

    def versions(self, name: str) -> list[int]:
        records = self._doc(name)[1]["versions"]
        with self._lock:  # forget deleted versions: a long-running reader must not keep them all
            for key in [k for k in self._verified if k[0] == name and str(k[1]) not in records]:
                del self._verified[key]
        return sorted(int(v) for v in records)

    def _cached_record(self, name: str, version: int) -> dict[str, Any] | None:
        """The version's commit in the state object as last read (no request), or None."""
        with self._lock:
            cached = self._docs.get(name)
        return None if cached is None else cached[1]["versions"].get(str(version))

    def _record(self, name: str, version: int) -> dict[str, Any]:
        rec = self._cached_record(name, version)
        if rec is None:  # never read, or published since we last looked?
            rec = self._doc(name)[1]["versions"].get(str(version))
        if rec is None:
            raise VersionNotFoundError(f"model {name!r} has no version {version}")
        return rec

    # ---- verification ------------------------------------------------------------------------

    def manifest(self, name: str, version: int) -> dict[str, Any]:
        rec = self._record(name, version)
        key = (name, version, rec["upload"])
        with self._lock:
            cached = self._verified.get(key)
        if cached is None or time.monotonic() - cached[0] > VERIFY_TTL_SECONDS:
            manifest, reason = self._verify(name, rec)
            cached = (time.monotonic(), manifest, reason)
            with self._lock:
                self._verified[key] = cached
        _, manifest, reason = cached
        if reason is not None:
            raise self._broken(name, version, reason)
        assert manifest is not None
        return manifest

    def _broken(self, name: str, version: int, reason: str) -> BrokenVersionError:
        return broken(name, version, reason, log=self._first(("broken", name, version, reason)))

    def _verify(self, name: str, rec: dict[str, Any]) -> tuple[dict | None, str | None]:
        """Check a committed version against its commit: (manifest, None) or (None, reason)."""
        upload_prefix = self._upload_prefix(name, rec["upload"])
        listed = {
            obj["Key"][len(upload_prefix) :]: (int(obj["Size"]), _etag(obj["ETag"]))
            for obj in self._list(upload_prefix)
        }
        committed = rec["objects"]
        try:
            got = self._get(upload_prefix + MANIFEST_FILE, MAX_MANIFEST_BYTES)
        except _Missing:
            return None, f"{MANIFEST_FILE} is missing"
        except RegistryError as exc:
            if isinstance(exc, RegistryUnavailableError):
                raise
            return None, f"{MANIFEST_FILE} unreadable: {exc}"
        assert got is not None
        etag, raw = got
        if etag != committed.get(MANIFEST_FILE):
            return None, f"{MANIFEST_FILE} was replaced after the version was published"
        try:
            manifest, checks = check_manifest(raw)
        except ManifestProblem as exc:
            return None, str(exc)
        for fname, _sha, size in checks:
            if fname not in listed:
                return None, f"{fname} is missing"
            got_size, got_etag = listed[fname]
            if got_size != size:
                return None, f"{fname} has {got_size} bytes, manifest says {size}"
            if got_etag != committed.get(fname):
                return None, f"{fname} was replaced after the version was published"
        return manifest, None

    def weights_path(self, name: str, version: int) -> Path:
        """A verified download, held until `release`."""
        manifest = self.manifest(name, version)
        return self._fetch(name, version, WEIGHTS_FILE, manifest["sha256"], manifest["size_bytes"])

    def read_file(self, name: str, version: int, file_name: str, entry: dict[str, Any]) -> bytes:
        path = self._fetch(name, version, file_name, entry["sha256"], entry["size_bytes"])
        try:
            return path.read_bytes()
        finally:
            self.release(name, version)

    def release(self, name: str, version: int) -> None:
        self.cache.release((name, version))

    def _fetch(self, name: str, version: int, fname: str, sha: str, size: int) -> Path:
        """A local copy of one object of a version, sha256-checked every time it is handed out
        (a cached copy that no longer matches is fetched again), its folder held (once more)
        and marked used; BrokenVersionError when the object itself does not match the
        manifest."""
        folder = self.cache.root / name / self._record(name, version)["upload"]
        self.cache.hold((name, version), folder)
        try:
            dest = folder / fname
            if not (dest.is_file() and hash_file(dest) == (sha, size)):
                self._download(name, version, dest, sha, size)
                self.cache.prune()
            now = time.time_ns()  # not the kernel's coarse clock: two uses in a row are ordered
            os.utime(folder, ns=(now, now))
        except BaseException:
            self.release(name, version)
            raise
        return dest

    def _download(self, name: str, version: int, dest: Path, sha: str, size: int) -> None:
        rec = self._record(name, version)
        fname = dest.name
        tmp = dest.with_name(f".part-{uuid.uuid4().hex}")
        try:
            try:
                resp = self._call(
                    "get_object", Key=self._upload_prefix(name, rec["upload"]) + fname
                )
            except _Missing:
                raise self._mark_broken(name, version, rec, f"{fname} is missing") from None
            with contextlib.closing(resp["Body"]) as body, open(tmp, "xb") as out:
                try:
                    got_sha, got = hash_stream(body, out)
                except Exception as exc:  # the connection broke mid-download
                    raise RegistryUnavailableError(
                        f"object store {self.location}: download of {fname} failed: {exc}"
                    ) from None
            if (got_sha, got) != (sha, size):
                reason = f"{fname} sha256 mismatch (expected {sha[:12]}…, got {got_sha[:12]}…)"
                raise self._mark_broken(name, version, rec, reason)
            os.replace(tmp, dest)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def _mark_broken(
        self, name: str, version: int, rec: dict[str, Any], reason: str
    ) -> BrokenVersionError:
        with self._lock:
            self._verified[(name, version, rec["upload"])] = (time.monotonic(), None, reason)
        return self._broken(name, version, reason)

    def version_identity(self, name: str, version: int) -> Hashable:
        """The committed upload and ETags (from the cached state object: no request)."""
        rec = self._cached_record(name, version)
        if rec is None:
            return None
        return (rec["upload"], tuple(sorted(rec["objects"].items())))

    # ---- state -------------------------------------------------------------------------------

    def state(self, name: str) -> dict[str, Any]:
        return _state_of(self._doc(name)[1])

    def change_state(self, name: str, change: Change) -> dict[str, Any]:
        return self._commit(
            name, lambda doc: (apply_change(doc, change), _state_of(doc)), create=False
        )

    # ---- writing -----------------------------------------------------------------------------

    def publish(
        self, name: str, weights: Path, extras: dict[str, Path], manifest: dict[str, Any]
    ) -> int:
        """Upload the objects under a new upload name (weights, extras, the manifest last), then
        commit version last_version + 1 by compare-and-swap of the state object."""
        self._register(name)
        upload = publisher_tag()
        base = self._upload_prefix(name, upload)
        objects: dict[str, str] = {}
        hashes: dict[str, tuple[str, int]] = {}
        for fname, src in [(WEIGHTS_FILE, weights), *sorted(extras.items())]:
            data = src.read_bytes()  # what is hashed is exactly what is uploaded
            hashes[fname] = (hashlib.sha256(data).hexdigest(), len(data))
            objects[fname] = self._put(base + fname, data)
        body = json_bytes(final_manifest(manifest, hashes))
        objects[MANIFEST_FILE] = self._put(base + MANIFEST_FILE, body)

        def edit(doc: dict[str, Any]) -> tuple[bool, int]:
            for v, rec in doc["versions"].items():  # our commit landed but its answer was lost
                if rec["upload"] == upload:
                    return False, int(v)
            v = doc["last_version"] + 1
            doc["versions"][str(v)] = {"upload": upload, "objects": objects, "at": now_iso()}
            doc["last_version"] = v
            return True, v

        return self._commit(name, edit, create=True)

    def delete_version(self, name: str, version: int, actor: str | None) -> None:
        removed: list[dict[str, Any]] = []

        def edit(doc: dict[str, Any]) -> tuple[bool, None]:
            if str(version) not in doc["versions"]:
                raise VersionNotFoundError(f"model {name!r} has no version {version}")
            apply_change(doc, delete_version_change(name, version, lambda: None, actor))
            removed[:] = [doc["versions"].pop(str(version))]
            return True, None

        self._commit(name, edit, create=False)
        for rec in removed:  # no longer referenced: a failure here leaves them to cleanup()
            try:
                prefix = self._upload_prefix(name, rec["upload"])
                self._delete([obj["Key"] for obj in self._list(prefix)])
            except RegistryError as exc:
                logger.warning("registry: objects of %s v%d not removed: %s", name, version, exc)

    def cleanup(self, max_age_seconds: float, name: str | None) -> int:
        """Uploads no commit refers to, older than max_age or left by a dead publisher on this
        host. The state object is read *before* the listing, so an upload committed meanwhile
        is young (or its publisher alive) and kept."""
        cutoff = time.time() - max_age_seconds
        removed = 0
        for model in [name] if name is not None else self._index_names():
            try:
                referenced = {r["upload"] for r in self._doc(model)[1]["versions"].values()}
            except ModelNotFoundError:
                referenced = set()
            uploads: dict[str, list[dict[str, Any]]] = {}
            root = self._key(model, UPLOADS) + "/"
            for obj in self._list(root):
                upload = obj["Key"][len(root) :].split("/", 1)[0]
                uploads.setdefault(upload, []).append(obj)
            for upload, objs in uploads.items():
                if upload in referenced:
                    continue
                newest = max(o["LastModified"].timestamp() for o in objs)
                if newest > cutoff and not publisher_is_dead(upload):
                    continue
                self._delete([o["Key"] for o in objs])
                removed += 1
                logger.info("registry: removed uncommitted upload %s%s", root, upload)
        return removed

    # ---- change detection --------------------------------------------------------------------

    def change_token(self, name: str | None) -> Hashable:
        """One conditional GET per state object (and of the index without a name)."""
        if name is not None:
            return (name, self._doc_etag(name))
        names = self._index_names()
        index_etag = self._index[0] if self._index is not None else None
        return (index_etag, tuple((n, self._doc_etag(n)) for n in names))

    def _doc_etag(self, name: str) -> str | None:
        try:
            return self._doc(name)[0]
        except ModelNotFoundError:
            return None


def _backoff(attempt: int) -> None:
    """Jittered exponential backoff for a lost compare-and-swap (≤ 1 s)."""
    time.sleep(random.uniform(0, min(1.0, 0.01 * 2 ** min(attempt, 7))))
