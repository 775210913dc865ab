"""The transaction schema, and validation of raw messages before they reach the model.

This is core code: it knows no Kafka, Spark, HTTP or AWS. A message is a JSON object with a
``tx_id`` and the 30 raw feature columns of the ULB data set. The label ``Class`` never travels
with the features: a message that carries it is refused (label leakage), and labels arrive on
their own topic.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import orjson
import pandas as pd

ID = "tx_id"
LABEL = "Class"
TIME = "Time"
AMOUNT = "Amount"
V_COLUMNS: tuple[str, ...] = tuple(f"V{i}" for i in range(1, 29))
RAW_FEATURES: tuple[str, ...] = (TIME, *V_COLUMNS, AMOUNT)
CSV_COLUMNS: tuple[str, ...] = (*RAW_FEATURES, LABEL)


class SchemaError(ValueError):
    """Input data does not have the creditcard.csv schema; the message names the problem."""


@dataclass(frozen=True)
class Rejected:
    """A message that could not be used, with where it came from and why."""

    index: int
    reason: str


def tx_id_for_row(row: int | np.ndarray | pd.Series) -> str | pd.Series:
    """The stable id of a transaction: its 0-based row number in the full creditcard.csv."""
    if isinstance(row, (int, np.integer)):
        return f"tx-{int(row):06d}"
    return pd.Series(row).map(lambda r: f"tx-{int(r):06d}")


def _check_value(name: str, value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"field {name!r} is not a number: {value!r:.40}"
    if not math.isfinite(value):
        return f"field {name!r} is not finite: {value!r}"
    return None


def validate_record(record: object) -> str | None:
    """Why a decoded message cannot be scored, or None when it can."""
    if not isinstance(record, dict):
        return f"message is a JSON {type(record).__name__}, not an object"
    if LABEL in record:
        return f"message carries the label {LABEL!r}: labels travel on their own topic"
    tx_id = record.get(ID)
    if not isinstance(tx_id, str) or not tx_id:
        return f"field {ID!r} is missing or not a non-empty string"
    missing = [c for c in RAW_FEATURES if c not in record]
    if missing:
        return f"missing fields: {', '.join(missing)}"
    for name in RAW_FEATURES:
        problem = _check_value(name, record[name])
        if problem:
            return problem
    if record[AMOUNT] < 0:
        return f"field {AMOUNT!r} is negative: {record[AMOUNT]!r}"
    return None


def parse_messages(values: Sequence[bytes | str | None]) -> tuple[pd.DataFrame, list[Rejected]]:
    """Decode and validate a batch of JSON messages.

    Returns the valid rows as a DataFrame (``tx_id`` plus the raw features, float64, with a
    ``_index`` column giving each row's position in ``values``) and the rejected ones.
    """
    rows: list[dict] = []
    kept: list[int] = []
    rejected: list[Rejected] = []
    for i, value in enumerate(values):
        if value is None:
            rejected.append(Rejected(i, "message has no value"))
            continue
        try:
            record = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            rejected.append(Rejected(i, f"not valid JSON: {exc}"))
            continue
        reason = validate_record(record)
        if reason:
            rejected.append(Rejected(i, reason))
            continue
        rows.append(record)
        kept.append(i)
    columns = [ID, *RAW_FEATURES]
    frame = (
        pd.DataFrame.from_records(rows, columns=columns)
        if rows
        else pd.DataFrame({c: pd.Series(dtype="float64") for c in columns})
    )
    frame[ID] = frame[ID].astype("string") if rows else pd.Series(dtype="string")
    frame[list(RAW_FEATURES)] = frame[list(RAW_FEATURES)].astype("float64")
    frame["_index"] = np.asarray(kept, dtype="int64")
    return frame, rejected


def to_messages(frame: pd.DataFrame) -> Iterable[tuple[str, bytes]]:
    """(key, JSON value) pairs for a frame's transactions, without the label."""
    missing = [c for c in (ID, *RAW_FEATURES) if c not in frame.columns]
    if missing:
        raise SchemaError(f"cannot build messages, missing columns: {', '.join(missing)}")
    records = frame[[ID, *RAW_FEATURES]].to_dict(orient="records")
    for record in records:
        yield record[ID], orjson.dumps(record)
