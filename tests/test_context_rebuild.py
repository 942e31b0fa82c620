"""The context_counts rebuild (spark_jobs/context_rebuild.py) on a local Spark session against the test
Cassandra: contextual slots served and clicked through the app, their cell counters damaged both ways, the job
run, the counters equal to the log again, and a second run that writes nothing."""

from __future__ import annotations

import pytest

from spark_jobs import context_rebuild
from spark_jobs.counter_audit import CONTEXT, Audit, TableReport
from tests.helpers import gen_slot, sync
from tests.spark_support import job_config, local_spark
from webapp.serving import runtime
from webapp.storage import store
from webapp.storage.database import Database

CounterRows = dict[tuple[str, str], tuple[int, int]]


@pytest.fixture(scope="module")
def config(keyspace):
    return job_config(CASSANDRA_KEYSPACE=keyspace)


@pytest.fixture(scope="module")
def spark(config):
    session = local_spark(CASSANDRA_KEYSPACE=config["CASSANDRA_KEYSPACE"])
    yield session
    session.stop()


@pytest.fixture(scope="module")
def db(config):
    database = Database(config)
    yield database
    database.shutdown()


def contextual_slot(client, admin_headers, tenant: str | None = None, slot: str = "hero") -> tuple[str, str]:
    tenant, slot = gen_slot(client, ["a", "b"], tenant=tenant, slot=slot)
    response = client.put(f"/v1/admin/tenants/{tenant}/slots/{slot}", headers=admin_headers,
                          json={"name": "Hero", "policy": "contextual", "context": ["referrer", "segment"]})
    assert response.status_code == 200, response.get_json()
    return tenant, slot


def serve_and_click(client, tenant: str, slot: str, visits: int) -> None:
    """Visitors from two referrers and segments; every third one clicks."""
    for i in range(visits):
        query = {"referrer_id": ("news", "search")[i % 2], "segment": ("new", "vip", "returning")[i % 3]}
        document = client.get(f"/v1/serve/{tenant}/{slot}", query_string=query).get_json()
        if i % 3 == 0:
            assert client.post("/v1/click", json={"token": document["token"]}).get_json()["status"] == "recorded"


def cell_counts(db: Database, tenant: str, slot: str) -> CounterRows:
    """The slot's context_counts: (cell, banner) → (impressions, clicks), rows at 0/0 left out."""
    rows = {(r["cell"], r["banner_id"]): (int(r["impressions"] or 0), int(r["clicks"] or 0))
            for r in store.context_counts(db, tenant, slot)}
    return {key: values for key, values in rows.items() if any(values)}


def add(db: Database, tenant: str, slot: str, cell: str, banner: str, impressions: int, clicks: int) -> None:
    db.execute("UPDATE {ks}.context_counts SET impressions = impressions + ?, clicks = clicks + ? "
               "WHERE tenant_id = ? AND slot_id = ? AND cell = ? AND banner_id = ?",
               (impressions, clicks, tenant, slot, cell, banner))


def held_counts(app, tenant: str, slot: str) -> CounterRows:
    """The context counts the app's posterior cache holds for the slot (what its policy learned from; a row at
    0/0 would make its level one the slot has seen)."""
    with app.app_context():
        state = runtime.get(app).cache.slot(tenant, slot)
    return {(cell, banner): tuple(int(v) for v in values) for cell, by_banner in state.statistics.context_counts.items()
            for banner, values in by_banner.items()}


def test_rebuild_brings_damaged_cells_back_to_the_log_and_a_second_run_writes_nothing(
        app, client, admin_headers, spark, config, db):
    tenant, slot = contextual_slot(client, admin_headers)
    other = contextual_slot(client, admin_headers, tenant=tenant, slot="side")[1]    # same tenant, not named
    serve_and_click(client, tenant, slot, 60)
    serve_and_click(client, tenant, other, 12)
    sync(app)
    logged, other_logged = cell_counts(db, tenant, slot), cell_counts(db, tenant, other)
    assert sum(n for n, _ in logged.values()) == 60 and sum(c for _, c in logged.values()) == 20
    clean = context_rebuild.run(spark, config, slots=[(tenant, slot)], settle=0.0)
    assert clean.consistent and clean.repaired_slots == []          # the job's rules are the writer's

    # Damage: one row lost entirely (as if its counter batch timed out), one over-counted, one cell the log
    # never had; and the other slot of the tenant over-counted too.
    (lost, lost_values), (over, _) = sorted(logged.items())[:2]
    add(db, tenant, slot, *lost, -lost_values[0], -lost_values[1])
    add(db, tenant, slot, *over, 3, 2)
    add(db, tenant, slot, "referrer=forged\tsegment=vip", "a", 5, 1)
    add(db, tenant, other, "referrer=news\tsegment=new", "b", 7, 0)
    store.note_change(db, tenant, slot, "counts")
    sync(app)
    assert held_counts(app, tenant, slot) != logged                   # the worker learned from the damage

    rebuilt = context_rebuild.run(spark, config, slots=[(tenant, slot)], settle=0.0)
    assert (rebuilt.repaired_slots, rebuilt.busy_slots, rebuilt.unknown_batches) == ([(tenant, slot)], [], 0)
    assert {(r["cell"], r["banner_id"], r["missing_impressions"], r["missing_clicks"])
            for r in rebuilt.reports[CONTEXT.name].rows} == {
        (*lost, *lost_values), (*over, -3, -2), ("referrer=forged\tsegment=vip", "a", -5, -1)}
    assert context_rebuild.exit_status(rebuilt, written=True) == 0
    assert cell_counts(db, tenant, slot) == logged                   # exactly the log: added and taken away
    sync(app)
    assert held_counts(app, tenant, slot) == logged     # the change feed named the slot; the forged cell is gone
    assert cell_counts(db, tenant, other)[("referrer=news\tsegment=new", "b")][0] >= 7   # out of scope: kept

    again = context_rebuild.run(spark, config, slots=[(tenant, slot)], settle=0.0)
    assert again.consistent and again.repaired_slots == []          # nothing to write the second time
    assert cell_counts(db, tenant, slot) == logged

    whole_tenant = context_rebuild.run(spark, config, tenants=[tenant], settle=0.0)
    assert whole_tenant.repaired_slots == [(tenant, other)]
    assert cell_counts(db, tenant, other) == other_logged
    assert context_rebuild.run(spark, config, tenants=[tenant], settle=0.0).consistent


def test_a_slot_taking_traffic_is_left_alone(app, client, admin_headers, spark, config, db):
    tenant, slot = contextual_slot(client, admin_headers)
    serve_and_click(client, tenant, slot, 12)
    sync(app)
    add(db, tenant, slot, "referrer=news\tsegment=new", "a", 4, 0)
    audit = context_rebuild.plan(spark, config["CASSANDRA_KEYSPACE"], slots=[(tenant, slot)])
    assert audit.differing_slots() == [(tenant, slot)]
    serve_and_click(client, tenant, slot, 3)             # counted after the job read the counters
    sync(app)
    before = cell_counts(db, tenant, slot)
    context_rebuild.apply(db, audit, settle=0.0)
    assert (audit.repaired_slots, audit.busy_slots) == ([], [(tenant, slot)])
    assert cell_counts(db, tenant, slot) == before                   # nothing written to a busy slot
    assert context_rebuild.exit_status(audit, written=True) == 3

    quiet = context_rebuild.run(spark, config, slots=[(tenant, slot)], settle=0.5)
    assert quiet.repaired_slots == [(tenant, slot)]
    after, damaged = cell_counts(db, tenant, slot), ("referrer=news\tsegment=new", "a")
    assert after.get(damaged, (0, 0))[0] == before[damaged][0] - 4
    assert sum(n for n, _ in after.values()) == 15


def test_the_scope_names_tenants_and_slots(spark):
    frame = spark.createDataFrame([("t", "s"), ("t", "x"), ("u", "s"), ("v", "s")], "tenant_id string, slot_id string")
    scope = context_rebuild.in_scope(["u"], [("t", "s")])
    assert sorted(tuple(r) for r in frame.where(scope).collect()) == [("t", "s"), ("u", "s")]
    assert context_rebuild.in_scope(None, None) is None


def test_command_line_and_exit_status():
    args = context_rebuild.parse_args(["--slot", "demo/home-hero", "--tenant", "acme", "--dry-run"])
    assert (args.slots, args.tenants, args.dry_run) == ([("demo", "home-hero")], ["acme"], True)
    for argv in (["--slot", "demo"], ["--slot", "/x"], ["--slot", "a/b/c"], ["--settle", "-1"], ["--nonsense"]):
        with pytest.raises(SystemExit) as exit_info:
            context_rebuild.parse_args(argv)
        assert exit_info.value.code == 2
    row = {"tenant_id": "t", "slot_id": "s", "cell": "referrer=news", "banner_id": "a",
           "missing_impressions": -2, "missing_clicks": 0}
    differing = Audit({CONTEXT.name: TableReport(CONTEXT, [row])}, {})
    assert context_rebuild.exit_status(differing, written=False) == 1        # a quiet slot differs
    assert context_rebuild.exit_status(differing, written=True) == 0         # …and was rebuilt
    differing.unknown_batches = 1
    assert context_rebuild.exit_status(differing, written=True) == 1
    busy = Audit({CONTEXT.name: TableReport(CONTEXT, [row])}, {}, busy_slots=[("t", "s")])
    assert context_rebuild.exit_status(busy, written=True) == 3
    assert context_rebuild.exit_status(Audit({CONTEXT.name: TableReport(CONTEXT, [])}, {}), written=True) == 0
    assert context_rebuild.slot_deltas(differing, ("t", "s")) == {("t", "s", "referrer=news", "a"): [-2, 0]}
