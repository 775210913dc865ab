"""Splits, thresholds, metrics, the model artifact and the explanations' numbers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score

from fraudkit import model as model_module
from fraudkit.config import ModelSettings, load_settings
from fraudkit.data import legit_weights, load_transactions
from fraudkit.evaluate import (
    average_precision,
    average_precision_interval,
    calibration_summary,
    expected_cost,
    precision_at_k,
    reliability_table,
    separation_table,
    threshold_curve,
)
from fraudkit.explain import top_contributions
from fraudkit.features import FEATURE_COLUMNS, build_features
from fraudkit.model import (
    ArtifactError,
    ModelArtifact,
    choose_threshold,
    ensure_model,
    fit_platt,
    random_split,
    time_split,
    train_logistic,
    train_model,
)
from fraudkit.schema import ID, LABEL

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sample() -> pd.DataFrame:
    return load_transactions("sample")


@pytest.fixture(scope="module")
def artifact(sample: pd.DataFrame) -> ModelArtifact:
    return train_model(sample, settings=ModelSettings(), n_boot=200)


@pytest.fixture
def saved(artifact: ModelArtifact, tmp_path: Path) -> Path:
    return artifact.save(tmp_path / "model")


# --- splits ---------------------------------------------------------------------------------


@pytest.mark.unit
def test_time_split_is_ordered_and_keeps_ties_together(sample: pd.DataFrame) -> None:
    split = time_split(sample)
    assert split.train["Time"].max() < split.valid["Time"].min() == split.boundaries[0]
    assert split.valid["Time"].max() < split.test["Time"].min() == split.boundaries[1]
    assert len(split.train) + len(split.valid) + len(split.test) == len(sample)
    assert len(split.train) / len(sample) == pytest.approx(0.6, abs=0.01)
    assert split.test.attrs["legit_sample_rate"] == sample.attrs["legit_sample_rate"]

    times = pd.DataFrame({"Time": [0, 1, 2, 3, 3, 3, 4, 5, 6, 7], LABEL: 0})
    tied = time_split(times, (0.4, 0.3, 0.3))  # the cut at row 4 falls inside the 3s
    assert tied.train["Time"].tolist() == [0, 1, 2]
    assert tied.valid["Time"].tolist() == [3, 3, 3, 4]
    assert tied.boundaries == (3.0, 5.0)


@pytest.mark.unit
def test_random_split_is_stratified_and_disjoint(sample: pd.DataFrame) -> None:
    split = random_split(sample, seed=1)
    ids = [set(part[ID]) for part in (split.train, split.valid, split.test)]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert set().union(*ids) == set(sample[ID])
    assert [int(p[LABEL].sum()) for p in (split.train, split.valid, split.test)] == [295, 99, 98]
    assert split.boundaries is None


# --- threshold ------------------------------------------------------------------------------

Y = np.array([1, 0, 1, 0])
SCORES = np.array([0.9, 0.8, 0.3, 0.1])
AMOUNTS = np.array([100.0, 50.0, 20.0, 10.0])


@pytest.mark.unit
def test_cost_threshold_minimises_missed_amount_plus_reviews() -> None:
    # Costs: none 120, top1 20+5, top2 20+10, top3 0+15, all 0+20 -> flag the top 3.
    choice = choose_threshold(Y, SCORES, AMOUNTS, strategy="cost", review_cost=5.0)
    assert choice.threshold == pytest.approx(0.2)  # midway between 0.3 and 0.1
    assert choice.expected_cost == 15.0
    assert (choice.alerts, choice.recall, choice.precision) == (3.0, 1.0, pytest.approx(2 / 3))
    # Each legit row standing for 10: top1 25, top2 75, top3 60, none 120, all 110.
    weighted = choose_threshold(
        Y, SCORES, AMOUNTS, review_cost=5.0, weights=np.where(Y == 1, 1.0, 10.0)
    )
    assert weighted.threshold == pytest.approx(0.85)
    assert weighted.expected_cost == 25.0
    # Expensive reviews: alerting on nothing is cheapest, and the threshold is above every score.
    nothing = choose_threshold(Y, SCORES, AMOUNTS, review_cost=1000.0)
    assert nothing.threshold > 0.9 and nothing.alerts == 0 and nothing.expected_cost == 120.0


@pytest.mark.unit
def test_budget_threshold_takes_the_highest_recall_within_budget() -> None:
    y = np.array([1, 0, 1, 0, 1])
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    amounts = np.ones(5)
    choice = choose_threshold(
        y, scores, amounts, strategy="budget", alerts_per_day=1.5, days=2.0
    )  # at most 3 alerts in 2 days
    assert choice.threshold == pytest.approx(0.65)
    assert choice.recall == pytest.approx(2 / 3) and choice.alerts_per_day == 1.5
    none = choose_threshold(y, scores, amounts, strategy="budget", alerts_per_day=0.4, days=2.0)
    assert none.alerts == 0 and none.threshold > 0.9
    tied = choose_threshold(
        np.array([1, 0, 0]),
        np.array([0.9, 0.9, 0.1]),
        np.ones(3),
        strategy="budget",
        alerts_per_day=1,
        days=1,
    )  # the two tied rows go together or not at all: 2 alerts exceed the budget
    assert tied.alerts == 0


# --- metrics --------------------------------------------------------------------------------


@pytest.mark.unit
def test_average_precision_matches_sklearn_with_ties_and_weights() -> None:
    rng = np.random.default_rng(3)
    y = (rng.random(2000) < 0.05).astype(int)
    scores = np.round(rng.random(2000) * 0.5 + y * rng.random(2000) * 0.5, 2)  # many ties
    weights = np.where(y == 1, 1.0, 10.0)
    assert average_precision(y, scores) == pytest.approx(average_precision_score(y, scores))
    assert average_precision(y, scores, weights) == pytest.approx(
        average_precision_score(y, scores, sample_weight=weights)
    )
    a = average_precision_interval(y, scores, n_boot=300, seed=5)
    b = average_precision_interval(y, scores, n_boot=300, seed=5)
    assert a == b and a.low < a.value < a.high and a.high - a.low < 0.3


@pytest.mark.unit
def test_precision_at_budget_and_cost_by_hand() -> None:
    times = np.array([0.0, 3600.0, 7200.0, 86_400.0])  # one day
    at_k = precision_at_k(Y, SCORES, times, alerts_per_day=2)
    assert (at_k["k"], at_k["precision"], at_k["recall"]) == (2.0, 0.5, 0.5)
    cost = expected_cost(Y, SCORES, AMOUNTS, threshold=0.5, review_cost=5.0)
    assert cost == {
        "cost": 30.0,
        "missed_fraud_amount": 20.0,
        "review_cost_total": 10.0,
        "alerts": 2.0,
        "cost_without_model": 120.0,
    }


# --- training and the artifact --------------------------------------------------------------


@pytest.mark.unit
def test_class_is_never_a_feature(artifact: ModelArtifact, sample: pd.DataFrame) -> None:
    assert artifact.features == list(FEATURE_COLUMNS) and LABEL not in artifact.features
    rows = sample.iloc[:500]
    flipped = rows.assign(Class=1 - rows[LABEL])
    np.testing.assert_array_equal(
        artifact.predict_proba(rows), artifact.predict_proba(flipped.drop(columns=[LABEL]))
    )


@pytest.mark.unit
def test_training_refuses_a_leaking_feature_function(
    sample: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    def leaky(raw: pd.DataFrame) -> pd.DataFrame:
        return build_features(raw).assign(Class=raw[LABEL])

    monkeypatch.setattr(model_module, "build_features", leaky)
    with pytest.raises(AssertionError, match="leakage"):
        train_model(sample.iloc[:3000], n_boot=10)


@pytest.mark.unit
def test_training_records_threshold_metrics_and_provenance(
    artifact: ModelArtifact, sample: pd.DataFrame
) -> None:
    meta = artifact.metadata
    assert meta["threshold"]["chosen_on"] == "valid" and meta["threshold"]["strategy"] == "cost"
    assert 0 < artifact.threshold < 1 and artifact.threshold != 0.5
    auprc = meta["metrics"]["test"]["auprc"]
    assert auprc["low"] <= auprc["value"] <= auprc["high"]
    assert auprc["value"] > 0.6  # the published range on a time split is ~0.75-0.85
    assert meta["metrics"]["test"]["roc_auc"] > 0.9
    assert meta["legit_sample_rate"] == 0.1 and meta["metrics"]["test"]["weighted"] is True
    assert meta["data"]["rows"] == len(sample)
    assert len(meta["data"]["fingerprint_sha256"]) == 64
    assert meta["split"]["boundaries_s"] == list(time_split(sample).boundaries)
    assert meta["n_trees"] == artifact.booster.num_boosted_rounds()


@pytest.mark.unit
def test_artifact_round_trip_predicts_the_same(
    artifact: ModelArtifact, saved: Path, sample: pd.DataFrame
) -> None:
    loaded = ModelArtifact.load(saved)
    rows = sample.iloc[::7]
    np.testing.assert_array_equal(loaded.predict_proba(rows), artifact.predict_proba(rows))
    assert loaded.threshold == artifact.threshold
    assert loaded.model_id == artifact.model_id and loaded.model_id.startswith("xgb-")
    meta = json.loads((saved / "metadata.json").read_text())  # strict JSON, no NaN
    assert meta["features"] == list(FEATURE_COLUMNS)
    assert meta["feature_version"] == "1" and meta["versions"]["xgboost"]


@pytest.mark.unit
def test_missing_or_corrupt_artifact_is_refused(saved: Path, tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="missing model.json, metadata.json"):
        ModelArtifact.load(tmp_path / "nowhere")
    bad_model = tmp_path / "bad_model"
    shutil.copytree(saved, bad_model)
    (bad_model / "model.json").write_text('{"learner": ')
    with pytest.raises(ArtifactError, match="XGBoost cannot load"):
        ModelArtifact.load(bad_model)
    bad_meta = tmp_path / "bad_meta"
    shutil.copytree(saved, bad_meta)
    (bad_meta / "metadata.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        ModelArtifact.load(bad_meta)


@pytest.mark.unit
def test_feature_mismatch_is_refused(saved: Path) -> None:
    meta_path = saved / "metadata.json"
    meta = json.loads(meta_path.read_text())
    with pytest.raises(ArtifactError, match=r"unexpected \[\], missing \['extra'\]"):
        ModelArtifact.load(saved, expected_features=[*FEATURE_COLUMNS, "extra"])
    swapped = list(FEATURE_COLUMNS)
    swapped[0], swapped[1] = swapped[1], swapped[0]
    meta_path.write_text(json.dumps({**meta, "features": swapped}))
    with pytest.raises(ArtifactError, match="different order"):
        ModelArtifact.load(saved)
    with pytest.raises(ArtifactError, match="disagree on the features"):
        ModelArtifact.load(saved, expected_features=swapped)
    meta_path.write_text(json.dumps({**meta, "feature_version": "0"}))
    with pytest.raises(ArtifactError, match="feature version '0'"):
        ModelArtifact.load(saved)


@pytest.mark.unit
def test_ensure_model_trains_once_then_loads(tmp_path: Path) -> None:
    settings = load_settings(
        ROOT / "config.yaml",
        env={},
        overrides={"model": {"dir": str(tmp_path / "model")}},
        use_state=False,
    )
    first = ensure_model(settings)
    created = first.metadata["created_utc"]
    assert (tmp_path / "model" / "model.json").is_file()
    second = ensure_model(settings)
    assert second.metadata["created_utc"] == created
    assert (
        second.metadata["data"]["fingerprint_sha256"]
        == first.metadata["data"]["fingerprint_sha256"]
    )
    (tmp_path / "model" / "metadata.json").write_text("[]")
    with pytest.raises(ArtifactError):  # a broken model is reported, not silently replaced
        ensure_model(settings)


# --- explanations ---------------------------------------------------------------------------


@pytest.mark.unit
def test_top_contributions_add_up_to_the_margin(
    artifact: ModelArtifact, sample: pd.DataFrame
) -> None:
    frauds = sample[sample[LABEL] == 1].iloc[:20]
    rows = pd.concat([frauds, sample.iloc[:20]])
    everything = top_contributions(artifact, rows, k=len(FEATURE_COLUMNS))
    _, contribs = artifact.contributions(rows)
    bias = contribs[:, -1]
    totals = np.array([sum(item["contribution"] for item in row) for row in everything])
    np.testing.assert_allclose(totals + bias, artifact.predict_margin(rows), atol=1e-4)

    top5 = top_contributions(artifact, rows, k=5)
    features = build_features(rows)
    json.dumps(top5)  # plain Python values
    for i, row in enumerate(top5):
        sizes = [abs(item["contribution"]) for item in row]
        assert len(row) == 5 and sizes == sorted(sizes, reverse=True)
        assert sizes[-1] >= np.sort(np.abs(contribs[i, :-1]))[-5] - 1e-12
        for item in row:
            assert item["value"] == features.iloc[i][item["feature"]]
            expected = "raises risk" if item["contribution"] > 0 else "lowers risk"
            assert item["direction"] == expected
    # For the known frauds, the top features push the score up on balance.
    assert np.mean([sum(d["contribution"] for d in row) > 0 for row in top5[:20]]) > 0.8


# --- baseline, calibration, curves ----------------------------------------------------------


@pytest.mark.unit
def test_logistic_baseline_ranks_frauds_high(sample: pd.DataFrame) -> None:
    split = time_split(sample)
    baseline = train_logistic(split.train)
    scores = baseline.predict_proba(split.test)
    assert scores.shape == (len(split.test),) and ((scores >= 0) & (scores <= 1)).all()
    assert baseline.features == list(FEATURE_COLUMNS)
    y = split.test[LABEL].to_numpy()
    assert average_precision(y, scores, legit_weights(split.test)) > 0.5
    # Balanced class weights push the average score far above the fraud rate.
    assert scores.mean() > 5 * y.mean()
    np.testing.assert_array_equal(  # the label is never read
        scores, baseline.predict_proba(split.test.drop(columns=[LABEL]))
    )


@pytest.mark.unit
def test_platt_calibration_recovers_known_probabilities() -> None:
    rng = np.random.default_rng(0)
    margin = rng.normal(-4, 2, 50_000)
    y = (rng.random(50_000) < 1 / (1 + np.exp(-(0.5 * margin - 1)))).astype(int)
    fit = fit_platt(margin, y)
    assert fit["method"] == "platt"
    assert fit["slope"] == pytest.approx(0.5, abs=0.05)
    assert fit["intercept"] == pytest.approx(-1.0, abs=0.15)
    assert fit_platt(margin, np.zeros_like(y))["method"] == "none"
    assert fit_platt(margin, (margin < -4).astype(int))["method"] == "none"  # reversed ranking


@pytest.mark.unit
def test_artifact_applies_its_calibration(
    artifact: ModelArtifact, saved: Path, sample: pd.DataFrame
) -> None:
    cal = artifact.metadata["calibration"]
    assert cal["method"] == "platt" and cal["fitted_on"] == "valid"
    slope, intercept = artifact.calibration
    rows = sample.iloc[::50]
    raw = artifact.predict_proba(rows, calibrated=False)
    calibrated = artifact.predict_proba(rows)
    raw_logit = np.log(raw / (1 - raw))
    np.testing.assert_allclose(
        np.log(calibrated / (1 - calibrated)), slope * raw_logit + intercept, atol=1e-4
    )
    assert np.array_equal(np.argsort(raw, kind="stable"), np.argsort(calibrated, kind="stable"))
    # On the sample (10% of legit rows) the booster over-states; the calibration pulls it down.
    test = artifact.metadata["metrics"]["test"]["calibration"]
    assert test["mean_score"] == pytest.approx(test["fraud_rate"], rel=0.5)
    assert ModelArtifact.load(saved).calibration == artifact.calibration
    uncalibrated = ModelArtifact(artifact.booster, {**artifact.metadata, "calibration": None})
    np.testing.assert_allclose(uncalibrated.predict_proba(rows), raw, atol=1e-6)


@pytest.mark.unit
def test_threshold_curve_and_calibration_by_hand() -> None:
    curve = threshold_curve(Y, SCORES, AMOUNTS, review_cost=5.0)
    assert curve["cost"].tolist() == [120.0, 25.0, 30.0, 15.0, 20.0]
    assert curve["alerts"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert curve["threshold"].iloc[0] > 0.9 and curve["threshold"].iloc[-1] == 0.1
    table = reliability_table(np.array([0, 0, 1, 1]), np.array([0.05, 0.15, 0.15, 0.95]))
    assert table["rows"].tolist() == [1.0, 2.0, 1.0]
    assert table["fraud_rate"].tolist() == [0.0, 0.5, 1.0]
    summary = calibration_summary(np.array([0, 1]), np.array([0.0, 1.0]))
    assert summary["ece"] == 0.0 and summary["brier"] == 0.0


@pytest.mark.unit
def test_random_split_training_and_separation_table(sample: pd.DataFrame) -> None:
    random_model = train_model(sample, split="random", n_boot=20)
    assert random_model.metadata["split"]["kind"] == "random"
    table = separation_table(sample)
    assert table["feature"].iloc[0] == "V14" and table["ks"].is_monotonic_decreasing
    assert ((table["auc"] >= 0.5) & (table["auc"] <= 1)).all()
