"""Every notebook, executed with papermill on small parameters; recorded results checked.

nbval (``make test`` runs ``pytest --nbval-lax notebooks``) checks separately that each
notebook runs as committed, with its default parameters.
"""

import sys
from pathlib import Path

import pytest

from fraudkit.config import load_settings
from fraudkit.notebook import run_notebook as execute
from fraudkit.services import down, free_port

pytestmark = [pytest.mark.notebooks]
NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def run_notebook(name: str, tmp_path: Path, **parameters) -> dict:
    return execute(NOTEBOOKS / f"{name}.ipynb", tmp_path / f"{name}.out.ipynb", parameters)


@pytest.fixture
def private_run(tmp_path, monkeypatch):
    """The notebook kernel inherits these: its own run folder, model and free ports."""
    monkeypatch.setenv("FRAUDKIT_RUN_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("PYSPARK_PYTHON", sys.executable)
    for name in ("KAFKA", "MOTO", "LLM"):
        monkeypatch.setenv(f"FRAUDKIT_SERVICES__{name}_PORT", str(free_port()))
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "AWS_ENDPOINT_URL", "FRAUDKIT_LLM_URL"):
        monkeypatch.delenv(name, raising=False)
    yield tmp_path
    # A notebook that failed half-way leaves its services up: stop what it recorded.
    down(load_settings(use_state=False), say=lambda _: None)


def test_00_quickstart(private_run):
    r = run_notebook("00_quickstart", private_run, LIMIT=800)
    assert r["produced"] == 800
    assert r["scored"] == 800
    assert r["duplicates"] == 0 and r["missing"] == 0
    assert r["dead_letters"] == 5
    assert r["flagged"] > 0 and r["alerts_sent"] == r["flagged"]
    assert r["recall"] == pytest.approx(0.8, abs=0.2)


def test_01_explore_data(private_run):
    r = run_notebook("01_explore_data", private_run)
    assert (r["rows"], r["frauds"], r["legit_sample_rate"]) == (28924, 492, 0.1)
    assert r["fraud_rate"] == pytest.approx(0.00172, abs=0.00005)  # re-weighted to the full data
    assert r["raw_fraud_rate"] == pytest.approx(10 * r["fraud_rate"], rel=0.02)
    assert r["rows_represented"] == pytest.approx(284_807, rel=0.001)
    assert r["night_fraud_rate"] > 2 * r["day_fraud_rate"]
    assert r["median_amount_fraud"] < r["median_amount_legit"]
    assert r["top_features"][0] == "V14" and {"V10", "V12"} <= set(r["top_features"])
    assert r["leaky_auprc"] == 1.0
    assert r["message_has_class"] is False and r["label_message_refused"] is True


def test_02_train_model_shap(private_run):
    from fraudkit.model import ModelArtifact

    r = run_notebook("02_train_model_shap", private_run)
    auprc = r["test_auprc"]
    assert auprc["value"] == pytest.approx(0.806, abs=0.06)
    assert auprc["low"] <= auprc["value"] <= auprc["high"]
    assert r["logistic_test_auprc"]["value"] == pytest.approx(0.772, abs=0.08)
    assert r["random_split_test_auprc"]["low"] <= r["random_split_test_auprc"]["value"]
    assert r["test_roc_auc"] > 0.95
    threshold = r["threshold"]
    assert threshold["chosen_on"] == "valid" and threshold["strategy"] == "cost"
    assert 0 < threshold["threshold"] < 1 and threshold["threshold"] != 0.5
    assert 0 <= r["test_precision_at_k"]["precision"] <= 1
    assert 0 < r["test_at_threshold"]["recall"] <= 1
    rows = {row["model"]: row for row in r["comparison"]}
    assert set(rows) == {
        "no model",
        "logistic (chosen threshold)",
        "xgboost @ 0.5",
        "xgboost @ chosen threshold",
    }
    assert rows["xgboost @ chosen threshold"]["total_cost"] < 0.6 * rows["no model"]["total_cost"]
    calibration = r["calibration"]
    assert calibration["method"]["method"] == "platt"
    test_cal = calibration["test"]
    assert test_cal["mean_score"] == pytest.approx(test_cal["fraud_rate"], rel=0.5)
    assert calibration["test_uncalibrated"]["mean_score"] > 2 * test_cal["fraud_rate"]
    assert 0 <= test_cal["ece"] < calibration["test_uncalibrated"]["ece"]
    assert r["shap_max_abs_diff"] < 1e-3
    assert len(r["grounding_features"]) == 5
    assert r["training_seconds"] < 60
    assert r["reloaded_same_scores"] is True
    model_dir = Path(r["model_dir"])
    assert model_dir == private_run / "runs" / "model"
    loaded = ModelArtifact.load(model_dir)
    assert loaded.model_id == r["model_id"] and loaded.threshold == threshold["threshold"]
