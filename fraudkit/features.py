"""Features: the one function that training, batch scoring and the stream all call.

Core code: a pandas DataFrame in, a DataFrame out. Because the stream calls this same function
on the same raw columns, a row gets the same feature values in training and in production
(``tests/test_features.py`` proves it through the whole streaming path).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fraudkit.schema import AMOUNT, RAW_FEATURES, TIME, V_COLUMNS, SchemaError

FEATURE_VERSION = "1"
SECONDS_PER_DAY = 86_400.0

#: The model's inputs, in order. The artifact records this list and the stream checks it.
FEATURE_COLUMNS: tuple[str, ...] = (*V_COLUMNS, "amount_log", "hour_of_day")


def build_features(raw: pd.DataFrame) -> pd.DataFrame:
    """Model features from the raw ULB columns.

    - ``V1..V28``: the PCA components, as they are.
    - ``amount_log``: ``log1p(Amount)``; amounts are heavy-tailed.
    - ``hour_of_day``: hours since the first transaction, modulo 24 (``Time`` counts seconds
      from the start of the two-day capture, so this is the hour relative to that start).

    The label is never read here: a frame without ``Class`` works the same.
    """
    missing = [c for c in RAW_FEATURES if c not in raw.columns]
    if missing:
        raise SchemaError(f"cannot build features, missing columns: {', '.join(missing)}")
    out = pd.DataFrame(index=raw.index)
    for col in V_COLUMNS:
        out[col] = raw[col].astype("float64")
    out["amount_log"] = np.log1p(raw[AMOUNT].astype("float64").clip(lower=0))
    out["hour_of_day"] = np.floor((raw[TIME].astype("float64") % SECONDS_PER_DAY) / 3600.0)
    return out[list(FEATURE_COLUMNS)]
