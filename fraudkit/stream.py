"""The scoring stream: Spark Structured Streaming from Kafka into ``BatchSink``.

Only this module and ``spark_source`` know that the input is Kafka read by Spark; the batch
logic is ``fraudkit.pipeline``. Offsets live in the checkpoint, the lake is written per batch
id, and alerts are claimed per transaction, so a query killed at any point and started again
from its checkpoint neither loses nor duplicates a transaction.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fraudkit.config import Settings
from fraudkit.pipeline import BatchSink


@dataclass
class StreamReport:
    """What one run of the stream did."""

    batches: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    startup_seconds: float = 0.0

    @property
    def rows(self) -> int:
        """Kafka records processed (scored plus dead letters)."""
        return sum(b["rows"] for b in self.batches)


def start_scoring_query(
    spark: Any,
    settings: Settings,
    sink: BatchSink,
    *,
    available_now: bool = True,
    starting_offsets: str = "earliest",
) -> Any:
    """Start the scoring query.

    Args:
        spark: the SparkSession.
        settings: where to read (kafka.*) and where to checkpoint (stream.checkpoint_dir).
        sink: the foreachBatch sink.
        available_now: process what is in the topic now, then stop (batch-like runs, the demo
            and tests); otherwise run continuously, one micro-batch every
            ``stream.trigger_seconds``.
        starting_offsets: where a new query starts: "earliest", "latest" or Spark's JSON form
            ``{"topic": {"0": 42}}``; a restarted query resumes from its checkpoint instead.
    """
    from fraudkit.spark_source import read_kafka_stream

    frame = read_kafka_stream(spark, settings, starting_offsets=starting_offsets)
    writer = (
        frame.writeStream.foreachBatch(sink)
        .option("checkpointLocation", str(settings.stream.checkpoint_dir))
        .queryName("fraudkit_scoring")
    )
    if available_now:
        writer = writer.trigger(availableNow=True)
    else:
        writer = writer.trigger(processingTime=f"{settings.stream.trigger_seconds} seconds")
    return writer.start()


def run_stream(
    settings: Settings,
    *,
    spark: Any = None,
    artifact: Any = None,
    available_now: bool = True,
    starting_offsets: str = "earliest",
    timeout_s: float | None = None,
    alerts: bool = True,
    feed: Callable[[], Any] | None = None,
) -> StreamReport:
    """Run the scoring stream until the topic is drained (or ``timeout_s`` passes).

    Builds the Spark session and loads (or first trains) the model when they are not given.
    With ``feed``, the query runs continuously while ``feed()`` sends data (the producer, as
    in production: latency then measures the pipeline, not a queue filled beforehand), and
    stops once everything sent has been processed.
    """
    from fraudkit.model import ensure_model
    from fraudkit.spark import build_spark, warm_up_workers

    started = time.perf_counter()
    own_spark = spark is None
    if own_spark:
        spark = build_spark(shuffle_partitions=settings.stream.shuffle_partitions)
    artifact = artifact or ensure_model(settings)
    warm_up_workers(spark)
    sink = BatchSink(settings, artifact, alerts=alerts)
    report = StreamReport(batches=sink.history)
    try:
        query = start_scoring_query(
            spark,
            settings,
            sink,
            available_now=available_now and feed is None,
            starting_offsets=starting_offsets,
        )
        report.startup_seconds = time.perf_counter() - started
        try:
            if feed is not None:
                _wait_until_idle(query)
                feed()
                query.processAllAvailable()
            else:
                # available_now ends by itself when the topic is drained; continuous runs
                # until the timeout or Ctrl-C.
                query.awaitTermination(timeout_s)
        finally:
            if query.isActive:
                query.stop()
        if query.exception() is not None:
            raise RuntimeError(f"the scoring query failed: {query.exception()}")
    finally:
        sink.close()
        if own_spark:
            spark.stop()
    report.seconds = time.perf_counter() - started
    return report


def _wait_until_idle(query: Any, timeout_s: float = 120.0) -> None:
    """Wait until the query has planned its first trigger and waits for data.

    The first trigger pays for Python workers and planning once; feeding only after it makes
    the measured latency the pipeline's, not the start-up's.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and query.isActive:
        status = query.status
        if query.lastProgress is not None or (
            not status["isTriggerActive"] and "Waiting for data" in status["message"]
        ):
            return
        time.sleep(0.2)
