"""Kafka at the edge: topics, the replay producer, the dead-letter queue and topic reads.

kafka-python is the teaching client. Against Tansu, topic ends are taken as the larger of
ListOffsets(latest) and the fetch response's high watermark (see ``end_offsets``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import pandas as pd

from fraudkit.config import Settings
from fraudkit.schema import ID, LABEL, to_messages


class KafkaUnavailableError(RuntimeError):
    """No broker answers at the configured bootstrap servers."""


def bootstrap(settings: Settings) -> str:
    """The bootstrap servers, or a clear error when neither config nor ``fraudkit up`` set one."""
    servers = settings.kafka.bootstrap_servers
    if not servers:
        raise KafkaUnavailableError(
            "no Kafka broker is configured: run `fraudkit up` to start the embedded one, or set "
            "KAFKA_BOOTSTRAP_SERVERS"
        )
    return servers


def ensure_topics(settings: Settings, topics: Iterable[str] | None = None) -> list[str]:
    """Create the topics that do not exist yet; returns the ones created."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    names = list(
        topics or (settings.kafka.topic, settings.kafka.labels_topic, settings.kafka.dlq_topic)
    )
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap(settings), request_timeout_ms=10000)
    except (KafkaError, OSError) as exc:
        raise KafkaUnavailableError(f"no broker answers at {bootstrap(settings)}") from exc
    try:
        existing = set(admin.list_topics())
        missing = [t for t in names if t not in existing]
        created = []
        for name in missing:
            try:
                admin.create_topics(
                    [NewTopic(name, num_partitions=settings.kafka.partitions, replication_factor=1)]
                )
                created.append(name)
            except TopicAlreadyExistsError:
                pass
        return created
    finally:
        admin.close()


def make_producer(settings: Settings, **overrides: Any) -> Any:
    """A kafka-python producer with settings fit for replay: batching, acks=all, lz4 off."""
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    config = {
        "bootstrap_servers": bootstrap(settings),
        "acks": "all",
        "linger_ms": 20,
        "batch_size": 256 * 1024,
        "retries": 5,
    }
    config.update(overrides)
    try:
        return KafkaProducer(**config)
    except (KafkaError, OSError) as exc:
        raise KafkaUnavailableError(f"no broker answers at {config['bootstrap_servers']}") from exc


@dataclass
class ProduceReport:
    """What a replay sent."""

    transactions: int
    labels: int
    seconds: float

    @property
    def rate(self) -> float:
        """Transactions per second actually achieved."""
        return self.transactions / self.seconds if self.seconds else float("inf")


def produce_transactions(
    frame: pd.DataFrame,
    settings: Settings,
    *,
    rate: float | None = None,
    limit: int | None = None,
    send_labels: bool = True,
    progress: Callable[[int], None] | None = None,
) -> ProduceReport:
    """Replay a loader frame into the transactions topic, keyed by tx_id, without the label.

    Labels (tx_id, Class) go to their own topic. ``rate`` caps messages per second;
    ``limit`` sends only the first rows. ``progress`` is called with the count sent so far.
    """
    ensure_topics(settings)
    rows = frame if limit is None else frame.iloc[:limit]
    producer = make_producer(settings)
    started = time.perf_counter()
    sent = 0
    try:
        for key, value in to_messages(rows):
            producer.send(settings.kafka.topic, key=key.encode(), value=value)
            sent += 1
            if rate:
                ahead = sent / rate - (time.perf_counter() - started)
                if ahead > 0:
                    time.sleep(ahead)
            if progress and sent % 500 == 0:
                progress(sent)
        labels = 0
        if send_labels and LABEL in rows.columns:
            for tx_id, label in zip(rows[ID], rows[LABEL], strict=True):
                payload = orjson.dumps({ID: tx_id, LABEL: int(label)})
                producer.send(settings.kafka.labels_topic, key=str(tx_id).encode(), value=payload)
                labels += 1
        producer.flush()
    finally:
        producer.close()
    if progress:
        progress(sent)
    return ProduceReport(sent, labels, time.perf_counter() - started)


def send_raw(settings: Settings, topic: str, messages: Iterable[tuple[bytes | None, bytes]]) -> int:
    """Send (key, value) pairs as they are: used for the DLQ and to inject bad messages."""
    producer = make_producer(settings)
    count = 0
    try:
        for key, value in messages:
            producer.send(topic, key=key, value=value)
            count += 1
        producer.flush()
    finally:
        producer.close()
    return count


def end_offsets(consumer: Any, partitions: list[Any]) -> dict[Any, int]:
    """The true end of each partition.

    Tansu's ListOffsets(latest) can return the base offset of the last batch + 1, short of
    the log end; a fetch's high watermark is right. Take the larger of the two.
    """
    listed = consumer.end_offsets(partitions)
    ends = dict(listed)
    for tp in partitions:
        consumer.assign([tp])
        consumer.seek(tp, max(0, listed[tp] - 1))
        consumer.poll(timeout_ms=500, max_records=1)
        high = consumer.highwater(tp)
        if high is not None:
            ends[tp] = max(ends[tp], high)
    return ends


def read_topic(settings: Settings, topic: str, *, timeout_s: float = 10.0) -> Iterator[Any]:
    """Every record now in ``topic``, from the beginning (manual assign; no consumer group)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap(settings), enable_auto_commit=False, group_id=None
    )
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        if not tps:
            return
        ends = end_offsets(consumer, tps)
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        remaining = {tp for tp in tps if ends[tp] > 0}
        deadline = time.monotonic() + timeout_s
        while remaining and time.monotonic() < deadline:
            for tp, records in consumer.poll(timeout_ms=500).items():
                for record in records:
                    if record.offset < ends[tp]:
                        yield record
                if consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
    finally:
        consumer.close()


def read_json_topic(settings: Settings, topic: str, *, timeout_s: float = 10.0) -> pd.DataFrame:
    """A topic of JSON objects as a DataFrame (with partition and offset)."""
    rows = []
    for record in read_topic(settings, topic, timeout_s=timeout_s):
        body = orjson.loads(record.value)
        body["_partition"], body["_offset"] = record.partition, record.offset
        rows.append(body)
    return pd.DataFrame(rows)
