import json
import math

import numpy as np
import pandas as pd
import pytest

from fraudkit.features import FEATURE_COLUMNS, build_features
from fraudkit.schema import LABEL, RAW_FEATURES, SchemaError, parse_messages, to_messages

pytestmark = pytest.mark.unit


def _record(i: int = 0, **changes) -> dict:
    rec = {"tx_id": f"tx-{i:06d}", **{c: float(i + k) for k, c in enumerate(RAW_FEATURES)}}
    rec.update(changes)
    return rec


def test_valid_messages_parse_to_float_columns_in_order():
    values = [json.dumps(_record(i)).encode() for i in range(3)]
    frame, rejected = parse_messages(values)
    assert rejected == []
    assert list(frame["tx_id"]) == ["tx-000000", "tx-000001", "tx-000002"]
    assert frame["Amount"].dtype == "float64"
    assert list(frame["_index"]) == [0, 1, 2]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1,2]", "JSON list"),
        (None, "no value"),
        (json.dumps(_record(Class=1)).encode(), "label"),
        (json.dumps({"tx_id": "x", "Time": 1}).encode(), "missing fields: V1"),
        (json.dumps(_record(Amount="12,50")).encode(), "'Amount' is not a number"),
        (json.dumps(_record(V3=True)).encode(), "'V3' is not a number"),
        (json.dumps(_record(Amount=-4.0)).encode(), "negative"),
        (json.dumps(_record(tx_id="")).encode(), "tx_id"),
        (b'{"tx_id": "a", "Time": NaN}', "not valid JSON"),
    ],
)
def test_bad_messages_are_rejected_with_a_reason(value, reason):
    good = json.dumps(_record(1)).encode()
    frame, rejected = parse_messages([good, value, good])
    assert len(frame) == 2 and list(frame["_index"]) == [0, 2]
    assert len(rejected) == 1 and rejected[0].index == 1
    assert reason in rejected[0].reason


def test_messages_never_carry_the_label():
    frame = pd.DataFrame([_record(i) for i in range(2)])
    frame[LABEL] = [0, 1]
    for key, value in to_messages(frame):
        assert LABEL not in json.loads(value)
        assert key.startswith("tx-")


def test_features_are_deterministic_and_never_read_the_label():
    raw = pd.DataFrame([_record(i) for i in range(5)])
    raw["Time"] = [0.0, 3599.0, 3600.0, 86_399.0, 90_000.0]
    raw["Amount"] = [0.0, 1.0, 10.0, 100.0, 1000.0]
    feats = build_features(raw)
    assert tuple(feats.columns) == FEATURE_COLUMNS
    assert list(feats["hour_of_day"]) == [0.0, 0.0, 1.0, 23.0, 1.0]
    assert feats["amount_log"].iloc[2] == pytest.approx(math.log1p(10.0))
    with_label = raw.assign(Class=[1, 0, 1, 0, 1])
    pd.testing.assert_frame_equal(build_features(with_label), feats)
    assert LABEL not in feats.columns


def test_features_from_parsed_messages_equal_features_from_the_frame():
    raw = pd.DataFrame([_record(i) for i in range(20)])
    raw[list(RAW_FEATURES)] = np.random.default_rng(3).normal(size=(20, len(RAW_FEATURES)))
    raw["Amount"] = raw["Amount"].abs() * 100
    raw["Time"] = raw["Time"].abs() * 50_000
    parsed, rejected = parse_messages([v for _, v in to_messages(raw)])
    assert not rejected
    pd.testing.assert_frame_equal(build_features(parsed), build_features(raw))


def test_missing_column_is_a_schema_error():
    with pytest.raises(SchemaError, match="V7"):
        build_features(pd.DataFrame([_record()]).drop(columns=["V7"]))
