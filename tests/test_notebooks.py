"""Every notebook, executed with papermill on small parameters; recorded results checked.

nbval (``make test`` runs ``pytest --nbval-lax notebooks``) checks separately that each
notebook runs as committed, with its default parameters.
"""

import json
import sys
from pathlib import Path

import papermill
import pytest

from fraudkit.services import free_port

pytestmark = [pytest.mark.notebooks]
NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def run_notebook(name: str, tmp_path: Path, **parameters) -> dict:
    results = tmp_path / f"{name}.results.json"
    papermill.execute_notebook(
        str(NOTEBOOKS / f"{name}.ipynb"),
        str(tmp_path / f"{name}.out.ipynb"),
        parameters={**parameters, "RESULTS_PATH": str(results)},
        cwd=str(NOTEBOOKS),
        kernel_name="python3",
        progress_bar=False,
    )
    return json.loads(results.read_text())


@pytest.fixture
def private_run(tmp_path, monkeypatch):
    """The notebook kernel inherits these: its own run folder, model and free ports."""
    monkeypatch.setenv("FRAUDKIT_RUN_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("FRAUDKIT_MODEL__DIR", str(tmp_path / "runs" / "model"))
    monkeypatch.setenv("PYSPARK_PYTHON", sys.executable)
    for name in ("KAFKA", "MOTO", "LLM"):
        monkeypatch.setenv(f"FRAUDKIT_SERVICES__{name}_PORT", str(free_port()))
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "AWS_ENDPOINT_URL", "FRAUDKIT_LLM_URL"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def test_00_quickstart(private_run):
    r = run_notebook("00_quickstart", private_run, LIMIT=800)
    assert r["produced"] == 800
    assert r["scored"] == 800
    assert r["duplicates"] == 0 and r["missing"] == 0
    assert r["dead_letters"] == 5
    assert r["flagged"] > 0 and r["alerts_sent"] == r["flagged"]
    assert r["recall"] == pytest.approx(0.8, abs=0.2)
