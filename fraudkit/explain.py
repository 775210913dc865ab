"""Why a transaction scored high: the features that pushed its score up or down.

Core code: an artifact and a raw DataFrame in, plain Python lists and dicts out (JSON-ready).
The contributions are XGBoost's exact TreeSHAP values (``pred_contribs=True``) in log-odds:
for each row, the contributions of all features plus the bias add up to the model's margin,
so an explanation is grounded in what the model actually computed. The LLM layer only puts
these numbers into words; it never invents them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from fraudkit.features import build_features
from fraudkit.model import ModelArtifact


def top_contributions(
    artifact: ModelArtifact, raw_df: pd.DataFrame, k: int = 5
) -> list[list[dict[str, Any]]]:
    """The ``k`` features with the largest absolute contribution, for each row.

    Args:
        artifact: the trained model.
        raw_df: raw transactions (``Time, V1..V28, Amount``; other columns are ignored).
        k: how many features per row (capped at the number of features).

    Returns:
        One list per row, largest ``|contribution|`` first, of
        ``{"feature", "value", "contribution", "direction"}``: ``value`` is the feature value
        the model saw (after :func:`fraudkit.features.build_features`), ``contribution`` the
        log-odds it added, ``direction`` ``"raises risk"`` or ``"lowers risk"``. The bias
        term is not included.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    features, contribs = artifact.contributions(raw_df)
    names = np.asarray(features.columns, dtype=object)
    values = features.to_numpy(dtype=np.float64)
    per_feature = contribs[:, :-1]  # the last column is the bias
    k = min(k, per_feature.shape[1])
    magnitude = np.abs(per_feature)
    top = np.argpartition(-magnitude, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(magnitude, top, axis=1), axis=1, kind="stable")
    top = np.take_along_axis(top, order, axis=1)
    rows = np.arange(len(features))[:, None]
    top_names = names[top].tolist()
    top_values = values[rows, top].tolist()
    top_contribs = per_feature[rows, top].tolist()
    return [
        [
            {
                "feature": name,
                "value": value,
                "contribution": contribution,
                "direction": "raises risk" if contribution > 0 else "lowers risk",
            }
            for name, value, contribution in zip(n_row, v_row, c_row, strict=True)
        ]
        for n_row, v_row, c_row in zip(top_names, top_values, top_contribs, strict=True)
    ]


def shap_explanation(artifact: ModelArtifact, raw_df: pd.DataFrame) -> Any:
    """A ``shap.Explanation`` of the artifact's calibrated log-odds, for ``shap.plots``.

    Built from :meth:`ModelArtifact.contributions`, the same numbers
    :func:`top_contributions` gives the explanation service; ``shap`` is imported only here.
    """
    import shap

    features, contribs = artifact.contributions(raw_df)
    return shap.Explanation(
        values=contribs[:, :-1],
        base_values=contribs[:, -1],
        data=features.to_numpy(dtype=np.float64),
        feature_names=list(features.columns),
    )


def tree_explainer_gap(artifact: ModelArtifact, raw_df: pd.DataFrame) -> dict[str, float]:
    """Compare the ``shap`` package's TreeExplainer with XGBoost's own ``pred_contribs``.

    Both compute exact TreeSHAP on the booster's raw log-odds (before calibration), so they
    should agree to float precision.

    Returns:
        ``max_abs_diff`` over all rows and features, ``base_value_diff`` between shap's
        expected value and XGBoost's bias, and the largest contribution for scale.
    """
    import shap
    import xgboost as xgb

    features = build_features(raw_df)[artifact.features]
    explainer = shap.TreeExplainer(artifact.booster)
    values = np.asarray(explainer.shap_values(features), dtype=np.float64)
    matrix = xgb.DMatrix(features, feature_names=artifact.features)
    native = artifact.booster.predict(matrix, pred_contribs=True).astype(np.float64)
    return {
        "max_abs_diff": float(np.max(np.abs(values - native[:, :-1]))),
        "base_value_diff": float(np.max(np.abs(explainer.expected_value - native[:, -1]))),
        "max_abs_contribution": float(np.max(np.abs(native[:, :-1]))),
    }
