"""The default route's traffic split and shadow version, as one worker serves them.

A split's versions (aliases followed as they move) are loaded before it is swapped in; a route
whose version is broken or will not load gets no traffic (its weight is shared by the others) and
says why. The shadow version is kept loaded, for `inference_service.shadow` to run after the
answer is sent. `ModelCache` runs `Rollout.update_split` and `Rollout.update_shadow` on each
registry scan of a model, with its own loader, and answers the default route from
``Rollout.splits`` (`Split.pick`).
"""

from __future__ import annotations

import bisect
import hashlib
import logging
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from inference_service.loading import Key, Served
from shared.registry import BrokenVersionError, VersionNotFoundError, resolve_ref

logger = logging.getLogger(__name__)

#: The request header that pins a caller to one side of a traffic split (WSGI environ key): the
#: `routing_key` of `ModelCache.get`.
ROUTING_KEY = "HTTP_X_ROUTING_KEY"

#: Loads (or fetches) a version of a model: `VersionCache.load_current`.
Load = Callable[[str, int], Served]


@dataclass(frozen=True)
class Split:
    """The default route's traffic split as one worker serves it: the versions that can serve
    (weight > 0) and their cumulative weights."""

    served: tuple[Served, ...]
    bounds: tuple[int, ...]

    def pick(self, key: str | None) -> Served:
        """The version for one request. With a routing key: the first 8 bytes of sha256(key) as
        an integer, modulo the total weight, against the cumulative weights — the same key lands
        on the same version in every worker while the split (and which versions can serve) is
        unchanged. Without: a uniform random draw (``random.random``, no hashing)."""
        total = self.bounds[-1]
        if key is None:
            point = int(random.random() * total)
        else:
            digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()
            point = int.from_bytes(digest[:8], "big") % total
        return self.served[bisect.bisect_right(self.bounds, point)]


def ref_version(name: str, aliases: dict[str, int], ref: int | str) -> int:
    """A route's or the shadow's version number, its alias followed as of this scan (the
    registry's one `resolve_ref`; a route or shadow never names "latest" or "default")."""
    return resolve_ref(name, ref, aliases, lambda _: None)


class Rollout:
    """Per model: the split of its default route and its shadow version in this worker."""

    def __init__(self, on_shadow: Callable[[Served], None]) -> None:
        #: Model → its split, and model → its shadow version when it has one this worker can
        #: run. Read without a lock on the default route (one dict lookup); the dicts themselves
        #: are never replaced, so a reader may keep a reference to them.
        self.splits: dict[str, Split] = {}
        self.shadows: dict[str, Served] = {}
        self._on_shadow = on_shadow

    def update_split(
        self, name: str, aliases: dict[str, int], traffic: list | None, load: Load
    ) -> list[dict[str, Any]] | None:
        """Load every route's version, then swap the split in (or drop it). Returns one entry
        per route: {"version" (as set), "weight", "serving" (the number, None when it gets no
        traffic), "problem"?}; None when the model has no split."""
        if traffic is None:
            self.splits.pop(name, None)
            return None
        routes, served, bounds = [], [], []
        for route in traffic:
            entry: dict[str, Any] = {**route, "serving": None}
            try:
                one = load(name, ref_version(name, aliases, route["version"]))
            except (BrokenVersionError, VersionNotFoundError) as exc:
                entry["problem"] = f"gets no traffic: {exc}"
            else:
                entry["serving"] = one.version
                if route["weight"] > 0:
                    served.append(one)
                    bounds.append((bounds[-1] if bounds else 0) + route["weight"])
            routes.append(entry)
        if served:
            self.splits[name] = Split(tuple(served), tuple(bounds))
        else:  # nothing in the split can serve: the default version takes the traffic
            self.splits.pop(name, None)
            for entry in routes:
                entry.setdefault("problem", "gets no traffic: weight 0")
            logger.error("model %r: no version of its traffic split can serve", name)
        return routes

    def update_shadow(
        self, name: str, aliases: dict[str, int], ref: int | str | None, load: Load
    ) -> dict[str, Any] | None:
        """Load the shadow version and swap it in (or drop it). Returns {"version" (as set),
        "serving", "problem"?}; None when the model has no shadow."""
        if ref is None:
            self.shadows.pop(name, None)
            return None
        status: dict[str, Any] = {"version": ref, "serving": None}
        try:
            served = load(name, ref_version(name, aliases, ref))
        except (BrokenVersionError, VersionNotFoundError) as exc:
            status["problem"] = f"not shadowing: {exc}"
            self.shadows.pop(name, None)
            return status
        status["serving"] = served.version
        previous = self.shadows.get(name)
        self.shadows[name] = served
        if previous is not served:
            self._on_shadow(served)
        return status

    def versions(self) -> set[Key]:
        """Every version a split or a shadow serves (never evicted; their files are watched)."""
        out = {(s.name, s.version) for s in list(self.shadows.values())}
        for split in list(self.splits.values()):
            out.update((s.name, s.version) for s in split.served)
        return out

    def keep_only(self, names: Iterable[str]) -> None:
        """Forget the models no longer in the registry."""
        kept = set(names)
        for table in (self.splits, self.shadows):
            for gone in set(table) - kept:
                del table[gone]
