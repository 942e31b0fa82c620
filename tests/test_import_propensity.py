"""The history import's optional columns (spark_jobs/import_history.py): a propensity in (0, 1] and context
features. Row parsing is plain Python: no Spark here."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from spark_jobs import evaluate, import_history
from webapp.web.errors import InvalidInput

NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
BASE = "time,tenant,slot,banner,location,customer_id,referrer_id,clicked"
LINE = "2026-10-01T09:30:00Z,demo,hero,a,Pune,c1,news,1"


def test_the_header_may_add_a_propensity_and_context_columns():
    assert import_history.check_header(BASE) == ()
    assert import_history.check_header(BASE + ",propensity,Device") == ("propensity", "device")
    for bad in (BASE + ",propensity,propensity", BASE + ",bad name", BASE + "," + ",".join(f"c{i}" for i in range(9))):
        with pytest.raises(import_history.UnusableFile):
            import_history.check_header(bad)


def test_a_row_keeps_its_propensity_and_context():
    row = import_history.parse_row(LINE + ",0.25,mobile", 128, NOW, ("propensity", "device"))
    assert row.propensity == 0.25 and row.context == {"device": "mobile"}
    unknown = import_history.parse_row(LINE + ",,desktop", 128, NOW, ("propensity", "device"))
    assert unknown.propensity is None                 # imported, left out of evaluations
    plain = import_history.parse_row(LINE, 128, NOW)
    assert plain.propensity is None and plain.context is None


@pytest.mark.parametrize("value", ["0", "1.5", "-0.2", "nan", "inf", "half"])
def test_a_propensity_outside_0_to_1_is_rejected_with_its_reason(value):
    with pytest.raises(InvalidInput, match="propensity must be a probability in"):
        import_history.parse_row(LINE + f",{value}", 128, NOW, ("propensity",))


def test_rejected_rows_keep_their_line_numbers():
    rows = [(2, LINE + ",0.5", 1), (3, LINE + ",2", 1), (4, LINE + ",1", 1)]
    parsed = list(import_history.parse_partition(rows, 128, NOW, ("propensity",)))
    assert [(p[0], p[3] is None) for p in parsed] == [(2, True), (3, False), (4, True)]
    assert parsed[0][-2] == 0.5 and parsed[2][-2] == 1.0


def test_the_evaluation_job_turns_imported_context_into_features():
    import pandas as pd

    log = pd.DataFrame({"policy_state": [json.dumps({"context": {"device": "mobile"}}), "", "{bad json",
                                         json.dumps({"scope": "slot"})]})
    out, columns = evaluate.with_context(log)
    assert columns == ("referrer_id", "context_device")
    assert out["context_device"].tolist()[0] == "mobile" and out["context_device"].isna().tolist()[1:] == [True] * 3
