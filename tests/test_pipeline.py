"""The micro-batch core without Spark or servers: Kafka-shaped rows in, lake rows out."""

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from fraudkit.data import load_transactions
from fraudkit.model import train_model
from fraudkit.pipeline import alert_event, explain_items, read_lake, score_batch, write_partition
from fraudkit.schema import to_messages

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def sample():
    return load_transactions("sample")


@pytest.fixture(scope="module")
def artifact(sample):
    return train_model(sample, n_boot=20)


def kafka_rows(frame: pd.DataFrame, extra: list[bytes | None] = ()) -> pd.DataFrame:
    values = [v for _, v in to_messages(frame)] + list(extra)
    n = len(values)
    return pd.DataFrame(
        {
            "key": [b"k"] * n,
            "value": values,
            "partition": np.arange(n) % 4,
            "offset": np.arange(n),
            "timestamp": [datetime.now(UTC)] * n,
        }
    )


def test_a_batch_is_scored_like_the_offline_model_and_bad_rows_are_dead_letters(sample, artifact):
    frauds = sample[sample["Class"] == 1].head(20)
    legit = sample[sample["Class"] == 0].head(200)
    frame = pd.concat([frauds, legit])
    raw = kafka_rows(frame, [b"{oops", None, b'{"tx_id": "x"}'])
    result = score_batch(raw, artifact, batch_id=3)
    assert len(result.scored) == 220 and len(result.dead_letters) == 3
    np.testing.assert_allclose(result.scored["score"], artifact.predict_proba(frame), atol=1e-12)
    assert list(result.dead_letters["source_offset"]) == [220, 221, 222]
    assert result.dead_letters["reason"].str.len().gt(0).all()
    assert (result.scored["batch_id"] == 3).all()
    assert result.flagged["tx_id"].isin(frauds["tx_id"]).mean() > 0.8
    assert "Class" not in result.scored.columns


def test_a_configured_threshold_overrides_the_models(sample, artifact):
    raw = kafka_rows(sample.head(300))
    everything = score_batch(raw, artifact, 0, threshold=0.0)
    assert everything.flagged.shape[0] == 300
    assert (everything.scored["threshold"] == 0.0).all()
    default = score_batch(raw, artifact, 0)
    assert (default.scored["threshold"] == artifact.threshold).all()


def test_flagged_rows_become_grounded_items_and_an_alert_event(sample, artifact):
    frame = sample[sample["Class"] == 1].head(10)
    result = score_batch(kafka_rows(frame), artifact, 1)
    items = explain_items(result, artifact, top_k=3)
    assert [i["tx_id"] for i in items] == list(result.flagged["tx_id"])
    assert all(len(i["contributions"]) == 3 for i in items)

    class Explained:
        reason, actions, confidence, provider = "because", ["call"], 0.9, "template"

    event = alert_event(items, [Explained()] * len(items), result.flagged, 1)
    assert event["batch_id"] == 1 and len(event["alerts"]) == len(items)
    assert event["alerts"][0]["top_features"] == items[0]["contributions"]


def test_an_empty_batch_writes_nothing(artifact, tmp_path):
    empty = kafka_rows(load_transactions("sample").head(0))
    result = score_batch(empty, artifact, 0)
    assert result.scored.empty and result.dead_letters.empty
    assert write_partition(result.scored, tmp_path, 0) is None
    assert read_lake(tmp_path).empty


def test_writing_a_batch_again_replaces_it(tmp_path):
    first = pd.DataFrame({"tx_id": ["a", "b"], "batch_id": [5, 5]})
    write_partition(first, tmp_path, 5)
    write_partition(first, tmp_path, 5)  # Spark replays a batch after a crash
    write_partition(pd.DataFrame({"tx_id": ["c"], "batch_id": [6]}), tmp_path, 6)
    lake = read_lake(tmp_path)
    assert sorted(lake["tx_id"]) == ["a", "b", "c"]
    assert sorted(lake["batch_id"].unique()) == [5, 6]
