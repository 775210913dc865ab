"""The notebooks' plots: each function takes data and returns a titled, labelled Figure.

Nothing here calls ``plt.show`` or touches pyplot's global state: figures are built with
``matplotlib.figure.Figure`` (no GUI backend needed, safe under Agg and in tests), and the
caller displays or saves them. The SHAP plots are drawn by the ``shap`` package, which draws on
pyplot's current figure; :func:`_capture` hands that figure over and closes it in pyplot, so
the caller still owns exactly one figure.

Sampled data: pass ``weights`` (:func:`fraudkit.data.legit_weights`) and counts and rates are
re-weighted to the population.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import precision_recall_curve

from fraudkit.schema import AMOUNT, LABEL, TIME

LEGIT_COLOR = "#4C72B0"
FRAUD_COLOR = "#C44E52"


def _weights(df: pd.DataFrame, weights: np.ndarray | None) -> np.ndarray:
    return np.ones(len(df)) if weights is None else np.asarray(weights, dtype=np.float64)


def class_balance(df: pd.DataFrame, weights: np.ndarray | None = None) -> Figure:
    """Bar chart of legitimate vs fraud transactions (log scale), with the fraud rate."""
    w = _weights(df, weights)
    y = df[LABEL].to_numpy()
    counts = [float(w[y == 0].sum()), float(w[y == 1].sum())]
    fig = Figure(figsize=(5, 3.5), layout="constrained")
    ax = fig.add_subplot()
    bars = ax.bar(["legitimate", "fraud"], counts, color=[LEGIT_COLOR, FRAUD_COLOR])
    ax.bar_label(bars, labels=[f"{c:,.0f}" for c in counts])
    ax.set_yscale("log")
    ax.set_title(f"Class imbalance: {100 * counts[1] / sum(counts):.3f}% fraud")
    ax.set_xlabel("class")
    ax.set_ylabel("transactions (log scale)")
    return fig


def amount_by_class(df: pd.DataFrame, weights: np.ndarray | None = None) -> Figure:
    """Histograms of ``log10(1 + Amount)`` per class, each normalised to a density."""
    w = _weights(df, weights)
    y = df[LABEL].to_numpy()
    values = np.log10(1.0 + df[AMOUNT].to_numpy())
    bins = np.linspace(0, values.max() + 1e-9, 40)
    fig = Figure(figsize=(7, 3.5), layout="constrained")
    ax = fig.add_subplot()
    for label, name, color in ((0, "legitimate", LEGIT_COLOR), (1, "fraud", FRAUD_COLOR)):
        mask = y == label
        ax.hist(values[mask], bins=bins, weights=w[mask], density=True, alpha=0.55, color=color)
        ax.axvline(np.median(values[mask]), color=color, linestyle="--", label=f"{name} median")
    ax.set_title("Transaction amount by class")
    ax.set_xlabel("log10(1 + Amount)")
    ax.set_ylabel("density")
    ax.legend()
    return fig


def hourly_activity(df: pd.DataFrame, weights: np.ndarray | None = None) -> Figure:
    """Transactions per hour and the fraud rate per hour over the capture's two days."""
    w = _weights(df, weights)
    hour = (df[TIME].to_numpy() // 3600).astype(int)
    y = df[LABEL].to_numpy()
    n_hours = int(hour.max()) + 1
    total = np.bincount(hour, weights=w, minlength=n_hours)
    frauds = np.bincount(hour, weights=w * y, minlength=n_hours)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(total > 0, frauds / total, np.nan)
    fig = Figure(figsize=(9, 5), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True)
    top.bar(np.arange(n_hours), total, color=LEGIT_COLOR, width=0.9)
    top.set_title("Day and night: transactions and fraud rate per hour of the capture")
    top.set_ylabel("transactions per hour")
    bottom.bar(np.arange(n_hours), 100 * rate, color=FRAUD_COLOR, width=0.9)
    bottom.set_ylabel("fraud rate (%)")
    bottom.set_xlabel("hours since the first transaction")
    for ax in (top, bottom):
        ax.axvline(24, color="grey", linestyle=":")
    return fig


def feature_histograms(
    df: pd.DataFrame,
    features: Sequence[str],
    weights: np.ndarray | None = None,
    bins: int = 50,
) -> Figure:
    """One density histogram per feature, legitimate and fraud overlaid."""
    w = _weights(df, weights)
    y = df[LABEL].to_numpy()
    cols = min(3, len(features))
    rows = int(np.ceil(len(features) / cols))
    fig = Figure(figsize=(4 * cols, 3 * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax, name in zip(axes, features, strict=False):
        values = df[name].to_numpy()
        low, high = np.quantile(values, [0.001, 0.999])
        edges = np.linspace(min(low, values[y == 1].min()), high, bins)
        for label, color in ((0, LEGIT_COLOR), (1, FRAUD_COLOR)):
            mask = y == label
            ax.hist(values[mask], edges, weights=w[mask], density=True, alpha=0.55, color=color)
        ax.set_title(name)
        ax.set_xlabel(f"{name} value")
        ax.set_ylabel("density")
    for ax in axes[len(features) :]:
        ax.set_visible(False)
    axes[0].legend(["legitimate", "fraud"])
    fig.suptitle("The features that separate the classes best")
    return fig


def precision_recall(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray | None]],
) -> Figure:
    """Precision-recall curves, one per model: ``{name: (y, scores, weights)}``."""
    fig = Figure(figsize=(6, 4.5), layout="constrained")
    ax = fig.add_subplot()
    for name, (y, scores, weights) in curves.items():
        precision, recall, _ = precision_recall_curve(y, scores, sample_weight=weights)
        ax.step(recall, precision, where="post", label=name)
    ax.set_title("Precision-recall on the test period")
    ax.set_xlabel("recall (share of frauds caught)")
    ax.set_ylabel("precision (share of alerts that are fraud)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.legend()
    return fig


def cost_curve(curve: pd.DataFrame, chosen: float | None = None) -> Figure:
    """Expected cost against threshold (from :func:`fraudkit.evaluate.threshold_curve`)."""
    data = curve[(curve["threshold"] > 0) & (curve["threshold"] <= 1)]
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(data["threshold"], data["cost"], label="total cost", color="black")
    ax.plot(data["threshold"], data["missed_fraud_amount"], label="missed fraud", color=FRAUD_COLOR)
    ax.plot(data["threshold"], data["review_cost_total"], label="reviews", color=LEGIT_COLOR)
    if chosen is not None:
        ax.axvline(chosen, color="grey", linestyle="--", label=f"chosen {chosen:.3g}")
    ax.axvline(0.5, color="grey", linestyle=":", label="0.5")
    ax.set_xscale("log")
    ax.set_title("Cost against threshold (validation period)")
    ax.set_xlabel("threshold (alert when score >= threshold, log scale)")
    ax.set_ylabel("cost (Amount currency)")
    ax.legend()
    return fig


def reliability(tables: Mapping[str, pd.DataFrame]) -> Figure:
    """Reliability curves (:func:`fraudkit.evaluate.reliability_table`), log-log."""
    fig = Figure(figsize=(5.5, 5), layout="constrained")
    ax = fig.add_subplot()
    ax.plot([1e-5, 1], [1e-5, 1], color="grey", linestyle=":", label="perfectly calibrated")
    for name, table in tables.items():
        floor = np.maximum(table["fraud_rate"], 1e-5)  # an empty bin shows at the floor
        ax.plot(table["mean_score"].clip(lower=1e-5), floor, marker="o", label=name)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_title("Reliability on the test period")
    ax.set_xlabel("mean score in bin")
    ax.set_ylabel("observed fraud rate in bin")
    ax.legend()
    return fig


def _capture(draw: Callable[[], Any], title: str, size: tuple[float, float]) -> Figure:
    """Run a ``shap.plots`` call on a fresh pyplot figure; return it, detached from pyplot."""
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=size)
    try:
        draw()
        fig = plt.gcf()
        ax = fig.axes[0]
        ax.set_title(title)
        if not ax.get_ylabel():
            ax.set_ylabel("feature")
        if not ax.get_xlabel():
            ax.set_xlabel("log-odds of fraud (contributions from the base value)")
    finally:
        plt.close(fig)
    return fig


def shap_beeswarm(explanation: Any, max_display: int = 12) -> Figure:
    """SHAP beeswarm: each dot a transaction, its colour the feature's value."""
    import shap

    return _capture(
        lambda: shap.plots.beeswarm(explanation, max_display=max_display, show=False),
        "SHAP: how each feature moves the score (test period)",
        (8, 6),
    )


def shap_bar(explanation: Any, max_display: int = 12) -> Figure:
    """SHAP global importance: mean absolute contribution per feature."""
    import shap

    return _capture(
        lambda: shap.plots.bar(explanation, max_display=max_display, show=False),
        "SHAP: mean |contribution| per feature (test period)",
        (8, 5),
    )


def shap_waterfall(explanation: Any, title: str, max_display: int = 10) -> Figure:
    """SHAP waterfall of one transaction: from the base log-odds to its score."""
    import shap

    return _capture(
        lambda: shap.plots.waterfall(explanation, max_display=max_display, show=False),
        title,
        (8, 5),
    )
