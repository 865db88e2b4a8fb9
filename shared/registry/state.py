"""A model's state: the pin, the aliases, the traffic split, the shadow, the retention rule and
their history; the changes every storage applies, and state.json on a folder (read-modify-write
under an exclusive `flock` on `.state.lock`; why: the package docstring)."""

from __future__ import annotations

import copy
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    ValidationError,
    WithJsonSchema,
    field_validator,
)

from shared.config import MODEL_NAME_PATTERN
from shared.fieldpath import field_path
from shared.fsutil import write_atomic
from shared.registry.errors import (
    AliasNotFoundError,
    InvalidNameError,
    VersionInUseError,
    VersionNotFoundError,
)
from shared.registry.files import file_stamp, flocked, json_bytes, now_iso, read_nofollow
from shared.registry.names import (
    LOCK_FILE,
    MAX_VERSION,
    RESERVED_REFS,
    STATE_FILE,
    STATE_TMP_PREFIX,
    validate_alias,
    validate_version,
)

logger = logging.getLogger("shared.registry")

MAX_STATE_BYTES = 16 * 1024 * 1024
#: History entries kept per model (the oldest are dropped).
MAX_HISTORY = 1000
_MAX_ACTOR_LEN = 200
#: Most routes in a traffic split.
MAX_ROUTES = 10

#: Edits a state in place; returns the history entry to append, or None when nothing changed.
Change = Callable[[dict[str, Any]], dict[str, Any] | None]


def validate_ref(ref: Any) -> int | str:
    """A version a traffic route or the shadow names: a version number (int or canonical digit
    string → int) or an alias (followed as it moves). "latest"/"default" are not accepted: the
    split *is* what the default route serves."""
    if isinstance(ref, str) and not (ref.isascii() and ref.isdigit()):
        return validate_alias(ref)
    return validate_version(ref)


#: A version a traffic route or the shadow names: a number, or an alias (followed as it moves),
#: checked by `validate_ref` so an error names the field itself.
VersionRef = Annotated[
    int | str,
    BeforeValidator(validate_ref),
    WithJsonSchema(
        {
            "oneOf": [
                {"type": "integer", "minimum": 1, "maximum": MAX_VERSION},
                {"type": "string", "pattern": MODEL_NAME_PATTERN},
            ],
            "examples": [1, "champion"],
        }
    ),
]


class TrafficRoute(BaseModel):
    """One side of a split: a version (number or alias) and its share of the default route."""

    model_config = ConfigDict(extra="forbid")
    version: VersionRef
    weight: StrictInt = Field(ge=0, le=100, description="Percent of the default route's requests.")


class TrafficSplit(BaseModel):
    """The split of the default predict routes: weights sum to 100, each version named once.
    The one statement of these rules: the trainer's ``PUT /v1/models/<name>/traffic`` body, and
    what `validate_routes` checks in `Registry.set_traffic` and in every state.json read."""

    model_config = ConfigDict(extra="forbid")
    routes: list[TrafficRoute] = Field(min_length=1, max_length=MAX_ROUTES)

    @field_validator("routes")
    @classmethod
    def _a_split(cls, routes: list[TrafficRoute]) -> list[TrafficRoute]:
        total = sum(r.weight for r in routes)
        if total != 100:
            raise ValueError(f"weights must sum to 100, not {total}")
        refs = [r.version for r in routes]
        if len(set(refs)) != len(refs):
            raise ValueError("each version may be named once")
        return routes

    def as_state(self) -> list[dict[str, Any]]:
        """The routes as state.json keeps them."""
        return [r.model_dump() for r in self.routes]


def validate_routes(routes: Any) -> list[dict[str, Any]]:
    """A traffic split by `TrafficSplit`'s rules, as state.json keeps it. Raises InvalidNameError
    (a ValueError) naming the field of the first problem (``routes[0].weight``)."""
    try:
        return TrafficSplit.model_validate({"routes": routes}).as_state()
    except ValidationError as exc:
        first = exc.errors()[0]
        field = field_path(first["loc"])
        raise InvalidNameError(f"traffic: {field}: {first['msg']}", field=field) from None


def resolve_ref(
    name: str, ref: int | str, aliases: Mapping[str, int], usable: Callable[[str], int | None]
) -> int:
    """The version number `ref` names in a snapshot of model `name`: an int / digit string, an
    alias of `aliases`, or "latest" / "default" (whatever `usable` says they are now). The one
    statement of how a reference resolves: `Registry.resolve` applies it to the store (and then
    verifies the version), inference's model cache to its last scan. Raises InvalidNameError
    for a malformed ref, VersionNotFoundError (AliasNotFoundError for an alias not set)."""
    if isinstance(ref, str) and ref in RESERVED_REFS:
        v = usable(ref)
        if v is None:
            raise VersionNotFoundError(f"model {name!r} has no usable version")
        return v
    if isinstance(ref, int) or (isinstance(ref, str) and ref.isascii() and ref.isdigit()):
        return validate_version(ref)
    alias = validate_alias(ref)
    if alias not in aliases:
        raise AliasNotFoundError(f"model {name!r} has no alias {alias!r}")
    return aliases[alias]


#: The retention rule, "keep the last N versions" (`Registry.set_retention`): at least one.
KeepLast = Annotated[StrictInt, Field(ge=1, le=MAX_VERSION)]


class StateFile(BaseModel):
    """state.json as read: a malformed field raises (a ValueError); any other key (the S3 state
    object's version index) is left to a subclass."""

    pinned: Annotated[int, BeforeValidator(validate_version)] | None = None
    aliases: dict[
        Annotated[str, BeforeValidator(validate_alias)],
        Annotated[int, BeforeValidator(validate_version)],
    ] = {}
    traffic: Annotated[list[dict[str, Any]], BeforeValidator(validate_routes)] | None = None
    shadow: VersionRef | None = None
    keep_last: KeepLast | None = None
    history: list[dict[str, Any]] = []


def empty_state() -> dict[str, Any]:
    """The state of a model nobody pinned, aliased, split or shadowed yet."""
    return StateFile().model_dump()


def parse_state(data: bytes, model: type[StateFile] = StateFile) -> dict[str, Any]:
    """Parse and validate state.json (or a `model` extending it); raise ValueError describing
    the first problem."""
    try:
        return model.model_validate_json(data).model_dump()
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ValueError(f"{field_path(first['loc']) or 'state'}: {first['msg']}") from None


# ---- the changes ---------------------------------------------------------------------------


def _entry(action: str, alias: str | None, old: Any, new: Any, actor: Any, **extra: Any):
    if actor is not None:
        actor = str(actor)[:_MAX_ACTOR_LEN]
    return {
        "action": action,
        "alias": alias,
        "from": old,
        "to": new,
        "at": now_iso(),
        "actor": actor,
        **extra,
    }


def field_change(field: str, value: Any, action: str, actor: str | None) -> Change:
    """Set the state's `field` (``pinned``, ``traffic``, ``shadow``) to `value` — None clears it
    — recorded in the history as `action`; setting what is already there changes nothing."""

    def change(state: dict[str, Any]) -> dict[str, Any] | None:
        old = state[field]
        if old == value:
            return None
        state[field] = copy.deepcopy(value)
        return _entry(action, None, old, copy.deepcopy(value), actor)

    return change


def set_alias_change(alias: str, version: int, actor: str | None) -> Change:
    """Point `alias` at `version`, creating or moving it."""

    def change(state: dict[str, Any]) -> dict[str, Any] | None:
        old = state["aliases"].get(alias)
        if old == version:
            return None
        state["aliases"][alias] = version
        return _entry("alias_set", alias, old, version, actor)

    return change


def promotion_change(
    target: str, version: int | None, reason: str, sweep: str, actor: str | None
) -> Change:
    """A sweep's decision about `target` — an alias, or ``"default"`` for the pin: move it to
    `version`, or (None) leave it where it is. Either way the history records the sweep and the
    reason (``alias_set`` / ``alias_kept``, or ``pin`` / ``pin_kept``)."""

    def change(state: dict[str, Any]) -> dict[str, Any] | None:
        if target == "default":
            old = state["pinned"]
            if version is not None:
                state["pinned"] = version
            action = "pin" if version is not None else "pin_kept"
            new = old if version is None else version
            return _entry(action, None, old, new, actor, sweep=sweep, reason=reason)
        old = state["aliases"].get(target)
        if version is None:
            return _entry("alias_kept", target, old, old, actor, sweep=sweep, reason=reason)
        state["aliases"][target] = version
        return _entry("alias_set", target, old, version, actor, sweep=sweep, reason=reason)

    return change


def protected_versions(state: dict[str, Any]) -> set[int]:
    """Versions the state refers to (pinned, aliased, in the traffic split, shadowed by number):
    never removed."""
    named = [state["pinned"], state["shadow"], *(r["version"] for r in state["traffic"] or [])]
    return set(state["aliases"].values()) | {v for v in named if isinstance(v, int)}


def delete_version_change(
    name: str, version: int, remove: Callable[[], None], actor: str | None
) -> Change:
    """Remove `version` (`remove` does the filesystem part) unless the state refers to it: done
    under the state lock, so no pin or alias can point at it in between."""

    def change(state: dict[str, Any]) -> dict[str, Any] | None:
        if version in protected_versions(state):
            raise VersionInUseError(
                f"model {name!r} version {version} is pinned, aliased, shadowed or in the "
                "traffic split; it cannot be removed"
            )
        remove()
        return _entry("version_delete", None, version, None, actor)

    return change


def delete_alias_change(name: str, alias: str, actor: str | None) -> Change:
    """Remove `alias`; AliasNotFoundError if model `name` has no such alias."""

    def change(state: dict[str, Any]) -> dict[str, Any] | None:
        if alias not in state["aliases"]:
            raise AliasNotFoundError(f"model {name!r} has no alias {alias!r}")
        old = state["aliases"].pop(alias)
        return _entry("alias_delete", alias, old, None, actor)

    return change


def apply_change(state: dict[str, Any], change: Change) -> bool:
    """Run `change` on `state` in place and record its history entry (the newest MAX_HISTORY
    kept); False when it changed nothing. Every storage applies changes through this."""
    entry = change(state)
    if entry is None:
        return False
    state["history"].append(entry)
    del state["history"][:-MAX_HISTORY]
    return True


# ---- reading and writing -------------------------------------------------------------------


class StateFiles:
    """The state.json of every model of one registry: cached reads, locked changes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # name -> (stamp, state) of the last read; name -> last good state
        self._cache: dict[str, tuple[tuple | None, dict[str, Any]]] = {}
        self._last_good: dict[str, dict[str, Any]] = {}
        self._logged_corrupt: set[tuple[str, tuple | None]] = set()

    def view(self, name: str, model_dir: str) -> dict[str, Any]:
        """The state of model `name` (shared: callers must not mutate it). Cached by the
        file's identity, so a poll costs one lstat."""
        path = model_dir + os.sep + STATE_FILE
        stamp = file_stamp(path)
        with self._lock:
            cached = self._cache.get(name)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        state = self._read(name, path, stamp)
        with self._lock:
            self._cache[name] = (stamp, state)
        return state

    def _read(self, name: str, path: str | os.PathLike[str], stamp: tuple | None) -> dict[str, Any]:
        try:
            raw = None if stamp is None else read_nofollow(path, MAX_STATE_BYTES)
            state = empty_state() if raw is None else parse_state(raw)
        except FileNotFoundError:  # removed since the stamp was taken
            state = empty_state()
        except (OSError, ValueError) as exc:
            with self._lock:
                fallback = copy.deepcopy(self._last_good.get(name) or empty_state())
                first = (name, stamp) not in self._logged_corrupt
                self._logged_corrupt.add((name, stamp))
            if first:
                logger.error(
                    "registry: %s is corrupt (%s); using the last good state seen "
                    "(pinned=%s, %d aliases) until the next state change rewrites it",
                    path,
                    exc,
                    fallback["pinned"],
                    len(fallback["aliases"]),
                )
            return fallback
        with self._lock:
            self._last_good[name] = copy.deepcopy(state)
        return state

    def change(self, name: str, model_dir: Path, change: Change) -> dict[str, Any]:
        """Apply `change` to the state of model `name` under the lock; return the new state.

        A no-op change writes nothing, unless the file on disk is corrupt: then it is repaired.
        """
        path = model_dir / STATE_FILE
        with flocked(model_dir / LOCK_FILE, 0o666):
            stamp = file_stamp(path)
            state = copy.deepcopy(self._read(name, path, stamp))
            corrupt = stamp is not None and (name, stamp) in self._logged_corrupt
            if not apply_change(state, change) and not corrupt:
                return copy.deepcopy(state)
            if corrupt:
                _keep_corrupt_copy(path)
            write_atomic(path, json_bytes(state), tmp_prefix=STATE_TMP_PREFIX)
            new_stamp = file_stamp(path)
        with self._lock:
            self._cache[name] = (new_stamp, copy.deepcopy(state))
            self._last_good[name] = copy.deepcopy(state)
        return copy.deepcopy(state)


def _keep_corrupt_copy(path: Path) -> None:
    """Keep the bad bytes for a post-mortem before the repair overwrites them."""
    backup = path.with_name(f".state.json.corrupt-{int(time.time())}")
    try:
        shutil.copyfile(path, backup)
        logger.error("registry: repairing %s; the corrupt copy is kept at %s", path, backup)
    except OSError as exc:
        logger.error("registry: repairing %s (could not keep a copy: %s)", path, exc)
