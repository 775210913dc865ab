"""One micro-batch, from raw Kafka rows to scored rows, dead letters and alerts.

``score_batch`` is core code: a pandas frame of Kafka-shaped rows (key, value, partition,
offset, timestamp) in, plain frames out; it knows no Spark, HTTP or AWS and is what both the
Spark stream and the tests call. ``BatchSink`` is the edge: it writes the lake idempotently per
batch, sends dead letters to their topic, asks the LLM service once per batch and invokes the
alert handler once per batch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fraudkit.config import Settings
from fraudkit.schema import AMOUNT, ID, TIME, parse_messages

log = logging.getLogger(__name__)

KAFKA_COLUMNS = ("key", "value", "partition", "offset", "timestamp")


@dataclass
class BatchResult:
    """What one micro-batch produced."""

    batch_id: int
    scored: pd.DataFrame
    dead_letters: pd.DataFrame
    seconds: float = 0.0
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def flagged(self) -> pd.DataFrame:
        """The scored rows over the threshold."""
        return self.scored[self.scored["flagged"]]


def _text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", errors="replace")
    return str(value)


def score_batch(
    raw: pd.DataFrame, artifact: Any, batch_id: int, threshold: float | None = None
) -> BatchResult:
    """Parse, validate, featurise and score one batch of Kafka rows.

    Args:
        raw: one row per Kafka record with ``key``, ``value`` (bytes or str), ``partition``,
            ``offset`` and ``timestamp``.
        artifact: a loaded ``fraudkit.model.ModelArtifact``.
        batch_id: the micro-batch id (recorded on every output row).
        threshold: flag at this score instead of the artifact's threshold.

    Returns:
        Scored rows (tx_id, the raw features, score, flagged, threshold, Kafka coordinates) and
        dead letters (the original value, its coordinates and the reason it was refused).
    """
    started = time.perf_counter()
    missing = [c for c in KAFKA_COLUMNS if c not in raw.columns]
    if missing:
        raise ValueError(f"batch is missing Kafka columns: {', '.join(missing)}")
    raw = raw.reset_index(drop=True)
    values = [v if isinstance(v, (bytes, str)) or v is None else _text(v) for v in raw["value"]]
    parsed, rejected = parse_messages(values)
    now = pd.Timestamp(datetime.now(UTC))
    coords = raw.loc[parsed["_index"].to_numpy(), ["partition", "offset", "timestamp"]]
    scored = parsed.drop(columns="_index").reset_index(drop=True)
    if len(scored):
        scores = artifact.predict_proba(scored)
    else:
        scores = np.empty(0, dtype="float64")
    scored["score"] = scores.astype("float64")
    cut = float(artifact.threshold if threshold is None else threshold)
    scored["threshold"] = cut
    scored["flagged"] = scored["score"] >= cut
    scored["model_id"] = artifact.model_id
    scored["kafka_partition"] = coords["partition"].to_numpy().astype("int32")
    scored["kafka_offset"] = coords["offset"].to_numpy().astype("int64")
    scored["kafka_timestamp"] = pd.to_datetime(coords["timestamp"].to_numpy(), utc=True)
    scored["scored_at"] = now
    scored["batch_id"] = np.int64(batch_id)

    bad_index = [r.index for r in rejected]
    dead = pd.DataFrame(
        {
            "key": [_text(k) for k in raw.loc[bad_index, "key"]],
            "value": [_text(v) for v in raw.loc[bad_index, "value"]],
            "reason": [r.reason for r in rejected],
            "source_partition": raw.loc[bad_index, "partition"].to_numpy().astype("int32"),
            "source_offset": raw.loc[bad_index, "offset"].to_numpy().astype("int64"),
            "batch_id": np.full(len(rejected), batch_id, dtype="int64"),
            "failed_at": [now] * len(rejected),
        }
    )
    seconds = time.perf_counter() - started
    stats = {
        "batch_id": batch_id,
        "rows": int(len(raw)),
        "scored": int(len(scored)),
        "flagged": int(scored["flagged"].sum()),
        "dead_letters": int(len(dead)),
        "score_seconds": seconds,
    }
    return BatchResult(batch_id, scored, dead, seconds, stats)


def explain_items(result: BatchResult, artifact: Any, top_k: int) -> list[dict[str, Any]]:
    """The LLM service's input for the flagged rows: score, amount and top-k contributions."""
    from fraudkit.explain import top_contributions

    flagged = result.flagged
    if flagged.empty:
        return []
    contributions = top_contributions(artifact, flagged, k=top_k)
    return [
        {
            "tx_id": str(row[ID]),
            "score": float(row["score"]),
            "threshold": float(row["threshold"]),
            "amount": float(row[AMOUNT]),
            "contributions": contribs,
        }
        for row, contribs in zip(flagged.to_dict("records"), contributions, strict=True)
    ]


def alert_event(
    items: list[dict[str, Any]], explanations: list[Any], flagged: pd.DataFrame, batch_id: int
) -> dict[str, Any]:
    """The alert Lambda's event: one alert per flagged row with its explanation."""
    times = dict(zip(flagged[ID].astype(str), flagged[TIME].astype(float), strict=True))
    alerts = []
    for item, explanation in zip(items, explanations, strict=True):
        alerts.append(
            {
                "tx_id": item["tx_id"],
                "score": item["score"],
                "threshold": item["threshold"],
                "amount": item["amount"],
                "time": times[item["tx_id"]],
                "reason": explanation.reason,
                "actions": list(explanation.actions),
                "confidence": float(explanation.confidence),
                "provider": explanation.provider,
                "top_features": item["contributions"],
            }
        )
    return {"alerts": alerts, "batch_id": batch_id}


def write_partition(frame: pd.DataFrame, folder: Path, batch_id: int) -> Path | None:
    """Write one batch's rows to ``folder/batch_id=N/``, replacing what a replay left there.

    Spark may run a batch again after a crash; it is the same rows (the offsets are in the
    checkpoint), so replacing the folder keeps the lake exactly-once.
    """
    target = folder / f"batch_id={batch_id}"
    if frame.empty:
        if target.exists():
            shutil.rmtree(target)
        return None
    staging = folder / f".staging-batch_id={batch_id}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    frame.drop(columns=["batch_id"], errors="ignore").to_parquet(
        staging / "part-0.parquet", index=False
    )
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)
    return target


class BatchSink:
    """The foreachBatch sink: score, store, dead-letter, explain and alert, per micro-batch.

    Create one per query: it keeps the DLQ producer and the LLM client across batches, and
    builds nothing per row.
    """

    def __init__(self, settings: Settings, artifact: Any, *, alerts: bool = True) -> None:
        self.settings = settings
        self.artifact = artifact
        self.alerts = alerts
        self.history: list[dict[str, Any]] = []
        self._producer: Any = None
        self._llm: Any = None
        # One checkpoint is one query: with the batch id it names a batch across restarts.
        checkpoint = str(settings.stream.checkpoint_dir).encode()
        self._query_key = "stream-" + hashlib.sha256(checkpoint).hexdigest()[:16]

    def __call__(self, batch_df: Any, batch_id: int) -> None:
        """Spark's foreachBatch entry: one action (toArrow), then the pandas core."""
        started = time.perf_counter()
        table = batch_df.select(*KAFKA_COLUMNS).toArrow()  # the Kafka read happens here
        read_seconds = time.perf_counter() - started
        result = self.handle(table.to_pandas(), batch_id)
        result.stats["read_seconds"] = read_seconds
        result.stats["seconds"] += read_seconds

    def handle(self, raw: pd.DataFrame, batch_id: int) -> BatchResult:
        """Process one batch of Kafka-shaped rows; safe to call again with the same batch."""
        started = time.perf_counter()
        result = score_batch(raw, self.artifact, batch_id, self.settings.stream.threshold)
        stream = self.settings.stream
        write_partition(result.scored, stream.output_dir, batch_id)
        write_partition(result.dead_letters, stream.dlq_dir, batch_id)
        if not result.dead_letters.empty:
            self._send_dead_letters(result.dead_letters)
        if self.alerts and not result.flagged.empty:
            result.stats.update(self._explain_and_alert(result))
        result.stats["seconds"] = time.perf_counter() - started
        self.history.append(result.stats)
        log.info("batch %s: %s", batch_id, result.stats)
        return result

    def _send_dead_letters(self, dead: pd.DataFrame) -> None:
        from fraudkit.kafka_io import make_producer

        if self._producer is None:
            self._producer = make_producer(self.settings)
        topic = self.settings.kafka.dlq_topic
        for row in dead.to_dict("records"):
            body = {
                k: (v.isoformat() if isinstance(v, pd.Timestamp) else v) for k, v in row.items()
            }
            body["source_topic"] = self.settings.kafka.topic
            key = f"{body['source_partition']}:{body['source_offset']}".encode()
            self._producer.send(topic, key=key, value=json.dumps(body, default=str).encode())
        self._producer.flush()

    def _explain_and_alert(self, result: BatchResult) -> dict[str, Any]:
        from fraudkit.alerts import invoke_alert_handler
        from fraudkit.llm import ExplainItem, ExplanationClient

        if self._llm is None:
            self._llm = ExplanationClient(self.settings.llm.url, self.settings.llm.timeout_s)
        items = explain_items(result, self.artifact, self.settings.llm.top_k)
        t0 = time.perf_counter()
        explanations = self._llm.explain([ExplainItem.model_validate(i) for i in items])
        explain_s = time.perf_counter() - t0
        event = alert_event(items, explanations, result.flagged, result.batch_id)
        event["attempt"] = f"{self._query_key}#{result.batch_id}"
        t0 = time.perf_counter()
        try:
            outcome = invoke_alert_handler(event, self.settings)
            error = None
        except Exception as exc:  # the stream goes on; the failure is recorded in the lake
            # AlertDeliveryError carries the per-alert result: the ones sent stay "sent".
            outcome = getattr(exc, "result", None) or {}
            error = f"{type(exc).__name__}: {exc}"
            log.error("batch %s: alert handler failed: %s", result.batch_id, error)
        alert_s = time.perf_counter() - t0
        statuses = {r.get("tx_id"): r.get("status") for r in outcome.get("results", [])}
        alerts = pd.DataFrame(
            {
                ID: [a["tx_id"] for a in event["alerts"]],
                "score": [a["score"] for a in event["alerts"]],
                "reason": [a["reason"] for a in event["alerts"]],
                "actions": [json.dumps(a["actions"]) for a in event["alerts"]],
                "confidence": [a["confidence"] for a in event["alerts"]],
                "provider": [a["provider"] for a in event["alerts"]],
                "explanation_fallback": [bool(e.fallback) for e in explanations],
                "alert_status": [statuses.get(a["tx_id"], "failed") for a in event["alerts"]],
                "alert_error": [error] * len(event["alerts"]),
                "batch_id": result.batch_id,
            }
        )
        write_partition(alerts, self.settings.stream.alerts_dir, result.batch_id)
        return {
            "explained": len(explanations),
            "explain_seconds": explain_s,
            "alert_seconds": alert_s,
            "alert_error": error,
        }

    def close(self) -> None:
        """Close the DLQ producer and the LLM client."""
        if self._producer is not None:
            self._producer.close()
            self._producer = None
        if self._llm is not None:
            self._llm.close()
            self._llm = None


def read_lake(folder: Path) -> pd.DataFrame:
    """All batches written under ``folder`` as one frame (empty when there are none)."""
    parts = sorted(folder.glob("batch_id=*/*.parquet"))
    if not parts:
        return pd.DataFrame()
    frames = []
    for part in parts:
        frame = pd.read_parquet(part)
        frame["batch_id"] = int(part.parent.name.split("=", 1)[1])
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)
