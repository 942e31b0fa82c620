"""Copy the event log of before cql/006 (day partitions) into the bounded log (``flask migrate-events``).

The old tables ``impressions`` and ``clicks`` hold one partition per (tenant, slot, UTC day). Each old
partition is read in pages and its rows are written into ``impression_log`` / ``click_log`` at the
partition of their impression (eventlog.partitions). The old rows stay until the operator drops the tables.

- Idempotent: an impression is copied with a plain INSERT of the same row (writing it again changes
  nothing); a click with ``IF NOT EXISTS``, so a click recorded in ``click_log`` since the upgrade is neither
  replaced nor doubled. Counters are not touched: the old rows were counted when they were first written.
- Resumable: a finished old partition is marked in ``event_migration``, and a later run skips it; a run
  stopped halfway redoes only the partition it was in. Partitions of the current UTC day are copied but not
  marked (a worker of the old version may still be writing them during a rolling upgrade), so the next run
  copies them again — harmlessly.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

from cassandra.concurrent import execute_concurrent_with_args
from tqdm import tqdm

from eventlog.partitions import partition_of
from webapp.storage import store
from webapp.storage.database import Database

OLD_TABLES = ("impressions", "clicks")


@dataclass
class TableResult:
    """What one run did to one old table."""

    partitions: int = 0               # old partitions found
    skipped: int = 0                  # … already migrated by an earlier run
    copied_partitions: int = 0        # … copied now (and marked, unless of today)
    rows_read: int = 0
    rows_written: int = 0             # impressions written; clicks applied (new in click_log)


@dataclass
class MigrationResult:
    tables: dict[str, TableResult] = field(default_factory=dict)

    def summary(self) -> str:
        return "; ".join(
            f"{name}: {r.partitions} day partitions ({r.skipped} done before, {r.copied_partitions} copied), "
            f"{r.rows_read} rows read, {r.rows_written} written" for name, r in self.tables.items())


def _impression_params(tenant_id: str, slot_id: str, row: dict) -> tuple:
    bucket, shard = partition_of(row["impression_id"])
    return (tenant_id, slot_id, bucket, shard, *(row[c] for c in store.LEGACY_IMPRESSION_COLUMNS))


def _click_params(tenant_id: str, slot_id: str, row: dict) -> tuple:
    bucket, shard = partition_of(row["impression_id"])
    return (tenant_id, slot_id, bucket, shard, *(row[c] for c in store.LEGACY_CLICK_COLUMNS))


def _chunks(rows, size: int):
    chunk = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def migrate(db: Database, *, progress: bool = True, concurrency: int = 64, page_size: int = 1000,
            today: dt.date | None = None, log: Callable[[str], None] = print) -> MigrationResult:
    """Copy every old partition not yet migrated; returns what was done (see the module doc)."""
    today = today or store.utcnow().date()
    session = db.session()
    result = MigrationResult()
    for old_table in OLD_TABLES:
        table = result.tables[old_table] = TableResult()
        if old_table == "impressions":
            statement, params = db.prepare(store.COPY_IMPRESSION), _impression_params
        else:
            statement, params = db.prepare(store.COPY_CLICK), _click_params
        done = store.migrated_partitions(db, old_table)
        found = store.legacy_partitions(db, old_table)
        todo = [key for key in found if key not in done]
        table.partitions, table.skipped = len(found), len(found) - len(todo)
        log(f"{old_table}: {len(found)} day partitions, {table.skipped} migrated before, {len(todo)} to copy")
        with tqdm(total=len(todo), desc=old_table, unit="partition", disable=not progress) as bar:
            for tenant_id, slot_id, day in todo:
                rows_read = 0
                for chunk in _chunks(store.legacy_rows(db, old_table, tenant_id, slot_id, day, page_size),
                                     page_size):
                    rows_read += len(chunk)
                    outcomes = execute_concurrent_with_args(
                        session, statement, [params(tenant_id, slot_id, row) for row in chunk],
                        concurrency=concurrency, raise_on_first_error=True)
                    if old_table == "impressions":
                        table.rows_written += len(chunk)
                    else:
                        table.rows_written += sum(bool(outcome.one()["[applied]"]) for _, outcome in outcomes)
                table.rows_read += rows_read
                table.copied_partitions += 1
                if isinstance(day, dt.date) and day < today:
                    store.mark_migrated(db, old_table, tenant_id, slot_id, day, rows_read)
                bar.set_postfix(rows=table.rows_read)
                bar.update(1)
    return result
