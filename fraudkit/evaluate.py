"""Evaluation in the terms that matter for fraud: ranking quality, alert budgets and money.

Core code: numpy arrays in, plain dicts out. Every function takes optional ``weights`` so that
a sample which kept only a share of the legitimate rows can be re-weighted to the population
(``fraudkit.data.legit_weights``: 1 per fraud, ``1 / rate`` per legitimate row).

- AUPRC (average precision) is the headline: with 0.17% fraud, ROC-AUC looks excellent for
  almost any model, while AUPRC shows how clean the top of the ranking is. It comes with a
  seeded bootstrap 95% interval, because a test split holds only a few dozen frauds.
- Precision@k answers "if analysts can review k alerts a day, how many are fraud?".
- Expected cost: a missed fraud costs its Amount, every alert costs a fixed review cost.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
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
