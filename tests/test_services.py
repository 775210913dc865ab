"""The embedded services as `fraudkit up/down/status` run them: real processes, real ports."""

import socket

import numpy as np
import pandas as pd
import pytest

from fraudkit.config import read_state, with_service_endpoints
from fraudkit.kafka_io import KafkaUnavailableError, produce_transactions, read_json_topic
from fraudkit.schema import LABEL, RAW_FEATURES, tx_id_for_row
from fraudkit.services import down, pid_alive, status, up
from tests.conftest import make_settings

pytestmark = [pytest.mark.kafka, pytest.mark.service]


def _frame(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(n, len(RAW_FEATURES))), columns=list(RAW_FEATURES))
    frame["Amount"] = frame["Amount"].abs()
    frame.insert(0, "tx_id", tx_id_for_row(np.arange(n)))
    frame[LABEL] = (np.arange(n) % 50 == 0).astype("int8")
    return frame


def test_up_is_idempotent_and_down_stops_exactly_its_pids(tmp_path):
    settings = make_settings(tmp_path / "runs")
    messages: list[str] = []
    first = up(settings, names=("kafka", "moto"), say=messages.append)
    pids = {name: info["pid"] for name, info in first.items()}
    try:
        assert all(pid_alive(pid) for pid in pids.values())
        again = up(settings, names=("kafka", "moto"), say=messages.append)
        assert {n: i["pid"] for n, i in again.items()} == pids
        assert sum("already running" in m for m in messages) == 2
        rows = {r["name"]: r for r in status(settings)}
        assert rows["kafka"]["healthy"] and rows["moto"]["healthy"]
        assert not rows["llm"]["healthy"]
    finally:
        stopped = down(settings, say=messages.append)
    assert stopped == ["kafka", "moto"]
    assert not any(pid_alive(pid) for pid in pids.values())
    assert read_state(settings.run_dir) == {}


def test_a_taken_port_is_replaced_and_said(tmp_path):
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    taken = blocker.getsockname()[1]
    settings = make_settings(tmp_path / "runs", services={"moto_port": taken})
    messages: list[str] = []
    try:
        state = up(settings, names=("moto",), say=messages.append)
        assert state["moto"]["port"] != taken
        assert any(f"port {taken}" in m and "taken" in m for m in messages)
    finally:
        down(settings, say=messages.append)
        blocker.close()


def test_an_external_endpoint_starts_nothing(tmp_path):
    settings = make_settings(tmp_path / "runs", kafka={"bootstrap_servers": "127.0.0.1:1"})
    messages: list[str] = []
    state = up(settings, names=("kafka",), say=messages.append)
    assert "kafka" not in state
    assert any("external" in m for m in messages)


def test_producer_sends_features_and_labels_apart(live_services):
    settings = live_services.model_copy(
        update={
            "kafka": live_services.kafka.model_copy(
                update={"topic": "t_produce", "labels_topic": "t_labels", "dlq_topic": "t_dlq"}
            )
        }
    )
    frame = _frame(1200)
    report = produce_transactions(frame, settings)
    assert report.transactions == 1200 and report.labels == 1200
    sent = read_json_topic(settings, "t_produce")
    assert sorted(sent["tx_id"]) == sorted(frame["tx_id"])
    assert LABEL not in sent.columns
    assert sent["_partition"].nunique() == settings.kafka.partitions
    labels = read_json_topic(settings, "t_labels")
    merged = labels.merge(frame[["tx_id", LABEL]], on="tx_id", suffixes=("", "_true"))
    assert len(merged) == 1200 and (merged[LABEL] == merged[f"{LABEL}_true"]).all()


def test_no_broker_is_a_clear_error(tmp_path):
    settings = with_service_endpoints(make_settings(tmp_path / "runs"))
    with pytest.raises(KafkaUnavailableError, match="fraudkit up"):
        produce_transactions(_frame(3), settings)
