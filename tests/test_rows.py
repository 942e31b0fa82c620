"""webapp.storage.rows.RowBinder gives the bytes the driver's own bind() gives, on the real prepared statements."""

from __future__ import annotations

import datetime as dt
import math
import uuid

import pytest
from cassandra.query import BatchStatement, BatchType

from webapp.storage import store
from webapp.storage.events import Click, Impression
from webapp.storage.rows import RowBinder

IST = dt.timezone(dt.timedelta(hours=5, minutes=30))
UTC = dt.UTC


@pytest.fixture
def db(app):
    return app.extensions["cassandra"]


def impression(**changes) -> Impression:
    fields = {"tenant_id": "rows", "slot_id": "hero", "impression_id": uuid.uuid1(),
                  "served_at": dt.datetime(2026, 11, 23, 23, 59, 59, 999999, tzinfo=UTC), "banner_id": "b1",
                  "location": "mumbai", "customer_id": "c-1", "referrer_id": "r-1", "posterior_scope": "location",
                  "alpha": 3.0, "beta": 41.0, "prior_source": "city", "propensity": 0.25, "policy": "thompson",
                  "policy_state": '{"scope":"location","alpha":3.0,"beta":41.0,"prior":"city"}'}
    fields.update(changes)
    return Impression(**fields)


def impression_rows() -> list[tuple]:
    rows = [impression().row()]
    for microsecond in (0, 1, 499, 500, 999, 1000, 123456, 999999):
        rows.append(impression(served_at=dt.datetime(2026, 1, 1, 0, 0, 0, microsecond, tzinfo=UTC)).row())
    rows += [
        impression(served_at=dt.datetime(2026, 11, 24, 4, 15, 7, 654321, tzinfo=IST)).row(),    # other zone
        impression(location="", customer_id="", referrer_id="", prior_source="").row(),         # empty text
        impression(location="thiruvananthapuram", customer_id="क्रेता-७", referrer_id="🛒 ref\u00e9").row(),
        impression(alpha=1.0, beta=1.0, propensity=1.0).row(),
        impression(alpha=1e-300, beta=1e300, propensity=5e-324).row(),
        impression(served_at=dt.datetime(1970, 1, 1, tzinfo=UTC)).row(),
        impression(policy="", policy_state="").row(),                                           # empty state
        impression(policy_state='{"arm":"क्रेता","p":[0.5,0.5]}').row(),                             # non-ASCII JSON
        impression(posterior_scope=None, alpha=None, beta=None, prior_source=None).row(),       # no Thompson columns
    ]
    # values of other Python types than the serving path uses go to the driver's serializer
    base = list(impression().row())
    odd = [
        (2, dt.datetime(1969, 12, 31, 23, 55, tzinfo=UTC)),               # bucket before the epoch
        (2, dt.date(2262, 4, 11)),                                        # a date as a timestamp
        (2, 20_000 * 86_400_000),                                         # milliseconds
        (5, dt.datetime(2026, 11, 23, 12, 0, 0, 250000)),                 # naive: UTC, as for the driver
        (5, dt.datetime(1969, 12, 31, 23, 59, 59, 999500, tzinfo=UTC)),   # before the epoch: driver rounds
        (5, dt.date(2026, 11, 23)),                                       # a date as a timestamp
        (5, 1_795_000_000_000),                                           # milliseconds
        (11, 3),                                                          # int for a double
        (12, math.inf), (14, -0.0),
        (7, None), (13, None), (16, None),                                # nulls
    ]
    for index, value in odd:
        row = list(base)
        row[index] = value
        rows.append(tuple(row))
    return rows


def test_impression_rows_bind_to_the_drivers_bytes(db):
    statement = db.prepare(store.INSERT_IMPRESSION)
    binder = RowBinder(statement)
    for row in impression_rows():
        ours, drivers = binder.bind(row), statement.bind(row)
        assert ours.values == drivers.values, row
        assert ours.routing_key == drivers.routing_key


def test_click_rows_bind_to_the_drivers_bytes(db):
    statement = db.prepare(store.INSERT_CLICK)
    binder = RowBinder(statement)
    now = dt.datetime.now(UTC)
    for valid, reason in ((True, None), (False, "too_fast")):
        click = Click(tenant_id="rows", slot_id="hero", impression_id=uuid.uuid1(), clicked_at=now,
                      banner_id="b1", location="pune", customer_id="c", referrer_id="", valid=valid,
                      invalid_reason=reason, user_agent="Mozilla/5.0", ip="203.0.113.9")
        assert binder.bind(click.row()).values == statement.bind(click.row()).values


def test_date_values_bind_to_the_drivers_bytes(db):
    # No statement of the serving path has a date column since the bounded log (cql/006); the old tables do.
    statement = db.prepare("INSERT INTO {ks}.clicks (tenant_id, slot_id, day, impression_id) VALUES (?, ?, ?, ?)")
    binder = RowBinder(statement)
    for day in (dt.date(1969, 12, 31), dt.date(2262, 4, 11), 20_000 + 2 ** 31, dt.date(2026, 11, 23)):
        row = ("rows", "hero", day, uuid.uuid1())
        assert binder.bind(row).values == statement.bind(row).values, day


def test_a_row_of_the_wrong_length_is_refused(db):
    binder = RowBinder(db.prepare(store.INSERT_IMPRESSION))
    with pytest.raises(ValueError, match="16 values for 17 columns"):
        binder.bind(impression().row()[:-1])


def test_a_batch_of_bound_rows_reads_back(db):
    statement = db.prepare(store.INSERT_IMPRESSION)
    binder = RowBinder(statement)
    written = [impression(customer_id=f"c-{i}", served_at=dt.datetime(2026, 11, 23, 10, 0, i, i * 1000, tzinfo=UTC))
               for i in range(20)]
    batch = BatchStatement(batch_type=BatchType.UNLOGGED)
    for item in written:
        batch.add(binder.bind(item.row()))
    assert batch.routing_key == statement.bind(written[0].row()).routing_key
    db.session().execute(batch)
    found = {item.impression_id: store.get_impression(db, "rows", "hero", item.impression_id) for item in written}
    for item in written:
        row = found[item.impression_id]
        assert row["customer_id"] == item.customer_id
        assert row["served_at"].replace(tzinfo=UTC) == item.served_at
        assert (row["alpha"], row["beta"], row["propensity"], row["location"]) == (3.0, 41.0, 0.25, "mumbai")
        assert (row["policy"], row["policy_state"]) == (item.policy, item.policy_state)
