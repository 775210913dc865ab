"""The end-to-end demo: services up, replay, stream, explain, alert, then what happened.

``run_demo`` is what ``make demo``, ``fraudkit demo``, the quick-start notebook and the
end-to-end test all call. Every number in its summary is read back from where the pipeline
left it: the lake, the labels topic, the DLQ and the mail moto really sent.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fraudkit.config import Settings, with_service_endpoints
from fraudkit.schema import ID, LABEL

#: Malformed messages the demo injects to show the dead-letter path: (description, value).
BAD_MESSAGES: tuple[tuple[str, bytes | None], ...] = (
    ("not JSON", b"{this is not json"),
    ("a JSON list", b"[1, 2, 3]"),
    ("missing fields", b'{"tx_id": "bad-1", "Time": 1.0, "Amount": 3.5}'),
    ("a text amount", json.dumps({"tx_id": "bad-2", "Amount": "12,50"}).encode()),
    ("no value", None),
)


@dataclass
class DemoRun:
    """Where one demo run keeps its checkpoint, lake and report."""

    folder: Path
    settings: Settings


def prepare_run(settings: Settings, name: str | None = None) -> DemoRun:
    """Settings for a fresh run folder under ``run_dir/demo/``: new checkpoint and lake."""
    stamp = name or datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    folder = settings.run_dir / "demo" / stamp
    stream = settings.stream.model_copy(
        update={
            "checkpoint_dir": folder / "checkpoint",
            "output_dir": folder / "lake" / "scored",
            "dlq_dir": folder / "lake" / "dlq",
            "alerts_dir": folder / "lake" / "alerts",
        }
    )
    return DemoRun(folder, settings.model_copy(update={"stream": stream}))


def replay_period(frame: pd.DataFrame, artifact: Any, period: str = "test") -> pd.DataFrame:
    """The rows to replay: the model's test period (never seen in training) or all of them.

    Replaying the training period would score transactions the model learned from and make
    precision and recall look better than production would see.
    """
    if period == "all":
        return frame
    if period != "test":
        raise ValueError(f"period must be 'test' or 'all', not {period!r}")
    bounds = (artifact.metadata.get("split") or {}).get("boundaries_s")
    if not bounds:
        raise ValueError("the model records no time split, so it has no test period: use 'all'")
    return frame[frame["Time"] >= bounds[1]].reset_index(drop=True)


def topic_ends(settings: Settings, topic: str) -> dict[str, int]:
    """The current end offset of every partition of ``topic`` (Spark's JSON offsets form)."""
    from kafka import KafkaConsumer, TopicPartition

    from fraudkit.kafka_io import bootstrap, end_offsets

    consumer = KafkaConsumer(bootstrap_servers=bootstrap(settings), enable_auto_commit=False)
    try:
        parts = sorted(consumer.partitions_for_topic(topic) or [])
        ends = end_offsets(consumer, [TopicPartition(topic, p) for p in parts])
        return {str(tp.partition): int(off) for tp, off in ends.items()}
    finally:
        consumer.close()


def flag_quality(scored: pd.DataFrame, labels: pd.DataFrame) -> dict[str, Any]:
    """Precision and recall of the flags against the delayed labels (joined on tx_id)."""
    if scored.empty or labels.empty:
        return {"labelled": 0, "precision": None, "recall": None}
    joined = scored[[ID, "flagged"]].merge(
        labels[[ID, LABEL]].drop_duplicates(ID), on=ID, how="inner"
    )
    truth = joined[LABEL].astype(int).to_numpy() == 1
    flags = joined["flagged"].to_numpy(dtype=bool)
    tp = int((truth & flags).sum())
    return {
        "labelled": int(len(joined)),
        "frauds": int(truth.sum()),
        "flagged": int(flags.sum()),
        "true_positives": tp,
        "precision": tp / int(flags.sum()) if flags.any() else None,
        "recall": tp / int(truth.sum()) if truth.any() else None,
    }


def latency_seconds(scored: pd.DataFrame) -> dict[str, float | None]:
    """Produce-to-sink latency: scored_at minus the Kafka record timestamp."""
    if scored.empty:
        return {"p50": None, "p95": None, "p99": None}
    delta = (scored["scored_at"] - scored["kafka_timestamp"]).dt.total_seconds().to_numpy()
    return {f"p{q}": float(np.percentile(delta, q)) for q in (50, 95, 99)}


def summarise(
    run: DemoRun,
    *,
    produced_ids: pd.Series,
    bad_sent: int,
    stream_report: Any,
    produce_report: Any,
    period: str = "test",
) -> dict[str, Any]:
    """Read back what the pipeline left and put it in one dict."""
    from fraudkit.alerts import sent_messages
    from fraudkit.kafka_io import read_json_topic
    from fraudkit.pipeline import read_lake

    settings = run.settings
    scored = read_lake(settings.stream.output_dir)
    dead = read_lake(settings.stream.dlq_dir)
    alerts = read_lake(settings.stream.alerts_dir)
    labels = read_json_topic(settings, settings.kafka.labels_topic)
    if not labels.empty:
        labels = labels[labels[ID].isin(set(produced_ids))]
    ids = scored[ID] if not scored.empty else pd.Series(dtype="string")
    produced = set(produced_ids)
    sent = [
        m
        for m in sent_messages(settings)
        if any(t in m.get("body", "") for t in _alert_ids(alerts))
    ]
    busy = max(sum(b["seconds"] for b in stream_report.batches), 1e-9)
    return {
        "run_folder": str(run.folder),
        "produced": len(produced),
        "replayed_period": period,
        "produce_rate_per_s": round(produce_report.rate, 1),
        "bad_messages_sent": bad_sent,
        "batches": len(stream_report.batches),
        "scored": int(len(scored)),
        "scored_distinct": int(ids.nunique()),
        "duplicates": int(len(ids) - ids.nunique()),
        "missing": len(produced - set(ids)),
        "flagged": int(scored["flagged"].sum()) if not scored.empty else 0,
        "alerts_recorded": int(len(alerts)),
        "alerts_sent": len(sent),
        "dead_letters": int(len(dead)),
        "dead_letter_reasons": sorted(set(dead["reason"])) if not dead.empty else [],
        "quality": flag_quality(scored, labels),
        "throughput_rows_per_s": round(stream_report.rows / busy, 1),
        "stream_seconds": round(stream_report.seconds, 2),
        "spark_startup_seconds": round(stream_report.startup_seconds, 2),
        "latency_s": latency_seconds(scored),
        "micro_batches": stream_report.batches,
    }


def _alert_ids(alerts: pd.DataFrame) -> list[str]:
    return [] if alerts.empty else list(alerts[ID].astype(str))


def write_artifacts(run: DemoRun, summary: dict[str, Any]) -> dict[str, str]:
    """The summary as JSON and one rendered alert e-mail, next to the run's lake."""
    from fraudkit.alerts import render_alert
    from fraudkit.pipeline import read_lake

    run.folder.mkdir(parents=True, exist_ok=True)
    paths = {"summary": str(run.folder / "summary.json")}
    (run.folder / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    alerts = read_lake(run.settings.stream.alerts_dir)
    scored = read_lake(run.settings.stream.output_dir)
    if not alerts.empty:
        first = alerts.sort_values("score", ascending=False).iloc[0]
        row = scored[scored[ID] == first[ID]].iloc[0]
        from fraudkit.explain import top_contributions
        from fraudkit.model import ModelArtifact

        artifact = ModelArtifact.load(run.settings.model.dir)
        top = top_contributions(
            artifact, scored[scored[ID] == first[ID]], k=run.settings.llm.top_k
        )[0]
        rendered = render_alert(
            {
                "tx_id": str(first[ID]),
                "score": float(first["score"]),
                "threshold": float(row["threshold"]),
                "amount": float(row["Amount"]),
                "time": float(row["Time"]),
                "reason": str(first["reason"]),
                "actions": json.loads(first["actions"]),
                "confidence": float(first["confidence"]),
                "provider": str(first["provider"]),
                "top_features": top,
            }
        )
        (run.folder / "alert_example.html").write_text(rendered.html)
        (run.folder / "alert_example.txt").write_text(
            f"Subject: {rendered.subject}\n\n{rendered.text}"
        )
        paths["alert_example"] = str(run.folder / "alert_example.html")
    return paths


def run_demo(
    settings: Settings,
    *,
    limit: int | None = 2000,
    period: str = "test",
    rate: float | None = None,
    bad: bool = True,
    stop_services: bool = True,
    say: Callable[[str], None] = print,
    spark: Any = None,
) -> dict[str, Any]:
    """Run the whole pipeline on the embedded defaults and return its summary.

    Args:
        settings: loaded with ``use_state=False`` so external endpoints are told apart.
        limit: replay at most this many transactions (None: the whole period).
        period: "test" replays the model's test period (transactions it never trained on);
            "all" replays the whole data source.
        rate: messages per second for the replay (None: as fast as possible).
        bad: also send a few malformed messages, to show the dead-letter queue.
        stop_services: stop the services this run started (those already up stay up).
        say: where progress lines go.
        spark: an existing SparkSession to use (the notebook and tests share one).
    """
    from fraudkit.alerts import provision_local
    from fraudkit.data import load_transactions
    from fraudkit.kafka_io import ensure_topics, produce_transactions, send_raw
    from fraudkit.model import ensure_model
    from fraudkit.services import down, read_state, up
    from fraudkit.stream import run_stream

    already = set(read_state(settings.run_dir))
    state = up(settings, say=say)
    started_here = [n for n in state if n not in already]
    live = with_service_endpoints(settings)
    try:
        if live.mode == "local":
            provision_local(live)
        run = prepare_run(live)
        say(f"run folder: {run.folder}")
        artifact = ensure_model(live)
        threshold = live.stream.threshold
        say(
            f"model: {artifact.model_id}, threshold "
            + (
                f"{threshold:.4f} (configured)"
                if threshold is not None
                else f"{artifact.threshold:.4f} (chosen on validation by "
                f"{artifact.metadata['threshold']['strategy']})"
            )
        )
        frame = replay_period(load_transactions(live.data.source, settings=live), artifact, period)
        frame = frame.iloc[:limit] if limit else frame
        say(
            f"replaying {len(frame)} transactions ({period} period), {int(frame[LABEL].sum())} "
            "of them fraud"
        )
        ensure_topics(live)
        start = {live.kafka.topic: topic_ends(live, live.kafka.topic)}
        sent: dict[str, Any] = {}

        def feed() -> None:
            sent["report"] = produce_transactions(frame, live, rate=rate)
            say(
                f"produced {sent['report'].transactions} transactions in "
                f"{sent['report'].seconds:.1f}s; labels to {live.kafka.labels_topic}"
            )
            if bad:
                sent["bad"] = send_raw(
                    live, live.kafka.topic, [(b"bad", v) for _, v in BAD_MESSAGES]
                )

        report = run_stream(
            run.settings,
            spark=spark,
            artifact=artifact,
            starting_offsets=json.dumps(start),
            feed=feed,
        )
        say(
            f"stream processed {report.rows} records in {len(report.batches)} micro-batches "
            f"({report.seconds - report.startup_seconds:.1f}s after Spark started)"
        )
        produce_report, bad_sent = sent["report"], sent.get("bad", 0)
        summary = summarise(
            run,
            produced_ids=frame[ID],
            bad_sent=bad_sent,
            stream_report=report,
            produce_report=produce_report,
            period=period,
        )
        summary["artifacts"] = write_artifacts(run, summary)
        return summary
    finally:
        if stop_services and started_here:
            down(settings, names=tuple(started_here), say=say)


def format_summary(summary: dict[str, Any]) -> str:
    """The summary as the lines ``make demo`` prints."""
    q = summary["quality"]
    lat = summary["latency_s"]

    def pct(x: float | None) -> str:
        return "n/a" if x is None else f"{100 * x:.1f}%"

    def secs(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.2f}s"

    lines = [
        "fraudkit demo: what happened",
        f"  transactions produced     {summary['produced']:>8}  "
        f"({summary['replayed_period']} period, {summary['produce_rate_per_s']:.0f}/s, "
        "labels on their own topic)",
        f"  malformed messages sent   {summary['bad_messages_sent']:>8}",
        f"  rows scored               {summary['scored']:>8}  in {summary['batches']} batches; "
        f"duplicates {summary['duplicates']}, missing {summary['missing']}",
        f"  flagged                   {summary['flagged']:>8}",
        f"  alerts sent (SES)         {summary['alerts_sent']:>8}  "
        f"(recorded in the lake: {summary['alerts_recorded']})",
        f"  dead letters              {summary['dead_letters']:>8}",
        f"  precision / recall        {pct(q.get('precision')):>8} / {pct(q.get('recall'))}  "
        f"({q.get('true_positives', 0)} of {q.get('frauds', 0)} frauds caught, "
        f"{q.get('labelled', 0)} labels)",
        f"  capacity                  {summary['throughput_rows_per_s']:>8.0f} rows/s "
        "of micro-batch time "
        f"(after {summary['spark_startup_seconds']:.0f}s Spark start-up)",
        f"  latency produce->lake     p50 {secs(lat['p50'])}  p95 {secs(lat['p95'])}  "
        f"p99 {secs(lat['p99'])}",
        f"  run folder                {summary['run_folder']}",
    ]
    for name, path in summary.get("artifacts", {}).items():
        lines.append(f"  {name:<25} {path}")
    return "\n".join(lines)
