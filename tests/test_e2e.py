"""The demo path end to end: real broker, Spark, explanation service, moto SES."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fraudkit.alerts import sent_messages
from fraudkit.config import with_service_endpoints
from fraudkit.data import load_transactions
from fraudkit.demo import BAD_MESSAGES, format_summary, run_demo
from fraudkit.features import build_features
from fraudkit.kafka_io import read_json_topic
from fraudkit.model import ModelArtifact
from fraudkit.pipeline import read_lake
from fraudkit.schema import RAW_FEATURES
from fraudkit.services import down
from tests.conftest import make_settings

pytestmark = [pytest.mark.e2e, pytest.mark.spark, pytest.mark.kafka, pytest.mark.service]


def test_demo_scores_every_transaction_once_and_really_sends_alerts(tmp_path, spark):
    settings = make_settings(tmp_path / "runs")
    lines: list[str] = []
    try:
        summary = run_demo(settings, limit=1500, say=lines.append, spark=spark, stop_services=False)
        assert summary["produced"] == 1500
        assert summary["scored"] == 1500
        assert summary["duplicates"] == 0 and summary["missing"] == 0
        assert summary["dead_letters"] == len(BAD_MESSAGES)
        live = with_service_endpoints(settings)
        dlq = read_json_topic(live, live.kafka.dlq_topic)
        assert len(dlq) == len(BAD_MESSAGES)
        assert {"not valid JSON", "missing fields", "message has no value"} <= {
            r.split(":")[0] for r in dlq["reason"]
        }
        assert summary["flagged"] > 0
        assert summary["alerts_sent"] == summary["flagged"]
        q = summary["quality"]
        assert q["labelled"] == 1500 and q["frauds"] > 0
        assert q["recall"] is not None and q["recall"] > 0.5
        # the alerts sent by SES name their transactions
        alerts = read_lake(Path(summary["run_folder"]) / "lake" / "alerts")
        mail = sent_messages(live)
        bodies = " ".join(m.get("body", "") for m in mail)
        assert all(tx in bodies for tx in alerts["tx_id"])
        assert "alerts sent" in format_summary(summary)
        # feature parity: the stream saw, featurised and scored each row exactly as offline
        scored = read_lake(Path(summary["run_folder"]) / "lake" / "scored").set_index("tx_id")
        artifact = ModelArtifact.load(settings.model.dir)
        offline = load_transactions("sample").set_index("tx_id").loc[scored.index]
        pd.testing.assert_frame_equal(
            build_features(scored[list(RAW_FEATURES)]), build_features(offline)
        )
        np.testing.assert_allclose(
            scored["score"].to_numpy(), artifact.predict_proba(offline), rtol=0, atol=1e-12
        )
    finally:
        down(settings, say=lines.append)
