"""The plots return titled, labelled figures and leave pyplot's global state alone."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from fraudkit import plots  # noqa: E402
from fraudkit.data import legit_weights, load_transactions  # noqa: E402
from fraudkit.evaluate import reliability_table, threshold_curve  # noqa: E402
from fraudkit.explain import shap_explanation  # noqa: E402
from fraudkit.model import ModelArtifact, train_model  # noqa: E402

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def sample() -> pd.DataFrame:
    return load_transactions("sample").iloc[::4].reset_index(drop=True)


@pytest.fixture(scope="module")
def artifact(sample: pd.DataFrame) -> ModelArtifact:
    return train_model(sample, n_boot=20)


def _check(fig: Figure) -> None:
    assert isinstance(fig, Figure)
    axes = [ax for ax in fig.axes if ax.get_visible() and ax.get_label() != "<colorbar>"]
    assert axes
    title = (fig._suptitle.get_text() if fig._suptitle else "") or axes[0].get_title()
    assert title
    for ax in axes:
        if ax.has_data():
            assert ax.get_xlabel() or ax.get_ylabel(), f"unlabelled axes in {title!r}"
    assert any(ax.get_xlabel() for ax in axes) and any(ax.get_ylabel() for ax in axes)
    fig.canvas.draw()  # renders without a display


def test_data_plots_have_titles_and_labels(sample: pd.DataFrame) -> None:
    before = plt.get_fignums()
    weights = legit_weights(sample)
    figures = [
        plots.class_balance(sample, weights),
        plots.amount_by_class(sample, weights),
        plots.hourly_activity(sample, weights),
        plots.feature_histograms(sample, ["V14", "V10", "V4", "V12"], weights),
    ]
    for fig in figures:
        _check(fig)
    assert plt.get_fignums() == before  # nothing registered with pyplot
    assert "%" in figures[0].axes[0].get_title()
    assert len([ax for ax in figures[3].axes if ax.get_visible()]) == 4


def test_model_plots_have_titles_and_labels(sample: pd.DataFrame, artifact: ModelArtifact) -> None:
    y = sample["Class"].to_numpy()
    scores = artifact.predict_proba(sample)
    weights = legit_weights(sample)
    curve = threshold_curve(y, scores, sample["Amount"], review_cost=5.0, weights=weights)
    figures = [
        plots.cost_curve(curve, artifact.threshold),
        plots.reliability({"model": reliability_table(y, scores, weights)}),
        plots.precision_recall({"model": (y, scores, weights)}),
    ]
    for fig in figures:
        _check(fig)


def test_shap_plots_are_returned_and_closed_in_pyplot(
    sample: pd.DataFrame, artifact: ModelArtifact
) -> None:
    before = plt.get_fignums()
    explanation = shap_explanation(artifact, sample.iloc[:300])
    figures = [
        plots.shap_beeswarm(explanation),
        plots.shap_bar(explanation),
        plots.shap_waterfall(explanation[0], "tx-000000"),
    ]
    for fig in figures:
        _check(fig)
    assert figures[2].axes[0].get_title() == "tx-000000"
    assert plt.get_fignums() == before
    np.testing.assert_allclose(
        explanation.values.sum(axis=1) + explanation.base_values,
        artifact.predict_margin(sample.iloc[:300]),
        atol=1e-4,
    )
