"""The per-process posterior cache: the state of the slots this worker serves, read by partition on first serve
and re-read in the background.

A worker holds only its working set: a slot is loaded the first time it is served (its tenant row, slot row,
banners, counters and priors: one partition each, read concurrently, bounded by SLOT_LOAD_TIMEOUT_SECONDS),
then re-read when it changes. Every CACHE_REFRESH_SECONDS a refresh reads the change feed
(cql/007_slot_changes.cql: the partitions written since its last read, about one small read a second when
nothing changes) and re-reads, concurrently and by partition, only the held slots named there (configuration,
counters flushed by any worker, priors); a quiet held slot costs nothing. Every CACHE_SAFETY_REFRESH_SECONDS it
re-reads every held slot (a lost feed row delays a change at most that long), and every DECAY_REFRESH_SECONDS
the decaying ones, whose decayed counts change with time alone. A slot not served for SLOT_IDLE_SECONDS is
dropped, and at most SLOT_CACHE_MAX are held (least recently served out first). Nothing is read for a slot
nobody serves, and a worker holding nothing reads nothing. A slot or tenant that does not exist is remembered
as such for SLOT_NOT_FOUND_SECONDS (and until the next refresh), so unknown-slot traffic
cannot hammer Cassandra while a slot just created is servable within about a second.

Serving never waits on Cassandra for a held slot: each SlotState is immutable once built and a refresh
replaces it whole; a slot whose reads fail keeps its last state (its age then flags the serve as stale).
Each slot holds its policy (bandits/registry.py, by the slot's ``policy`` name), built from the slot's counts
and priors; the policy's math is in bandits/ (per-city Thompson sampling: bandits/city_thompson.py). A refresh
that reads the same rows as before keeps the slot's policy as it is.

A slot with a decay half-life learns from time-decayed counts instead (webapp.learning.decay): the same formula over
Σ weight · count, with old evidence halving every half-life.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
import uuid
from collections import OrderedDict, defaultdict
from dataclasses import dataclass, field
from typing import Any

from bandits import BetaPrior
from bandits.city_thompson import FIRST_BLOCK, Posterior  # noqa: F401 - re-exported (benchmarks)
from bandits.contextual import FEATURES as CONTEXT_FEATURES
from bandits.policy import Policy, SlotStatistics
from bandits.registry import UnknownPolicy, policy_class
from webapp.learning.decay import DecayedCounts
from webapp.serving import schedules
from webapp.serving.click_filter import ClickFilterSettings
from webapp.storage import store
from webapp.storage.database import Database
from webapp.web import metrics

log = logging.getLogger(__name__)

Key = tuple[str, str]                   # (tenant_id, slot_id)
SLOTS_PER_READ = 100                    # slot rows of one tenant read at once by a refresh (IN on the clustering key)
FEED_OVERLAP = dt.timedelta(seconds=2)  # each feed read starts this long before the last one: a row written
#                                         meanwhile by a slow writer or a machine whose clock is behind is seen


class SlotUnavailable(Exception):
    """A slot this worker does not hold could not be read in time (Cassandra unreachable or slow)."""


@dataclass(frozen=True)
class Banner:
    banner_id: str
    image_url: str
    target_url: str
    alt: str
    active: bool
    starts: float | None = None         # schedule, epoch seconds (webapp.serving.schedules); None: unbounded
    ends: float | None = None

    def live_at(self, now: float) -> bool:
        return self.active and schedules.status_at(self.starts, self.ends, now) == schedules.LIVE


@dataclass
class SlotState:
    tenant_id: str
    slot_id: str
    banners: dict[str, Banner]                      # all banners, paused ones included (click redirects)
    active: tuple[Banner, ...]                      # servable now, in banner_id order: the policy's arms
    policy: Policy                                  # built from the slot's counts and priors
    holdout_percent: int = 0                        # share of visitors served uniformly (serving/holdout.py)
    read_at: float = field(default_factory=time.monotonic)    # when its rows were last read successfully
    # The next schedule boundary (epoch seconds) of a banner of the slot: from then on ``active`` is wrong
    # and :meth:`at` builds the state anew from the same rows, without reading anything.
    changes_at: float | None = None
    statistics: SlotStatistics | None = None
    policy_name: str | None = None
    max_draws: int = 4096

    def age(self) -> float:
        """Seconds since this slot's rows were last read."""
        return time.monotonic() - self.read_at

    def at(self, now: float) -> SlotState:
        """This state as of ``now`` (epoch seconds): itself before ``changes_at``, else rebuilt with the
        banners live at ``now`` as the policy's arms (pure CPU, no read)."""
        if self.changes_at is None or now < self.changes_at or self.statistics is None:
            return self
        fresh = assemble(self.tenant_id, self.slot_id, self.banners, self.statistics, self.policy_name,
                         self.max_draws, now, self.holdout_percent)
        fresh.read_at = self.read_at
        return fresh


@dataclass
class _Held:
    state: SlotState
    digest: int | None                  # of the rows it was built from (None: decaying, rebuilt every refresh)
    served_at: float                    # time.monotonic() of its last serve


@dataclass
class _Tenant:
    click_filter: ClickFilterSettings | None
    used_at: float
    timezone: str | None = None         # the tenant's time zone (the hour and weekday of a serve's context)
    origins: frozenset[str] = frozenset()     # its allowed origins; empty: any (cql/008)


class PosteriorCache:
    """The SlotStates of this worker's working set, keyed (tenant, slot): :meth:`slot` loads a slot on its first
    serve, :meth:`refresh` re-reads the held ones (module doc)."""

    def __init__(self, db: Database, max_draws: int = 4096, *, load_timeout: float = 1.0,
                 idle_seconds: float = 300.0, max_slots: int = 10_000, not_found_seconds: float = 1.0,
                 context_max_levels: int = 16, safety_seconds: float = 60.0, decay_seconds: float = 30.0) -> None:
        self.db = db
        self.max_draws = max_draws          # PROPENSITY_DRAWS: the largest block of precomputed draws
        self.load_timeout = load_timeout    # SLOT_LOAD_TIMEOUT_SECONDS
        self.idle_seconds = idle_seconds    # SLOT_IDLE_SECONDS
        self.max_slots = max_slots          # SLOT_CACHE_MAX
        self.not_found_seconds = not_found_seconds  # SLOT_NOT_FOUND_SECONDS
        self.context_max_levels = context_max_levels  # CONTEXT_MAX_LEVELS
        self.safety_seconds = safety_seconds        # CACHE_SAFETY_REFRESH_SECONDS
        self.decay_seconds = decay_seconds          # DECAY_REFRESH_SECONDS
        # The change feed: where the next read starts (wall clock, UTC), the change rows already acted on
        # (their IDs until they fall out of the overlap), slots named while not held (→ time.monotonic(), for a
        # load racing with a change) and slots to re-read at the next refresh whatever the feed says.
        self._feed_since = store.utcnow() - FEED_OVERLAP
        self._feed_seen: dict[uuid.UUID, dt.datetime] = {}
        self._named_unheld: dict[Key, float] = {}
        self._dirty: set[Key] = set()
        self._all_at = time.monotonic()             # last re-read of every held slot (the safety re-read)
        self._decay_at = time.monotonic()           # last re-read of the decaying held slots
        self._slots: OrderedDict[Key, _Held] = OrderedDict()       # least recently served first
        self._tenants: dict[str, _Tenant] = {}                      # click filters of the tenants in use
        self._missing: OrderedDict[tuple[str, str | None], float] = OrderedDict()  # → expiry; slot None = tenant
        self._lock = threading.Lock()           # guards the three dicts (short sections, never around I/O)
        self._refresh_lock = threading.Lock()
        self._decayed = DecayedCounts(db)
        self.refreshes = 0
        self.refreshed_at: float | None = None     # time.monotonic() of the last refresh that read every slot
        self.stats = {"loads": 0, "not_found": 0, "unavailable": 0, "evicted_idle": 0, "evicted_capacity": 0,
                      "reads": 0, "failed_reads": 0, "feed_reads": 0, "changes": 0, "full_refreshes": 0}

    # -- serving ---------------------------------------------------------------------------------------

    @property
    def held(self) -> int:
        """How many slots this worker holds."""
        return len(self._slots)

    def holds(self, tenant_id: str, slot_id: str) -> bool:
        return (tenant_id, slot_id) in self._slots

    def slot(self, tenant_id: str, slot_id: str) -> SlotState | None:
        """The slot's state, or None when it does not exist. A slot not held is read now (bounded by the load
        timeout); :class:`SlotUnavailable` when it cannot be."""
        key = (tenant_id, slot_id)
        now = time.monotonic()
        with self._lock:
            held = self._slots.get(key)
            if held is not None:
                held.served_at = now
                self._slots.move_to_end(key)
                state = held.state
            elif self._known_missing(key, now):
                return None
            else:
                state = None
        if state is None:
            state = self._load(key)
            if state is None:
                return None
        if state.changes_at is not None and time.time() >= state.changes_at:
            state = self._reschedule(key, state)
        return state

    def _reschedule(self, key: Key, state: SlotState) -> SlotState:
        """A banner's schedule boundary passed: the held state, rebuilt for now (once, whoever comes first)."""
        fresh = state.at(time.time())
        with self._lock:
            held = self._slots.get(key)
            if held is not None and held.state is state:
                held.state = fresh
            elif held is not None:
                return held.state.at(time.time())
        return fresh

    def click_filter(self, tenant_id: str) -> ClickFilterSettings:
        """The tenant's click filter (read on first use; the defaults when it cannot be read)."""
        now = time.monotonic()
        tenant = self._tenants.get(tenant_id)
        if tenant is None:
            try:
                rows = self._read([(store.TENANT_ROW, (tenant_id,))], self.load_timeout)[0]
            except Exception:  # noqa: BLE001 - no session: judge by the defaults, as before the first load
                rows = None
            if isinstance(rows, Exception) or rows is None:
                return ClickFilterSettings()
            tenant = _Tenant(tenant_filter(rows[0]) if rows else None, now,
                             rows[0].get("timezone") if rows else None,
                             tenant_origins(rows[0]) if rows else frozenset())
            with self._lock:
                self._tenants[tenant_id] = tenant
        tenant.used_at = now
        return tenant.click_filter or ClickFilterSettings()

    def timezone(self, tenant_id: str) -> str | None:
        """The time zone of a tenant this worker holds a slot of (None when not known)."""
        tenant = self._tenants.get(tenant_id)
        return tenant.timezone if tenant is not None else None

    def allowed_origins(self, tenant_id: str) -> frozenset[str]:
        """The tenant's allowed origins (empty: any), from the row :meth:`slot` or :meth:`click_filter` read;
        never a read of its own: a tenant whose row could not be read is judged as allowing any origin, as
        its click filter falls back to the defaults."""
        tenant = self._tenants.get(tenant_id)
        return tenant.origins if tenant is not None else frozenset()

    def prepare(self) -> None:
        """Connect and prepare the cache's statements (a worker's warm-up), so a first serve costs one round
        trip."""
        for cql in (store.TENANT_ROW, store.TENANT_SLOT_ROWS, *store.SLOT_PARTITIONS):
            self.db.prepare(cql)

    def _known_missing(self, key: Key, now: float) -> bool:
        for missing in (key, (key[0], None)):
            expiry = self._missing.get(missing)
            if expiry is not None:
                if expiry > now:
                    return True
                del self._missing[missing]
        return False

    def _remember_missing(self, key: tuple[str, str | None]) -> None:
        with self._lock:
            self._missing[key] = time.monotonic() + self.not_found_seconds
            self._missing.move_to_end(key)
            while len(self._missing) > self.max_slots:
                self._missing.popitem(last=False)

    def _load(self, key: Key) -> SlotState | None:
        tenant_id, slot_id = key
        started = time.monotonic()
        known_tenant = tenant_id in self._tenants
        reads = [] if known_tenant else [(store.TENANT_ROW, (tenant_id,))]
        reads += [(cql, key) for cql in store.SLOT_PARTITIONS]
        try:
            results = self._read(reads, self.load_timeout)
            failed = next((r for r in results if isinstance(r, Exception)), None)
            if failed is not None:
                raise failed
            if not known_tenant:
                tenant_rows = results.pop(0)
                if not tenant_rows:
                    self.stats["not_found"] += 1
                    metrics.SLOT_LOADS.labels(outcome="not_found").inc()
                    self._remember_missing((tenant_id, None))
                    return None
                with self._lock:
                    self._tenants.setdefault(tenant_id, _Tenant(tenant_filter(tenant_rows[0]), time.monotonic(),
                                                                tenant_rows[0].get("timezone"),
                                                                tenant_origins(tenant_rows[0])))
            if not results[0]:
                self.stats["not_found"] += 1
                metrics.SLOT_LOADS.labels(outcome="not_found").inc()
                self._remember_missing(key)
                return None
            held = self._build({key: results}, deadline=started + self.load_timeout)[key]
            assert held is not None         # nothing to compare with: always built
        except Exception as exc:
            self.stats["unavailable"] += 1
            metrics.SLOT_LOADS.labels(outcome="unavailable").inc()
            raise SlotUnavailable(f"slot {tenant_id}/{slot_id} could not be read: {exc!r}") from exc
        self.stats["loads"] += 1
        metrics.SLOT_LOADS.labels(outcome="loaded").inc()
        with self._lock:
            current = self._slots.get(key)
            if current is not None:          # loaded meanwhile by another thread: one state per slot
                return current.state
            self._slots[key] = held
            if self._named_unheld.get(key, -1.0) >= started:     # changed while being read: read it again
                self._dirty.add(key)
            while len(self._slots) > self.max_slots:
                self._slots.popitem(last=False)
                self.stats["evicted_capacity"] += 1
                metrics.SLOT_EVICTIONS.labels(reason="capacity").inc()
        return held.state

    # -- background ------------------------------------------------------------------------------------

    def refresh(self, full: bool = False) -> None:
        """Drop idle slots; read the change feed; re-read the held slots it names (every held slot and tenant row
        when ``full`` or every CACHE_SAFETY_REFRESH_SECONDS; the decaying ones every DECAY_REFRESH_SECONDS), one
        partition per read, all concurrently; replace each slot whose reads all succeeded. Reads nothing when
        nothing is held."""
        with self._refresh_lock:
            now = time.monotonic()
            with self._lock:
                self._missing.clear()           # unknown slots are asked again (sync(): at once)
                for key in [k for k, held in self._slots.items() if now - held.served_at > self.idle_seconds]:
                    del self._slots[key]
                    self.stats["evicted_idle"] += 1
                    metrics.SLOT_EVICTIONS.labels(reason="idle").inc()
                keys = list(self._slots)
                in_use = {tenant_id for tenant_id, _ in keys}
                for tenant_id in [t for t, tenant in self._tenants.items()
                                  if t not in in_use and now - tenant.used_at > self.idle_seconds]:
                    del self._tenants[tenant_id]
                tenants = list(self._tenants)
            self._decayed.forget(set(keys))
            if not keys and not tenants:
                # Nothing held: nothing to re-read, and the feed up to now concerns no slot of this worker.
                self._feed_since = store.utcnow() - FEED_OVERLAP
                self._feed_seen.clear()
                self._all_at = now
                self.refreshes += 1
                self.refreshed_at = time.monotonic()
                return
            full = full or now - self._all_at >= self.safety_seconds
            feed = None if full else self._read_feed()
            if full:
                chosen, chosen_tenants = keys, tenants
            elif feed is None:                  # the feed could not be read: try again next time
                chosen, chosen_tenants = [], []
            else:
                named, named_tenants = feed
                named_at = time.monotonic()
                decay_due = now - self._decay_at >= self.decay_seconds
                if decay_due:
                    self._decay_at = now
                with self._lock:        # with the held slots as they are now: a load racing with this read
                    dirty, self._dirty = self._dirty, set()         # is either held here or sees the name
                    chosen = [key for key, held in self._slots.items()
                              if key in named or key in dirty or key[0] in named_tenants
                              or (decay_due and held.digest is None)]
                    for key in named:
                        if key not in self._slots:
                            self._named_unheld[key] = named_at
                chosen_tenants = [tenant_id for tenant_id in tenants if tenant_id in named_tenants]
            if full:
                self.stats["full_refreshes"] += 1
                self._feed_since = store.utcnow() - FEED_OVERLAP     # what changed before is read now
                with self._lock:
                    self._dirty.clear()
            complete = self._reread(chosen, chosen_tenants)
            if feed is not None or full:
                done = time.monotonic()
                chosen_set = set(chosen)
                with self._lock:            # the feed says the slots not named are as they were read
                    for key, held in self._slots.items():
                        if key not in chosen_set:
                            held.state.read_at = max(held.state.read_at, done)
            with self._lock:
                for key in [k for k, at in self._named_unheld.items() if now - at > 2 * self.load_timeout + 1.0]:
                    del self._named_unheld[key]
            if full and complete:
                self._all_at = now
                self._decay_at = now
            self.refreshes += 1
            if complete and (feed is not None or full):
                self.refreshed_at = time.monotonic()

    def _read_feed(self) -> tuple[set[Key], set[str]] | None:
        """The held-or-not slots and the tenants named in the change feed since the last read (None when it
        cannot be read; the position then stays, so the next read covers the gap)."""
        until = store.utcnow()
        reads = store.change_reads(self._feed_since, until)
        results = self._read(reads, None)
        self.stats["feed_reads"] += len(reads)
        if any(isinstance(rows, Exception) for rows in results):
            return None
        slots: set[Key] = set()
        tenants: set[str] = set()
        for rows in results:
            for row in rows:
                if row["change_id"] in self._feed_seen:
                    continue
                self._feed_seen[row["change_id"]] = until
                self.stats["changes"] += 1
                if row["slot_id"] == store.TENANT_WIDE:
                    tenants.add(row["tenant_id"])
                else:
                    slots.add((row["tenant_id"], row["slot_id"]))
        self._feed_since = until - FEED_OVERLAP
        for change_id in [c for c, seen in self._feed_seen.items() if seen < self._feed_since]:
            del self._feed_seen[change_id]
        return slots, tenants

    def _reread(self, keys: list[Key], tenants: list[str]) -> bool:
        """Re-read the given held slots (and tenant rows), concurrently, by partition; True when every read
        succeeded."""
        if not keys and not tenants:
            return True
        # The slot rows of a tenant's held slots are one partition of the slots table: one read a tenant.
        slot_ids: dict[str, list[str]] = defaultdict(list)
        for tenant_id, slot_id in keys:
            slot_ids[tenant_id].append(slot_id)
        groups = [(tenant_id, ids[i:i + SLOTS_PER_READ]) for tenant_id, ids in slot_ids.items()
                  for i in range(0, len(ids), SLOTS_PER_READ)]
        reads = [(store.TENANT_ROW, (tenant_id,)) for tenant_id in tenants]
        reads += [(store.TENANT_SLOT_ROWS, (tenant_id, ids)) for tenant_id, ids in groups]
        reads += [(cql, key) for key in keys for cql in store.SLOT_PARTITIONS[1:]]
        results = self._read(reads, None)
        for tenant_id, rows in zip(tenants, results, strict=False):
            if not isinstance(rows, Exception):
                tenant = self._tenants.get(tenant_id)
                if tenant is not None:
                    tenant.click_filter = tenant_filter(rows[0]) if rows else None
                    tenant.timezone = rows[0].get("timezone") if rows else None
                    tenant.origins = tenant_origins(rows[0]) if rows else frozenset()
        slot_rows: dict[Key, list | Exception] = {}
        for (tenant_id, ids), rows in zip(groups, results[len(tenants):], strict=False):
            found = {} if isinstance(rows, Exception) else {row["slot_id"]: row for row in rows}
            for slot_id in ids:
                row = found.get(slot_id)
                slot_rows[(tenant_id, slot_id)] = rows if isinstance(rows, Exception) else ([row] if row else [])
        start, width = len(tenants) + len(groups), len(store.SLOT_PARTITIONS) - 1
        by_slot = {key: [slot_rows[key], *results[start + i * width:start + (i + 1) * width]]
                   for i, key in enumerate(keys)}
        readable = {key: rows for key, rows in by_slot.items() if not any(isinstance(r, Exception) for r in rows)}
        gone = [key for key, rows in readable.items() if not rows[0]]
        present = {key: rows for key, rows in readable.items() if rows[0]}
        with self._lock:
            digests = {key: held.digest for key in present if (held := self._slots.get(key)) is not None}
        built = self._build(present, tolerant=True, unchanged=digests)
        now = time.monotonic()
        with self._lock:
            for key in gone:
                self._slots.pop(key, None)
            for key, fresh in built.items():
                held = self._slots.get(key)
                if held is None:
                    continue                # evicted meanwhile
                if fresh is None:
                    held.state.read_at = now        # unchanged: keep the policy (and its blocks of draws)
                else:
                    held.state, held.digest = fresh.state, fresh.digest
            failed = [key for key in keys if key not in built and key not in gone]
            self._dirty.update(key for key in failed if key in self._slots)   # try again at the next refresh
        tenants_ok = not any(isinstance(rows, Exception) for rows in results[:len(tenants)])
        return not failed and tenants_ok

    def age(self) -> float:
        """Seconds since the stalest held slot was read (0 when nothing is held)."""
        with self._lock:
            oldest = min((held.state.read_at for held in self._slots.values()), default=None)
        return time.monotonic() - oldest if oldest is not None else 0.0

    # -- reading and building --------------------------------------------------------------------------

    def _read(self, reads: list[store.Read], timeout: float | None) -> list[Any]:
        results = store.read_partitions(self.db, reads, timeout if timeout is not None else 10.0)
        failed = sum(isinstance(r, Exception) for r in results)
        self.stats["reads"] += len(reads)
        self.stats["failed_reads"] += failed
        metrics.CACHE_READS.inc(len(reads))
        return results

    def _build(self, rows_by_slot: dict[Key, list], tolerant: bool = False,
               unchanged: dict[Key, int | None] | None = None, deadline: float | None = None
               ) -> dict[Key, _Held | None]:
        """Held entries of slots from their (slot row, banners, counts, priors) rows; None for a slot whose rows
        have the digest given in ``unchanged`` (nothing to rebuild). ``tolerant``: a slot whose decayed counts
        cannot be read is left out (it keeps its state) instead of raising. ``deadline`` (time.monotonic()):
        the decayed counts' reads must be answered by then (a first load's SLOT_LOAD_TIMEOUT_SECONDS)."""
        now = time.monotonic()
        unchanged = unchanged or {}
        result: dict[Key, _Held | None] = {}
        for key, rows in rows_by_slot.items():
            slot_rows, banners, counts, priors, context_counts = rows
            half_life = slot_rows[0].get("decay_half_life_hours")
            decayed: dict[Key, Any] = {}
            digest = None
            if half_life:                   # decayed counts change with time: rebuilt every refresh
                try:
                    decayed[key] = self._decayed.counts(*key, float(half_life), deadline=deadline)
                except Exception:
                    if not tolerant:
                        raise
                    log.warning("slot %s/%s: decayed counts unreadable; keeping its state", *key)
                    continue
            else:
                digest = rows_digest(rows)
                if digest == unchanged.get(key):
                    result[key] = None
                    continue
            state = build_snapshot(slot_rows, banners, counts, priors, decayed, self.max_draws,
                                   context_counts, self.context_max_levels)[key]
            result[key] = _Held(state, digest, now)
        return result


def rows_digest(parts: tuple[list[dict[str, Any]], ...]) -> int:
    """A hash of a slot's rows, kept instead of the rows to tell an unchanged slot (memory: one int a slot)."""
    return hash(tuple(tuple(tuple(v) if isinstance(v, list) else v for v in row.values())   # slots.context
                      for rows in parts for row in rows))


def tenant_filter(row: dict[str, Any]) -> ClickFilterSettings | None:
    """The click filter of a tenants row (None: the defaults)."""
    return click_filters([row]).get(row["tenant_id"])


def tenant_origins(row: dict[str, Any]) -> frozenset[str]:
    """The allowed origins of a tenants row (empty: any origin)."""
    return frozenset(row.get("allowed_origins") or ())


def click_filters(tenants: list[dict[str, Any]]) -> dict[str, ClickFilterSettings]:
    result = {}
    for row in tenants:
        if row["click_filter"]:
            try:
                result[row["tenant_id"]] = ClickFilterSettings.from_dict(json.loads(row["click_filter"]))
            except ValueError:
                log.warning("tenant %s: invalid click_filter ignored", row["tenant_id"])
    return result


def build_snapshot(slots: list[dict[str, Any]], banners: list[dict[str, Any]], counts: list[dict[str, Any]],
                   priors: list[dict[str, Any]],
                   decayed: dict[tuple[str, str], dict[str, dict[str, tuple[float, float]]]] | None = None,
                   max_draws: int = 4096, context_counts: list[dict[str, Any]] | None = None,
                   context_max_levels: int = 16) -> dict[tuple[str, str], SlotState]:
    """Assemble SlotStates from the rows of the config, counts and priors tables, each with its policy
    (``slots.policy``, null = the default; an unknown name is logged and served by the default); ``decayed``
    replaces the counts of the slots with a decay half-life. ``context_counts`` (rows of context_counts) and
    ``slots.context`` are what a contextual slot learns from (bandits/contextual.py; cumulative, never
    decayed)."""
    decayed = decayed or {}
    by_slot_banners: dict[tuple[str, str], dict[str, Banner]] = defaultdict(dict)
    for row in banners:
        by_slot_banners[(row["tenant_id"], row["slot_id"])][row["banner_id"]] = Banner(
            row["banner_id"], row["image_url"] or "", row["target_url"] or "", row["alt"] or "",
            bool(row["active"]), *schedules.window(row.get("starts_at"), row.get("ends_at")))
    by_slot_counts: dict[tuple[str, str], dict[str, dict[str, tuple[int, int]]]] = defaultdict(
        lambda: defaultdict(dict))
    for row in counts:
        by_slot_counts[(row["tenant_id"], row["slot_id"])][row["location"]][row["banner_id"]] = (
            int(row["impressions"] or 0), int(row["clicks"] or 0))
    by_slot_priors: dict[tuple[str, str], dict[str, dict[str, BetaPrior]]] = defaultdict(
        lambda: defaultdict(dict))
    for row in priors:
        try:
            prior = BetaPrior(float(row["alpha"]), float(row["beta"]), row["source"] or "prior")
        except (TypeError, ValueError):
            log.warning("ignoring invalid prior row %s", row)
            continue
        scope = "location" if row["location"] else "slot"
        by_slot_priors[(row["tenant_id"], row["slot_id"])][row["location"]][row["banner_id"]] = BetaPrior(
            prior.alpha, prior.beta, scope)
    by_slot_cells: dict[tuple[str, str], dict[str, dict[str, tuple[int, int]]]] = defaultdict(
        lambda: defaultdict(dict))
    for row in context_counts or ():
        impressions, clicks = int(row["impressions"] or 0), int(row["clicks"] or 0)
        if impressions or clicks:       # 0/0: a row the log does not have, zeroed by spark_jobs/context_rebuild.py
            by_slot_cells[(row["tenant_id"], row["slot_id"])][row["cell"]][row["banner_id"]] = (impressions, clicks)
    snapshot: dict[tuple[str, str], SlotState] = {}
    for row in slots:
        key = (row["tenant_id"], row["slot_id"])
        all_banners = by_slot_banners.get(key, {})
        statistics = SlotStatistics(counts=decayed[key] if key in decayed else dict(by_slot_counts.get(key, {})),
                                    priors=dict(by_slot_priors.get(key, {})),
                                    context_features=tuple(f for f in row.get("context") or ()
                                                           if f in CONTEXT_FEATURES),   # newer names: skipped
                                    context_counts=dict(by_slot_cells.get(key, {})),
                                    max_levels=context_max_levels)
        name = row.get("policy")
        try:
            policy_class(name)
        except UnknownPolicy as exc:        # written by an older or newer server: serve, and say so
            log.warning("slot %s/%s: %s; serving with the default", key[0], key[1], exc)
            name = None
        snapshot[key] = assemble(key[0], key[1], all_banners, statistics, name, max_draws, time.time(),
                                 holdout_percent=int(row.get("holdout_percent") or 0))
    return snapshot


def assemble(tenant_id: str, slot_id: str, banners: dict[str, Banner], statistics: SlotStatistics,
             policy_name: str | None, max_draws: int, now: float, holdout_percent: int = 0) -> SlotState:
    """A slot's state at ``now`` (epoch seconds): its policy over the banners active and inside their
    schedule then, and when that set next changes (the earliest schedule boundary after ``now``)."""
    active = tuple(b for _, b in sorted(banners.items()) if b.live_at(now))
    boundaries = [t for b in banners.values() if b.active for t in (b.starts, b.ends) if t is not None and t > now]
    policy = policy_class(policy_name)
    return SlotState(
        tenant_id=tenant_id, slot_id=slot_id, banners=banners, active=active,
        policy=policy.from_statistics(tuple(b.banner_id for b in active), statistics, max_draws=max_draws),
        changes_at=min(boundaries, default=None), statistics=statistics, policy_name=policy_name,
        max_draws=max_draws, holdout_percent=holdout_percent,
    )
