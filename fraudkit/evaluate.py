"""Evaluation in the terms that matter for fraud: ranking quality, alert budgets and money.

Core code: numpy arrays in, plain dicts (or small pandas tables) out. Every function takes
optional ``weights`` so that a sample which kept only a share of the legitimate rows can be
re-weighted to the population (``fraudkit.data.legit_weights``: 1 per fraud, ``1 / rate`` per
legitimate row).

- AUPRC (average precision) is the headline: with 0.17% fraud, ROC-AUC looks excellent for
  almost any model, while AUPRC shows how clean the top of the ranking is. It comes with a
  seeded bootstrap 95% interval, because a test split holds only a few dozen frauds.
- Precision@k answers "if analysts can review k alerts a day, how many are fraud?".
- Expected cost: a missed fraud costs its Amount, every alert costs a fixed review cost.
  :func:`threshold_curve` gives it for every candidate threshold (the curve the threshold is
  chosen on).
- Calibration: :func:`reliability_table` and :func:`calibration_summary` say whether a score
  of 0.02 means "2 in 100 such transactions are fraud".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

SECONDS_PER_DAY = 86_400.0


@dataclass(frozen=True)
class Interval:
    """A point estimate with a bootstrap percentile interval."""

    value: float
    low: float
    high: float
    level: float
    n_boot: int

    def to_dict(self) -> dict[str, float | int]:
        """Plain-Python form, for JSON."""
        return asdict(self)


def _arrays(
    y: np.ndarray, scores: np.ndarray, weights: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=np.float64).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    w = np.ones_like(y) if weights is None else np.asarray(weights, dtype=np.float64).ravel()
    if not (len(y) == len(scores) == len(w)):
        raise ValueError(f"lengths differ: y {len(y)}, scores {len(scores)}, weights {len(w)}")
    return y, scores, w


def days_spanned(times: np.ndarray) -> float:
    """How many days a set of ``Time`` values (seconds) covers; at least one second's worth."""
    times = np.asarray(times, dtype=np.float64)
    if len(times) == 0:
        return 1.0 / SECONDS_PER_DAY
    return max(float(times.max() - times.min()), 1.0) / SECONDS_PER_DAY


def _ranked(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Order by descending score, and the last position of each group of tied scores."""
    order = np.argsort(-scores, kind="stable")
    ranked = scores[order]
    ends = np.flatnonzero(np.r_[ranked[1:] != ranked[:-1], True])
    return order, ends


def _ap_sorted(y_ranked: np.ndarray, w_ranked: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Average precision for one or many weight vectors (rows of ``w_ranked``), pre-sorted."""
    tp = np.cumsum(w_ranked * y_ranked, axis=-1)[..., ends]
    alerts = np.cumsum(w_ranked, axis=-1)[..., ends]
    total = tp[..., -1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(alerts > 0, tp / alerts, 0.0)
        recall = np.where(total > 0, tp / total, np.nan)
    steps = np.diff(recall, axis=-1, prepend=0.0)
    return np.sum(steps * precision, axis=-1)


def average_precision(
    y: np.ndarray, scores: np.ndarray, weights: np.ndarray | None = None
) -> float:
    """Average precision (area under the precision-recall curve, step-wise, no interpolation).

    The same definition as ``sklearn.metrics.average_precision_score``, computed with cumulative
    sums so that the bootstrap can evaluate hundreds of resamples quickly.
    """
    y, scores, w = _arrays(y, scores, weights)
    order, ends = _ranked(scores)
    return float(_ap_sorted(y[order], w[order], ends))


def average_precision_interval(
    y: np.ndarray,
    scores: np.ndarray,
    weights: np.ndarray | None = None,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> Interval:
    """AUPRC with a seeded bootstrap percentile interval (rows resampled with replacement).

    Args:
        y: labels, 1 = fraud.
        scores: model scores; higher = more suspicious.
        weights: optional row weights (re-weighting a sample to the population).
        n_boot: number of bootstrap resamples.
        seed: seed of ``numpy.random.default_rng``.
        level: coverage of the interval.
    """
    y, scores, w = _arrays(y, scores, weights)
    order, ends = _ranked(scores)
    y_r, w_r = y[order], w[order]
    value = float(_ap_sorted(y_r, w_r, ends))
    rng = np.random.default_rng(seed)
    n = len(y)
    estimates = np.empty(n_boot)
    batch = max(1, min(n_boot, 2_000_000 // max(n, 1)))
    for start in range(0, n_boot, batch):
        size = min(batch, n_boot - start)
        # Row i of `counts` says how often each row was drawn in resample start + i.
        draws = rng.integers(0, n, size=(size, n)) + (np.arange(size) * n)[:, None]
        counts = np.bincount(draws.ravel(), minlength=size * n).reshape(size, n)
        estimates[start : start + size] = _ap_sorted(y_r, counts * w_r, ends)
    alpha = (1.0 - level) / 2.0
    low, high = np.nanquantile(estimates, [alpha, 1.0 - alpha])
    return Interval(value, float(low), float(high), level, n_boot)


def roc_auc(y: np.ndarray, scores: np.ndarray, weights: np.ndarray | None = None) -> float:
    """ROC-AUC; NaN when only one class is present."""
    y, scores, w = _arrays(y, scores, weights)
    if len(np.unique(y)) < 2:
        return float("nan")
    return float(roc_auc_score(y, scores, sample_weight=w))


def at_threshold(
    y: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    weights: np.ndarray | None = None,
) -> dict[str, float]:
    """Counts, precision and recall when every score >= ``threshold`` raises an alert."""
    y, scores, w = _arrays(y, scores, weights)
    flagged = scores >= threshold
    tp = float(np.sum(w * y * flagged))
    fp = float(np.sum(w * (1 - y) * flagged))
    fn = float(np.sum(w * y * ~flagged))
    alerts = tp + fp
    return {
        "threshold": float(threshold),
        "alerts": alerts,
        "true_positives": tp,
        "false_positives": fp,
        "false_negatives": fn,
        "precision": tp / alerts if alerts else float("nan"),
        "recall": tp / (tp + fn) if tp + fn else float("nan"),
    }


def precision_at_k(
    y: np.ndarray,
    scores: np.ndarray,
    times: np.ndarray,
    alerts_per_day: float,
    weights: np.ndarray | None = None,
) -> dict[str, float]:
    """Precision and recall of the top ``k`` alerts, ``k = alerts_per_day * days``.

    ``days`` comes from the span of ``times`` (seconds). With weights, rows are taken in score
    order until their weights add up to ``k``.
    """
    y, scores, w = _arrays(y, scores, weights)
    days = days_spanned(times)
    k = alerts_per_day * days
    order = np.argsort(-scores, kind="stable")
    taken = np.cumsum(w[order]) <= k + 1e-9
    tp = float(np.sum((w * y)[order][taken]))
    alerts = float(np.sum(w[order][taken]))
    frauds = float(np.sum(w * y))
    return {
        "alerts_per_day": float(alerts_per_day),
        "days": days,
        "k": k,
        "alerts": alerts,
        "precision": tp / alerts if alerts else float("nan"),
        "recall": tp / frauds if frauds else float("nan"),
    }


def expected_cost(
    y: np.ndarray,
    scores: np.ndarray,
    amounts: np.ndarray,
    threshold: float,
    review_cost: float,
    weights: np.ndarray | None = None,
) -> dict[str, float]:
    """The money view: missed frauds cost their Amount, each alert costs ``review_cost``."""
    y, scores, w = _arrays(y, scores, weights)
    amounts = np.asarray(amounts, dtype=np.float64).ravel()
    flagged = scores >= threshold
    missed = float(np.sum((w * y * amounts)[~flagged]))
    alerts = float(np.sum(w[flagged]))
    no_model = float(np.sum(w * y * amounts))
    return {
        "cost": missed + review_cost * alerts,
        "missed_fraud_amount": missed,
        "review_cost_total": review_cost * alerts,
        "alerts": alerts,
        "cost_without_model": no_model,
    }


def evaluate(
    y: np.ndarray,
    scores: np.ndarray,
    amounts: np.ndarray,
    times: np.ndarray,
    *,
    threshold: float,
    review_cost: float,
    alerts_per_day: float,
    weights: np.ndarray | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, object]:
    """All the metrics of one split, as a JSON-ready dict.

    Args:
        y: labels, 1 = fraud.
        scores: model scores.
        amounts: the transactions' Amount (the cost of missing a fraud).
        times: the transactions' Time in seconds (for alerts per day).
        threshold: alert when score >= threshold.
        review_cost: cost of one analyst review.
        alerts_per_day: the alert budget for precision@k.
        weights: optional row weights (re-weighting a sample to the population).
        n_boot: bootstrap resamples for the AUPRC interval.
        seed: bootstrap seed.
    """
    y_arr, s_arr, w = _arrays(y, scores, weights)
    days = days_spanned(times)
    point = at_threshold(y_arr, s_arr, threshold, w)
    return {
        "rows": int(len(y_arr)),
        "frauds": int(np.sum(y_arr)),
        "days": days,
        "weighted": weights is not None,
        "auprc": average_precision_interval(y_arr, s_arr, w, n_boot=n_boot, seed=seed).to_dict(),
        "fraud_rate": float(np.sum(w * y_arr) / np.sum(w)) if len(w) else float("nan"),
        "roc_auc": roc_auc(y_arr, s_arr, w),
        "at_threshold": {**point, "alerts_per_day": point["alerts"] / days},
        "precision_at_budget": precision_at_k(y_arr, s_arr, times, alerts_per_day, w),
        "cost": expected_cost(y_arr, s_arr, amounts, threshold, review_cost, w),
    }


def threshold_curve(
    y: np.ndarray,
    scores: np.ndarray,
    amounts: np.ndarray,
    *,
    review_cost: float,
    days: float = 1.0,
    weights: np.ndarray | None = None,
) -> pd.DataFrame:
    """Alerts, recall, precision and expected cost for every candidate threshold.

    Candidates are the midpoints between consecutive distinct scores, plus one just above the
    highest score ("alert on none") and the lowest score itself ("alert on every row"), so
    candidate ``j`` flags exactly the rows of the ``j`` highest distinct scores.

    Args:
        y: labels, 1 = fraud.
        scores: model scores; alert when ``score >= threshold``.
        amounts: transaction amounts (what a missed fraud costs).
        review_cost: cost of reviewing one alert.
        days: how many days the rows cover (for alerts per day).
        weights: optional row weights (re-weighting a sample to the population).

    Returns:
        One row per candidate, highest threshold first: ``threshold, alerts, alerts_per_day,
        caught, recall, precision, missed_fraud_amount, review_cost_total, cost``.
    """
    y, scores, w = _arrays(y, scores, weights)
    amounts = np.asarray(amounts, dtype=np.float64).ravel()
    if len(scores) == 0:
        raise ValueError("cannot build a threshold curve on no rows")
    order, ends = _ranked(scores)
    distinct = scores[order][ends]
    alerts = np.r_[0.0, np.cumsum(w[order])[ends]]
    caught = np.r_[0.0, np.cumsum((w * y)[order])[ends]]
    caught_amount = np.r_[0.0, np.cumsum((w * y * amounts)[order])[ends]]
    total_frauds = float(np.sum(w * y))
    missed = float(np.sum(w * y * amounts)) - caught_amount
    below = np.r_[distinct[1:], np.nan]
    thresholds = np.r_[
        np.nextafter(distinct[0], np.inf),
        np.where(np.isnan(below), distinct, (distinct + below) / 2.0),
    ]
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = caught / total_frauds if total_frauds else np.full_like(caught, np.nan)
        precision = np.where(alerts > 0, caught / alerts, np.nan)
    return pd.DataFrame(
        {
            "threshold": thresholds,
            "alerts": alerts,
            "alerts_per_day": alerts / days,
            "caught": caught,
            "recall": recall,
            "precision": precision,
            "missed_fraud_amount": missed,
            "review_cost_total": review_cost * alerts,
            "cost": missed + review_cost * alerts,
        }
    )


#: Reliability bins for rare events: most scores are near 0, so the bins are log-spaced.
CALIBRATION_EDGES: tuple[float, ...] = (0.0, 1e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 0.7, 1.0)


def reliability_table(
    y: np.ndarray,
    scores: np.ndarray,
    weights: np.ndarray | None = None,
    edges: tuple[float, ...] = CALIBRATION_EDGES,
) -> pd.DataFrame:
    """The reliability curve's points: mean score against observed fraud rate, per score bin.

    A calibrated model has ``mean_score ≈ fraud_rate`` in every bin. Empty bins are dropped.

    Args:
        y: labels, 1 = fraud.
        scores: scores in [0, 1].
        weights: optional row weights (re-weighting a sample to the population).
        edges: bin edges, increasing, covering [0, 1]; the last bin includes 1.

    Returns:
        ``bin_low, bin_high, rows`` (weighted), ``frauds`` (weighted), ``mean_score,
        fraud_rate``.
    """
    y, scores, w = _arrays(y, scores, weights)
    edges_arr = np.asarray(edges, dtype=np.float64)
    index = np.clip(np.searchsorted(edges_arr, scores, side="right") - 1, 0, len(edges_arr) - 2)
    rows = np.bincount(index, weights=w, minlength=len(edges_arr) - 1)
    frauds = np.bincount(index, weights=w * y, minlength=len(edges_arr) - 1)
    score_sum = np.bincount(index, weights=w * scores, minlength=len(edges_arr) - 1)
    keep = rows > 0
    return pd.DataFrame(
        {
            "bin_low": edges_arr[:-1][keep],
            "bin_high": edges_arr[1:][keep],
            "rows": rows[keep],
            "frauds": frauds[keep],
            "mean_score": score_sum[keep] / rows[keep],
            "fraud_rate": frauds[keep] / rows[keep],
        }
    )


def calibration_summary(
    y: np.ndarray,
    scores: np.ndarray,
    weights: np.ndarray | None = None,
    edges: tuple[float, ...] = CALIBRATION_EDGES,
) -> dict[str, float]:
    """How far scores are from probabilities, in four numbers.

    - ``ece``: expected calibration error, the row-weighted mean of ``|mean_score -
      fraud_rate|`` over the bins of :func:`reliability_table`.
    - ``ece_above_1pct``: the same over the bins that start at 1% or more (where alerts are
      raised); with 0.17% fraud the overall ECE is dominated by the near-zero bin and says
      little about the alerts.
    - ``brier``: mean squared error of the score as a probability.
    - ``mean_score`` against ``fraud_rate``: calibration in the large (a model trained on data
      with 10% of the legitimate rows over-states every probability roughly tenfold).
    """
    y, scores, w = _arrays(y, scores, weights)
    table = reliability_table(y, scores, w, edges)
    gap = np.abs(table["mean_score"] - table["fraud_rate"]).to_numpy()
    share = (table["rows"] / table["rows"].sum()).to_numpy()
    high = (table["bin_low"] >= 0.01).to_numpy()
    ece_high = (
        float(np.sum(gap[high] * table["rows"][high]) / table["rows"][high].sum())
        if high.any()
        else float("nan")
    )
    return {
        "ece": float(np.sum(gap * share)),
        "ece_above_1pct": ece_high,
        "brier": float(np.sum(w * (scores - y) ** 2) / np.sum(w)),
        "mean_score": float(np.sum(w * scores) / np.sum(w)),
        "fraud_rate": float(np.sum(w * y) / np.sum(w)),
    }


def comparison_row(name: str, metrics: dict[str, object]) -> dict[str, object]:
    """One row of a model-comparison table from :func:`evaluate`'s output."""
    auprc = metrics["auprc"]
    point = metrics["at_threshold"]
    budget = metrics["precision_at_budget"]
    cost = metrics["cost"]
    return {
        "model": name,
        "auprc": auprc["value"],
        "auprc_low": auprc["low"],
        "auprc_high": auprc["high"],
        "roc_auc": metrics["roc_auc"],
        "threshold": point["threshold"],
        "alerts_per_day": point["alerts_per_day"],
        "precision": point["precision"],
        "recall": point["recall"],
        "precision_at_k": budget["precision"],
        "missed_fraud_amount": cost["missed_fraud_amount"],
        "review_cost": cost["review_cost_total"],
        "total_cost": cost["cost"],
    }


def no_model_row(y: np.ndarray, amounts: np.ndarray, weights: np.ndarray | None = None) -> dict:
    """The comparison row for "no model": no alerts, every fraud's Amount is lost."""
    y = np.asarray(y, dtype=np.float64).ravel()
    w = np.ones_like(y) if weights is None else np.asarray(weights, dtype=np.float64).ravel()
    lost = float(np.sum(w * y * np.asarray(amounts, dtype=np.float64).ravel()))
    return {
        "model": "no model",
        "alerts_per_day": 0.0,
        "recall": 0.0,
        "missed_fraud_amount": lost,
        "review_cost": 0.0,
        "total_cost": lost,
    }


def separation_table(df: pd.DataFrame, features: list[str] | None = None) -> pd.DataFrame:
    """How well each feature on its own separates fraud from legitimate transactions.

    Weights are not needed: the sample keeps every fraud and a uniform share of legitimate
    rows, so each class's distribution is unbiased.

    Args:
        df: labelled transactions (``Class`` and the feature columns).
        features: columns to rank; default every column except ``tx_id``, ``Time``, ``Class``.

    Returns:
        One row per feature, best first: ``ks`` (the Kolmogorov-Smirnov distance between the
        two classes' distributions, 0 = identical, 1 = disjoint), ``auc`` (ROC-AUC of the
        feature alone, folded so that 0.5 = useless, 1 = perfect), ``fraud_direction``
        (``"lower"`` or ``"higher"`` in fraud) and each class's median.
    """
    from scipy.stats import ks_2samp

    labels = df["Class"].to_numpy()
    names = features or [c for c in df.columns if c not in ("tx_id", "Time", "Class")]
    rows = []
    for name in names:
        values = df[name].to_numpy(dtype=np.float64)
        fraud, legit = values[labels == 1], values[labels == 0]
        auc = roc_auc_score(labels, values)
        rows.append(
            {
                "feature": name,
                "ks": float(ks_2samp(fraud, legit).statistic),
                "auc": float(max(auc, 1.0 - auc)),
                "fraud_direction": "higher" if auc >= 0.5 else "lower",
                "median_legit": float(np.median(legit)),
                "median_fraud": float(np.median(fraud)),
            }
        )
    return pd.DataFrame(rows).sort_values("ks", ascending=False, ignore_index=True)
