"""A Kafka streaming source for Spark, written on Spark 4's Python Data Source API.

Spark's own Kafka connector ships as Maven jars; where they cannot be installed, this source
reads Kafka with kafka-python instead and gives the same columns, so code downstream of
:func:`read_kafka_stream` works with either (``settings.kafka.spark_format``).

How it works, one micro-batch at a time:

1. On the driver, :meth:`KafkaStreamReader.latestOffset` asks the broker where each partition
   ends and returns ``{partition: next_offset}``; Spark writes it to the checkpoint's offset log
   *before* the batch runs, so a restarted query replays exactly the same ranges.
2. :meth:`KafkaStreamReader.partitions` turns ``[start, end)`` into one task per Kafka partition
   that has new records.
3. On the executors, :meth:`KafkaStreamReader.read` assigns that one partition (no consumer
   group, nothing committed to Kafka), seeks to ``start`` and returns exactly the records up to
   ``end`` as Arrow record batches.

Offsets live only in Spark's checkpoint. With an idempotent sink (e.g. ``foreachBatch`` that
overwrites one folder per ``batch_id``) the whole pipeline is exactly-once across crashes.

Options (the names of Spark's built-in ``kafka`` source):

- ``kafka.bootstrap.servers`` (required): ``host:port[,host:port]``.
- ``subscribe`` (required): one topic.
- ``startingOffsets``: ``earliest``, ``latest`` (default, as in Spark) or Spark's JSON form
  ``{"topic": {"0": 42, "1": -2}}`` (-2: earliest, -1: latest; a partition not named starts
  at its earliest); used only when the checkpoint is new.
- ``maxOffsetsPerTrigger``: at most this many records per micro-batch, shared fairly between
  partitions. ``Trigger.AvailableNow`` honours it too (several batches, then the query stops).
- ``failOnDataLoss``: ``true`` (default) fails when a partition ends before the offset the
  checkpoint already read (the topic was recreated, or an in-memory broker restarted);
  ``false`` re-reads such a partition from its beginning.
- ``pollTimeoutMs``: how long a task waits without receiving a record before it fails
  (default 60000).
"""

from __future__ import annotations

import json
import time
import weakref
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pyspark.sql.datasource import DataSource, DataSourceStreamReader, InputPartition
from pyspark.sql.streaming.datasource import (
    ReadAllAvailable,
    ReadLimit,
    ReadMaxRows,
    SupportsTriggerAvailableNow,
)
from pyspark.sql.types import (
    BinaryType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from fraudkit.config import Settings
from fraudkit.kafka_io import bootstrap, end_offsets

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame, SparkSession

SOURCE_NAME = "fraudkit_kafka"

#: The columns of Spark's built-in Kafka source, in its order.
KAFKA_SCHEMA = StructType(
    [
        StructField("key", BinaryType()),
        StructField("value", BinaryType()),
        StructField("topic", StringType()),
        StructField("partition", IntegerType()),
        StructField("offset", LongType()),
        StructField("timestamp", TimestampType()),
        StructField("timestampType", IntegerType()),
    ]
)

ROWS_PER_ARROW_BATCH = 10_000

Offsets = dict[str, int]
"""A source offset: the next offset to read in each partition, keyed by the partition number
as a string (offsets travel as JSON through Spark's checkpoint)."""


class TopicNotFoundError(ValueError):
    """The subscribed topic does not exist on the broker."""


class DataLossError(RuntimeError):
    """A partition ends before the offset the checkpoint has already read."""


def arrow_schema() -> pa.Schema:
    """The Arrow schema Spark expects from :meth:`KafkaStreamReader.read`, field for field.

    Spark checks it exactly: binary (not large_binary), int32 partition, timestamps in
    microseconds with the UTC zone, every field nullable.
    """
    import pyarrow as pa

    return pa.schema(
        [
            pa.field("key", pa.binary()),
            pa.field("value", pa.binary()),
            pa.field("topic", pa.string()),
            pa.field("partition", pa.int32()),
            pa.field("offset", pa.int64()),
            pa.field("timestamp", pa.timestamp("us", tz="UTC")),
            pa.field("timestampType", pa.int32()),
        ]
    )


def _flag(value: Any, name: str) -> bool:
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise ValueError(f"option {name!r} must be true or false, not {value!r}")


def _parse_positions(text: str, topic: str) -> tuple[tuple[str, int], ...]:
    """Spark's JSON starting offsets for ``topic`` as (partition, offset) pairs."""
    try:
        parsed = json.loads(text)
        per_topic = parsed[topic]
        pairs = tuple((str(int(p)), int(o)) for p, o in per_topic.items())
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(
            f"{SOURCE_NAME}: startingOffsets JSON must map {topic!r} to {{partition: offset}}, "
            f"not {text!r}"
        ) from exc
    if any(o < -2 for _, o in pairs):
        raise ValueError(f"{SOURCE_NAME}: startingOffsets offsets must be >= -2, not {text!r}")
    return pairs


@dataclass(frozen=True)
class SourceOptions:
    """The source's options, parsed and checked once."""

    bootstrap_servers: str
    topic: str
    starting_offsets: str = "latest"
    starting_positions: tuple[tuple[str, int], ...] | None = None
    max_offsets_per_trigger: int | None = None
    fail_on_data_loss: bool = True
    poll_timeout_ms: int = 60_000

    @classmethod
    def parse(cls, options: Mapping[str, str]) -> SourceOptions:
        """Read the Spark options (names are case-insensitive); a clear error when one is wrong.

        Args:
            options: what was given to ``.option(...)``.

        Raises:
            ValueError: a required option is missing or a value is invalid.
        """
        opts = {str(k).lower(): v for k, v in options.items()}
        servers = opts.get("kafka.bootstrap.servers")
        if not servers:
            raise ValueError(f"{SOURCE_NAME}: option 'kafka.bootstrap.servers' is required")
        if "subscribepattern" in opts or "assign" in opts:
            raise ValueError(f"{SOURCE_NAME}: only 'subscribe' (one topic) is supported")
        topic = (opts.get("subscribe") or "").strip()
        if not topic or "," in topic:
            raise ValueError(f"{SOURCE_NAME}: option 'subscribe' must name exactly one topic")
        starting = str(opts.get("startingoffsets", "latest")).strip()
        positions = None
        if starting.startswith("{"):
            positions = _parse_positions(starting, topic)
            starting = "positions"
        elif starting.lower() in ("earliest", "latest"):
            starting = starting.lower()
        else:
            raise ValueError(
                f"{SOURCE_NAME}: startingOffsets must be 'earliest', 'latest' or JSON "
                f'{{"{topic}": {{"0": 42}}}}, not {starting!r}'
            )
        limit = opts.get("maxoffsetspertrigger")
        max_rows = int(limit) if limit not in (None, "") else None
        if max_rows is not None and max_rows < 1:
            raise ValueError(f"{SOURCE_NAME}: maxOffsetsPerTrigger must be >= 1, not {max_rows}")
        return cls(
            bootstrap_servers=servers,
            topic=topic,
            starting_offsets=starting,
            starting_positions=positions,
            max_offsets_per_trigger=max_rows,
            fail_on_data_loss=_flag(opts.get("failondataloss", "true"), "failOnDataLoss"),
            poll_timeout_ms=int(opts.get("polltimeoutms", 60_000)),
        )


@dataclass
class KafkaOffsetRange(InputPartition):
    """One Spark task: the records ``[start, end)`` of one Kafka partition."""

    topic: str
    partition: int
    start: int
    end: int


def fair_shares(available: Mapping[str, int], max_rows: int) -> dict[str, int]:
    """Split a budget of ``max_rows`` records between partitions, as evenly as they allow.

    A partition never gets more than it has; what a small partition leaves over goes to the
    others (max-min fairness), so one busy partition cannot starve the rest.

    Args:
        available: records waiting in each partition.
        max_rows: the budget for this micro-batch.

    Returns:
        How many records to take from each partition (sums to ``min(max_rows, total)``).
    """
    shares = {p: 0 for p in available}
    waiting = sorted((n, p) for p, n in available.items() if n > 0)
    remaining = max_rows
    for i, (n, p) in enumerate(waiting):
        take = min(n, remaining // (len(waiting) - i))
        shares[p] = take
        remaining -= take
    return shares


def plan_end_offsets(
    start: Offsets,
    ends: Offsets,
    *,
    max_rows: int | None = None,
    fail_on_data_loss: bool = True,
    topic: str = "",
) -> Offsets:
    """The end offsets of the next micro-batch: pure arithmetic, no broker.

    Args:
        start: where the previous batch ended (partitions missing from it are new: read from 0).
        ends: where each partition ends now.
        max_rows: at most this many records in the batch; ``None`` for all that are there.
        fail_on_data_loss: raise when a partition ends before ``start`` (or disappeared);
            otherwise restart it from 0 (the broker clamps 0 to the partition's beginning).
        topic: the topic's name, for error messages.

    Returns:
        ``{partition: end}`` sorted by partition number, or ``start`` itself when nothing is new.

    Raises:
        DataLossError: a partition went backwards and ``fail_on_data_loss`` is set.
    """
    base: Offsets = {}
    for p, end in ends.items():
        begin = start.get(p, 0)
        if end < begin:
            if fail_on_data_loss:
                raise DataLossError(
                    f"partition {p} of topic {topic!r} ends at offset {end} but the checkpoint "
                    f"has already read up to {begin}: the topic was recreated or the broker lost "
                    "its data (the embedded Tansu broker keeps topics in memory only). Start "
                    "from a new checkpoint, or set failOnDataLoss=false to re-read it from the "
                    "beginning."
                )
            begin = 0
        base[p] = begin
    gone = sorted(set(start) - set(ends), key=int)
    if gone and fail_on_data_loss:
        raise DataLossError(
            f"partitions {gone} of topic {topic!r} no longer exist: the topic was recreated. "
            "Start from a new checkpoint, or set failOnDataLoss=false."
        )
    available = {p: ends[p] - base[p] for p in ends}
    if max_rows is not None:
        shares = fair_shares(available, max_rows)
    else:
        shares = available
    planned = {p: base[p] + shares[p] for p in sorted(ends, key=int)}
    return start if planned == start else planned


class KafkaStreamReader(DataSourceStreamReader, SupportsTriggerAvailableNow):
    """Reads one Kafka topic in micro-batches; offsets are kept in Spark's checkpoint.

    Spark keeps one instance on the driver (offset planning) and pickles copies to the
    executors (``read``). Kafka clients are made lazily and never pickled.
    """

    def __init__(self, options: SourceOptions) -> None:
        self.options = options
        self._consumer: Any = None
        self._target: Offsets | None = None
        self._last_ends: Offsets | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_consumer"] = None
        return state

    # -- driver side ------------------------------------------------------------------------

    def _driver_consumer(self) -> Any:
        if self._consumer is None:
            from kafka import KafkaConsumer

            self._consumer = KafkaConsumer(
                bootstrap_servers=self.options.bootstrap_servers,
                group_id=None,
                enable_auto_commit=False,
                client_id=f"{SOURCE_NAME}-driver",
                max_partition_fetch_bytes=256 * 1024,
            )
        return self._consumer

    def _topic_partitions(self) -> list[Any]:
        """The topic's partitions now (metadata refreshed, so added partitions appear)."""
        from kafka import TopicPartition

        consumer = self._driver_consumer()
        topic = self.options.topic
        if topic not in consumer.topics():  # topics() always asks the broker
            raise TopicNotFoundError(
                f"{SOURCE_NAME}: topic {topic!r} does not exist on the broker at "
                f"{self.options.bootstrap_servers}; create it first (fraudkit.kafka_io."
                "ensure_topics, or `fraudkit produce`)"
            )
        parts = consumer.partitions_for_topic(topic) or set()
        return [TopicPartition(topic, p) for p in sorted(parts)]

    def _end_offsets(self) -> Offsets:
        """Where each partition ends now: the Tansu-safe ``kafka_io.end_offsets``."""
        consumer = self._driver_consumer()
        tps = self._topic_partitions()
        listed = consumer.end_offsets(tps)
        # end_offsets() polls each partition for its high watermark; an empty one (listed 0:
        # even Tansu's short answer is >= 1 once a partition holds a record) would only wait.
        filled = [tp for tp in tps if listed[tp] > 0]
        ends = {str(tp.partition): int(listed[tp]) for tp in tps}
        if filled:
            ends.update(
                {str(tp.partition): int(n) for tp, n in end_offsets(consumer, filled).items()}
            )
        self._last_ends = ends
        return ends

    def initialOffset(self) -> Offsets:
        """Where a new query starts: every partition's beginning (earliest) or end (latest)."""
        if self.options.starting_offsets == "latest":
            return self._end_offsets()
        tps = self._topic_partitions()
        begins = self._driver_consumer().beginning_offsets(tps)
        start = {str(tp.partition): int(begins[tp]) for tp in tps}
        if self.options.starting_positions is not None:
            ends = (
                self._end_offsets()
                if any(o == -1 for _, o in self.options.starting_positions)
                else {}
            )
            for partition, offset in self.options.starting_positions:
                if partition in start and offset >= 0:
                    start[partition] = max(start[partition], offset)
                elif partition in start and offset == -1:
                    start[partition] = ends.get(partition, start[partition])
        return start

    def getDefaultReadLimit(self) -> ReadLimit:
        """``maxOffsetsPerTrigger`` as Spark's read limit (all available when unset)."""
        if self.options.max_offsets_per_trigger is None:
            return ReadAllAvailable()
        return ReadMaxRows(self.options.max_offsets_per_trigger)

    def latestOffset(self, start: Offsets, limit: ReadLimit) -> Offsets:
        """The end of the next micro-batch, within ``limit`` and the AvailableNow target."""
        ends = self._end_offsets()
        if self._target is not None:
            ends = {p: min(n, self._target[p]) for p, n in ends.items() if p in self._target}
        max_rows = limit.max_rows if isinstance(limit, ReadMaxRows) else None
        return plan_end_offsets(
            start,
            ends,
            max_rows=max_rows,
            fail_on_data_loss=self.options.fail_on_data_loss,
            topic=self.options.topic,
        )

    def prepareForTriggerAvailableNow(self) -> None:
        """Fix the target: an AvailableNow query reads what is there now, then stops."""
        self._target = self._end_offsets()

    def reportLatestOffset(self) -> Offsets | None:
        """The partition ends seen last (for the query's progress report)."""
        return self._last_ends

    def partitions(self, start: Offsets, end: Offsets) -> list[KafkaOffsetRange]:
        """One task per Kafka partition that has records in ``[start, end)``."""
        ranges = []
        for p, stop in end.items():
            begin = start.get(p, 0)
            if stop < begin:  # failOnDataLoss=false after the partition went backwards
                begin = 0
            if stop > begin:
                ranges.append(KafkaOffsetRange(self.options.topic, int(p), begin, stop))
        return ranges

    def commit(self, end: Offsets) -> None:
        """Nothing to do: offsets live in Spark's checkpoint, not in a consumer group."""

    def stop(self) -> None:
        """Close the driver's Kafka client."""
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    # -- executor side ----------------------------------------------------------------------

    def read(self, partition: KafkaOffsetRange) -> Iterator[pa.RecordBatch]:  # type: ignore[override]
        """Exactly the records ``[start, end)`` of one partition, as Arrow record batches.

        Raises:
            TimeoutError: no record arrived for ``pollTimeoutMs`` before reaching ``end``.
        """
        from kafka import KafkaConsumer, TopicPartition

        consumer = KafkaConsumer(
            bootstrap_servers=self.options.bootstrap_servers,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            client_id=f"{SOURCE_NAME}-task",
            max_partition_fetch_bytes=8 * 1024 * 1024,
            fetch_max_bytes=32 * 1024 * 1024,
        )
        tp = TopicPartition(partition.topic, partition.partition)
        rows = _ArrowRows(partition.topic, partition.partition)
        try:
            consumer.assign([tp])
            consumer.seek(tp, partition.start)
            patience = self.options.poll_timeout_ms / 1000
            deadline = time.monotonic() + patience
            done = False
            while not done:
                records = consumer.poll(timeout_ms=500, max_records=ROWS_PER_ARROW_BATCH).get(
                    tp, []
                )
                for record in records:
                    if record.offset >= partition.end:
                        done = True
                        break
                    if record.offset >= partition.start:
                        rows.add(record)
                if records:
                    deadline = time.monotonic() + patience
                # Offsets can have gaps (transaction markers, compaction): trust the position.
                if consumer.position(tp) >= partition.end:
                    done = True
                elif not records and time.monotonic() > deadline:
                    raise TimeoutError(
                        f"{SOURCE_NAME}: no record from {partition.topic}[{partition.partition}] "
                        f"for {patience:.0f} s at offset {consumer.position(tp)}, "
                        f"expected up to {partition.end}"
                    )
                if len(rows) >= ROWS_PER_ARROW_BATCH or (done and len(rows)):
                    yield rows.flush()
        finally:
            consumer.close()


class _ArrowRows:
    """Columns of records being gathered into the next Arrow record batch."""

    def __init__(self, topic: str, partition: int) -> None:
        self.topic = topic
        self.partition = partition
        self._clear()

    def _clear(self) -> None:
        self.keys: list[bytes | None] = []
        self.values: list[bytes | None] = []
        self.offsets: list[int] = []
        self.micros: list[int | None] = []
        self.types: list[int | None] = []

    def __len__(self) -> int:
        return len(self.offsets)

    def add(self, record: Any) -> None:
        self.keys.append(record.key)
        self.values.append(record.value)
        self.offsets.append(record.offset)
        stamp = record.timestamp
        self.micros.append(stamp * 1000 if stamp is not None and stamp >= 0 else None)
        kind = getattr(record, "timestamp_type", None)
        self.types.append(kind if kind is not None and kind >= 0 else None)

    def flush(self) -> pa.RecordBatch:
        import pyarrow as pa

        schema = arrow_schema()
        n = len(self)
        batch = pa.RecordBatch.from_arrays(
            [
                pa.array(self.keys, pa.binary()),
                pa.array(self.values, pa.binary()),
                pa.array([self.topic] * n, pa.string()),
                pa.array([self.partition] * n, pa.int32()),
                pa.array(self.offsets, pa.int64()),
                pa.array(self.micros, schema.field("timestamp").type),
                pa.array(self.types, pa.int32()),
            ],
            schema=schema,
        )
        self._clear()
        return batch


class KafkaSource(DataSource):
    """``spark.readStream.format("fraudkit_kafka")``: Kafka through kafka-python."""

    @classmethod
    def name(cls) -> str:
        """The format name to use in ``readStream.format``."""
        return SOURCE_NAME

    def schema(self) -> StructType:
        """The columns of Spark's built-in Kafka source."""
        return KAFKA_SCHEMA

    def streamReader(self, schema: StructType) -> KafkaStreamReader:
        """A reader for this query's options (checked here, so mistakes fail at start)."""
        return KafkaStreamReader(SourceOptions.parse(self.options))


_registered: weakref.WeakSet[Any] = weakref.WeakSet()


def register(spark: SparkSession) -> None:
    """Make ``format("fraudkit_kafka")`` available in this Spark session (idempotent)."""
    if spark not in _registered:
        spark.dataSource.register(KafkaSource)
        _registered.add(spark)


def read_kafka_stream(
    spark: SparkSession,
    settings: Settings,
    *,
    topic: str | None = None,
    starting_offsets: str = "earliest",
    max_offsets_per_trigger: int | None = None,
) -> DataFrame:
    """A streaming DataFrame of the transactions topic, with the columns of Spark's Kafka source.

    ``settings.kafka.spark_format`` chooses the reader: ``fraudkit_kafka`` (this module) or
    ``kafka`` (Spark's built-in source, where its jars are installed). The options and the
    columns are the same either way.

    Args:
        spark: the session.
        settings: supplies the bootstrap servers, the topic and ``max_offsets_per_trigger``.
        topic: read this topic instead of ``settings.kafka.topic``.
        starting_offsets: ``earliest`` (default: a replay sent before the query started is
            read) or ``latest``; only a new checkpoint uses it.
        max_offsets_per_trigger: overrides ``settings.kafka.max_offsets_per_trigger``.

    Returns:
        key, value (binary), topic, partition, offset, timestamp, timestampType.
    """
    fmt = settings.kafka.spark_format
    if fmt == SOURCE_NAME:
        register(spark)
    limit = max_offsets_per_trigger or settings.kafka.max_offsets_per_trigger
    return (
        spark.readStream.format(fmt)
        .option("kafka.bootstrap.servers", bootstrap(settings))
        .option("subscribe", topic or settings.kafka.topic)
        .option("startingOffsets", starting_offsets)
        .option("maxOffsetsPerTrigger", str(limit))
        .load()
    )
