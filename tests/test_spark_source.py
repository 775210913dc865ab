"""The fraudkit_kafka Spark source against a real broker (Tansu) and a real Spark session.

Every query writes through an idempotent sink (foreachBatch overwrites one Parquet folder per
batch_id), so the tests can count exactly what reached it: every id once, none missing. The
broker is private to this module; each test uses its own topic.

Run as a script, this file is the child process of the crash test (see ``_child_main``).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fraudkit.config import Settings
from fraudkit.kafka_io import ensure_topics, send_raw
from fraudkit.spark_source import (
    KAFKA_SCHEMA,
    DataLossError,
    KafkaOffsetRange,
    KafkaStreamReader,
    SourceOptions,
    arrow_schema,
    fair_shares,
    plan_end_offsets,
    read_kafka_stream,
)

# -- fixtures and helpers ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A Tansu broker for this module only; settings point at it."""
    from tests.conftest import running

    with running(tmp_path_factory.mktemp("spark_source") / "runs", "kafka") as settings:
        yield settings


def new_topic(settings: Settings, partitions: int = 4) -> str:
    """A fresh topic with ``partitions`` partitions."""
    name = f"src_{uuid.uuid4().hex[:10]}"
    kafka = settings.kafka.model_copy(update={"partitions": partitions})
    ensure_topics(settings.model_copy(update={"kafka": kafka}), [name])
    return name


def produce(settings: Settings, topic: str, ids: range, pad: int = 0) -> None:
    """One JSON message per id, keyed by the id (so keys spread over the partitions)."""
    filler = "x" * pad
    send_raw(
        settings,
        topic,
        ((str(i).encode(), json.dumps({"id": i, "pad": filler}).encode()) for i in ids),
    )


def idempotent_sink(sink: Path):
    """A foreachBatch function that (re)writes the folder of its batch_id, and nothing else."""

    def write(batch_df: Any, batch_id: int) -> None:
        (
            batch_df.selectExpr(
                "CAST(get_json_object(CAST(value AS STRING), '$.id') AS LONG) AS id",
                "CAST(key AS STRING) AS key",
                "topic",
                "partition",
                "offset",
                "timestamp",
            )
            .write.mode("overwrite")
            .parquet(str(sink / f"batch={batch_id}"))
        )

    return write


def read_sink(sink: Path) -> Any:
    """Everything in the sink as a pandas DataFrame, with the batch number as a column."""
    import pyarrow.dataset as ds

    if not sink.exists():
        import pandas as pd

        return pd.DataFrame(columns=["id", "key", "partition", "offset", "batch"])
    return ds.dataset(str(sink), format="parquet", partitioning="hive").to_table().to_pandas()


def start_query(
    spark: Any,
    settings: Settings,
    topic: str,
    checkpoint: Path,
    sink: Path,
    *,
    max_offsets: int | None = None,
    available_now: bool = False,
    starting_offsets: str = "earliest",
) -> Any:
    """A streaming query from ``topic`` into the idempotent Parquet sink."""
    writer = (
        read_kafka_stream(
            spark,
            settings,
            topic=topic,
            max_offsets_per_trigger=max_offsets,
            starting_offsets=starting_offsets,
        )
        .writeStream.foreachBatch(idempotent_sink(sink))
        .option("checkpointLocation", str(checkpoint))
    )
    if available_now:
        writer = writer.trigger(availableNow=True)
    return writer.start()


def batch_rows(query: Any) -> list[int]:
    """Input rows of each micro-batch that read something."""
    return [p["numInputRows"] for p in query.recentProgress if p["numInputRows"]]


def assert_exactly(frame: Any, expected: range) -> None:
    """Every expected id exactly once, and nothing else."""
    ids = frame["id"].tolist()
    assert len(ids) == len(expected), f"{len(ids)} rows for {len(expected)} ids"
    assert sorted(ids) == list(expected)
    assert not frame.duplicated(["partition", "offset"]).any()


# -- unit tests: offset arithmetic, options, pickling (no broker, no Spark) --------------------


@pytest.mark.unit
def test_fair_shares_spreads_the_budget_and_gives_leftovers_to_busy_partitions() -> None:
    assert fair_shares({"0": 100, "1": 100, "2": 100, "3": 100}, 10) == {
        "0": 2,
        "1": 2,
        "2": 3,
        "3": 3,
    }
    # a small partition takes what it has; the others share the rest
    assert fair_shares({"0": 1, "1": 50, "2": 0}, 21) == {"0": 1, "1": 20, "2": 0}
    assert fair_shares({"0": 3, "1": 4}, 100) == {"0": 3, "1": 4}
    assert sum(fair_shares({str(p): 1000 for p in range(7)}, 1000).values()) == 1000


@pytest.mark.unit
def test_plan_end_offsets_limits_and_keeps_nothing_new_identical() -> None:
    start = {"0": 10, "1": 20}
    assert plan_end_offsets(start, {"0": 110, "1": 120}, max_rows=50) == {"0": 35, "1": 45}
    assert plan_end_offsets(start, {"0": 110, "1": 120}) == {"0": 110, "1": 120}
    # nothing new: the very same object, so Spark sees an equal offset and runs no batch
    assert plan_end_offsets(start, {"0": 10, "1": 20}, max_rows=5) is start


@pytest.mark.unit
def test_plan_end_offsets_reads_a_new_partition_from_zero() -> None:
    planned = plan_end_offsets({"0": 5}, {"0": 5, "1": 7, "10": 1})
    assert planned == {"0": 5, "1": 7, "10": 1}
    assert list(planned) == ["0", "1", "10"]  # numeric order: a stable JSON offset


@pytest.mark.unit
def test_plan_end_offsets_detects_data_loss() -> None:
    with pytest.raises(DataLossError, match="failOnDataLoss"):
        plan_end_offsets({"0": 50}, {"0": 3}, topic="t")
    with pytest.raises(DataLossError, match="no longer exist"):
        plan_end_offsets({"0": 1, "1": 1}, {"0": 1}, topic="t")
    assert plan_end_offsets({"0": 50}, {"0": 3}, fail_on_data_loss=False) == {"0": 3}


@pytest.mark.unit
def test_options_are_checked_with_clear_messages() -> None:
    ok = SourceOptions.parse(
        {"KAFKA.BOOTSTRAP.SERVERS": "h:1", "subscribe": "t", "maxOffsetsPerTrigger": "7"}
    )
    assert (ok.topic, ok.max_offsets_per_trigger, ok.starting_offsets) == ("t", 7, "latest")
    with pytest.raises(ValueError, match="kafka.bootstrap.servers"):
        SourceOptions.parse({"subscribe": "t"})
    with pytest.raises(ValueError, match="exactly one topic"):
        SourceOptions.parse({"kafka.bootstrap.servers": "h:1", "subscribe": "a,b"})
    with pytest.raises(ValueError, match="earliest"):
        SourceOptions.parse(
            {"kafka.bootstrap.servers": "h:1", "subscribe": "t", "startingOffsets": "soon"}
        )


@pytest.mark.unit
def test_json_starting_offsets_are_parsed_per_partition() -> None:
    base = {"kafka.bootstrap.servers": "h:1", "subscribe": "t"}
    ok = SourceOptions.parse({**base, "startingOffsets": '{"t": {"0": 42, "1": -2}}'})
    assert ok.starting_offsets == "positions"
    assert dict(ok.starting_positions or ()) == {"0": 42, "1": -2}
    for bad in ('{"other": {"0": 1}}', '{"t": {"0": -3}}', '{"t": [1]}', "{not json"):
        with pytest.raises(ValueError, match="startingOffsets"):
            SourceOptions.parse({**base, "startingOffsets": bad})


@pytest.mark.unit
def test_arrow_schema_is_exactly_what_spark_expects() -> None:
    from pyspark.sql.pandas.types import to_arrow_schema

    assert arrow_schema().equals(to_arrow_schema(KAFKA_SCHEMA, timezone="UTC"))


class FakeConsumer:
    """Just enough of kafka-python's KafkaConsumer for the driver side of the reader."""

    def __init__(self, topic: str, ends: dict[int, int]) -> None:
        self.topic, self.ends = topic, ends

    def topics(self) -> set[str]:
        return {self.topic}

    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(self.ends)

    def end_offsets(self, tps: list[Any]) -> dict[Any, int]:
        return {tp: self.ends[tp.partition] for tp in tps}

    def beginning_offsets(self, tps: list[Any]) -> dict[Any, int]:
        return {tp: 0 for tp in tps}

    def assign(self, tps: list[Any]) -> None:
        pass

    def seek(self, tp: Any, offset: int) -> None:
        pass

    def poll(self, **_: Any) -> dict:
        return {}

    def highwater(self, tp: Any) -> int:
        return self.ends[tp.partition]

    def close(self) -> None:
        pass


def fake_reader(ends: dict[int, int], **options: str) -> KafkaStreamReader:
    opts = {"kafka.bootstrap.servers": "127.0.0.1:9", "subscribe": "t", **options}
    reader = KafkaStreamReader(SourceOptions.parse(opts))
    reader._consumer = FakeConsumer("t", ends)
    return reader


@pytest.mark.unit
def test_reader_picks_up_a_partition_added_later() -> None:
    ends = {0: 4, 1: 6}
    reader = fake_reader(ends, startingOffsets="earliest")
    start = reader.initialOffset()
    first = reader.latestOffset(start, reader.getDefaultReadLimit())
    assert first == {"0": 4, "1": 6}
    ends[2] = 3  # the topic grows a partition (Tansu cannot do this, so the broker is faked)
    ends[0] = 5
    second = reader.latestOffset(first, reader.getDefaultReadLimit())
    assert second == {"0": 5, "1": 6, "2": 3}
    assert reader.partitions(first, second) == [
        KafkaOffsetRange("t", 0, 4, 5),
        KafkaOffsetRange("t", 2, 0, 3),
    ]


@pytest.mark.unit
def test_available_now_stops_at_the_target_even_when_more_arrives() -> None:
    ends = {0: 10, 1: 10}
    reader = fake_reader(ends, startingOffsets="earliest", maxOffsetsPerTrigger="8")
    offset = reader.initialOffset()
    reader.prepareForTriggerAvailableNow()
    ends[0], ends[2] = 100, 50  # arrives after the trigger started: not read
    seen = []
    while True:
        nxt = reader.latestOffset(offset, reader.getDefaultReadLimit())
        if nxt == offset:
            break
        seen.append(sum(nxt.values()) - sum(offset.values()))
        offset = nxt
    assert offset == {"0": 10, "1": 10}
    assert seen == [8, 8, 4]


@pytest.mark.unit
def test_reader_pickles_without_its_kafka_client() -> None:
    reader = fake_reader({0: 1})
    reader.initialOffset()
    copy = pickle.loads(pickle.dumps(reader))
    assert copy._consumer is None
    assert copy.options == reader.options


# -- against the broker and Spark --------------------------------------------------------------


@pytest.mark.spark
@pytest.mark.kafka
def test_reads_every_message_exactly_once(spark: Any, broker: Settings, tmp_path: Path) -> None:
    topic = new_topic(broker, partitions=4)
    produce(broker, topic, range(3000))
    df = read_kafka_stream(spark, broker, topic=topic)
    assert df.schema == KAFKA_SCHEMA  # the built-in Kafka source's columns
    query = start_query(spark, broker, topic, tmp_path / "ck", tmp_path / "sink")
    try:
        query.processAllAvailable()
    finally:
        query.stop()
    frame = read_sink(tmp_path / "sink")
    assert_exactly(frame, range(3000))
    assert set(frame["partition"]) == {0, 1, 2, 3}
    assert (frame["key"] == frame["id"].astype(str)).all()
    assert (frame["topic"] == topic).all()
    assert frame["timestamp"].notna().all()


@pytest.mark.spark
@pytest.mark.kafka
def test_max_offsets_per_trigger_splits_an_available_now_run(
    spark: Any, broker: Settings, tmp_path: Path
) -> None:
    topic = new_topic(broker, partitions=3)
    produce(broker, topic, range(2000))
    query = start_query(
        spark,
        broker,
        topic,
        tmp_path / "ck",
        tmp_path / "sink",
        max_offsets=600,
        available_now=True,
    )
    query.awaitTermination(300)  # AvailableNow stops by itself once the target is reached
    assert not query.isActive
    assert query.exception() is None
    rows = batch_rows(query)
    assert rows == [600, 600, 600, 200]
    frame = read_sink(tmp_path / "sink")
    assert_exactly(frame, range(2000))
    assert frame.groupby("batch").size().max() <= 600


@pytest.mark.spark
@pytest.mark.kafka
def test_json_starting_offsets_skip_what_came_before(
    spark: Any, broker: Settings, tmp_path: Path
) -> None:
    from fraudkit.demo import topic_ends

    topic = new_topic(broker, partitions=2)
    produce(broker, topic, range(500))
    start = json.dumps({topic: topic_ends(broker, topic)})
    produce(broker, topic, range(500, 800))
    query = start_query(
        spark,
        broker,
        topic,
        tmp_path / "ck",
        tmp_path / "sink",
        available_now=True,
        starting_offsets=start,
    )
    query.awaitTermination(120)
    assert_exactly(read_sink(tmp_path / "sink"), range(500, 800))


@pytest.mark.spark
@pytest.mark.kafka
def test_restart_reads_only_the_new_messages(spark: Any, broker: Settings, tmp_path: Path) -> None:
    topic = new_topic(broker, partitions=4)
    checkpoint, sink = tmp_path / "ck", tmp_path / "sink"
    produce(broker, topic, range(1500))
    first = start_query(spark, broker, topic, checkpoint, sink)
    try:
        first.processAllAvailable()
    finally:
        first.stop()
    assert sum(batch_rows(first)) == 1500

    produce(broker, topic, range(1500, 2500))
    second = start_query(spark, broker, topic, checkpoint, sink)
    try:
        second.processAllAvailable()
    finally:
        second.stop()
    assert sum(batch_rows(second)) == 1000
    assert_exactly(read_sink(sink), range(2500))


@pytest.mark.spark
@pytest.mark.kafka
def test_missing_topic_fails_with_a_clear_error(
    spark: Any, broker: Settings, tmp_path: Path
) -> None:
    from pyspark.errors import StreamingQueryException

    query = start_query(spark, broker, "no_such_topic", tmp_path / "ck", tmp_path / "sink")
    try:
        with pytest.raises(StreamingQueryException, match="does not exist"):
            query.processAllAvailable()
    finally:
        query.stop()


@pytest.mark.spark
@pytest.mark.kafka
def test_sigkill_mid_stream_then_restart_is_exactly_once(broker: Settings, tmp_path: Path) -> None:
    topic = new_topic(broker, partitions=4)
    checkpoint, sink, log = tmp_path / "ck", tmp_path / "sink", tmp_path / "child.log"
    produce(broker, topic, range(6000))

    def child(mode: str, max_offsets: int) -> subprocess.Popen:
        argv = [sys.executable, __file__, broker.kafka.bootstrap_servers, topic]
        argv += [str(checkpoint), str(sink), mode, str(max_offsets)]
        with open(log, "ab") as out:
            return subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def tail() -> str:
        return log.read_text(errors="replace")[-3000:]

    running = child("forever", 400)
    try:
        deadline = time.monotonic() + 240  # a guard against a hang, not a performance check
        while len(list(sink.glob("batch=*/_SUCCESS"))) < 2:
            assert running.poll() is None, f"child exited early:\n{tail()}"
            assert time.monotonic() < deadline, f"child wrote no batches:\n{tail()}"
            time.sleep(0.2)
        produce(broker, topic, range(6000, 8000))  # more arrives while it runs
        while len(list(sink.glob("batch=*/_SUCCESS"))) < 4:
            assert running.poll() is None, f"child exited early:\n{tail()}"
            assert time.monotonic() < deadline, f"child stalled:\n{tail()}"
            time.sleep(0.05)
    finally:
        os.killpg(running.pid, signal.SIGKILL)  # the child, its JVM and its Python workers
        running.wait()
    before = read_sink(sink)
    assert 0 < len(before) < 8000, "the kill should land mid-stream"

    restarted = child("available-now", 5000)
    assert restarted.wait(timeout=300) == 0, tail()
    frame = read_sink(sink)
    print(f"\ncrash test: {len(before)} rows in the sink at SIGKILL, {len(frame)} after restart")
    assert_exactly(frame, range(8000))


@pytest.mark.spark
@pytest.mark.kafka
def test_measure_throughput(spark: Any, broker: Settings, tmp_path: Path) -> None:
    """Rows per second through the source (printed; machines differ, so nothing is asserted)."""
    topic = new_topic(broker, partitions=4)
    n = 50_000
    produce(broker, topic, range(n), pad=600)  # ~620-byte messages, like a transaction
    started = time.perf_counter()
    query = (
        read_kafka_stream(spark, broker, topic=topic, max_offsets_per_trigger=n)
        .selectExpr("CAST(value AS STRING) AS value", "partition", "offset", "timestamp")
        .writeStream.format("noop")
        .option("checkpointLocation", str(tmp_path / "ck"))
        .start()
    )
    try:
        query.processAllAvailable()
    finally:
        query.stop()
    seconds = time.perf_counter() - started
    assert sum(batch_rows(query)) == n
    batch = [p for p in query.recentProgress if p["numInputRows"]][0]
    print(
        f"\nthroughput: {n} rows in {seconds:.1f} s wall ({n / seconds:,.0f} rows/s incl. query "
        f"start); the batch itself {batch['processedRowsPerSecond']:,.0f} rows/s"
    )


# -- the crash test's child process ------------------------------------------------------------


def _child_main(argv: list[str]) -> int:
    """Run one query into the idempotent sink: ``forever`` (until killed) or ``available-now``."""
    parser = argparse.ArgumentParser()
    for name in ("bootstrap", "topic", "checkpoint", "sink", "mode"):
        parser.add_argument(name)
    parser.add_argument("max_offsets", type=int)
    args = parser.parse_args(argv)
    from fraudkit.spark import build_spark

    settings = Settings.model_validate(
        {"kafka": {"bootstrap_servers": args.bootstrap, "topic": args.topic}}
    )
    spark = build_spark(app_name="fraudkit-crash-child")
    query = start_query(
        spark,
        settings,
        args.topic,
        Path(args.checkpoint),
        Path(args.sink),
        max_offsets=args.max_offsets,
        available_now=args.mode == "available-now",
    )
    query.awaitTermination()
    print("batches:", batch_rows(query), flush=True)
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
