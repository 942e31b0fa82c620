"""The Spark session of the project's jobs: master, memory, the Cassandra connector and its settings.

Launched as ``python -m spark_jobs.…`` the session is built here: master ``SPARK_MASTER`` (``local[2]``),
``SPARK_DRIVER_MEMORY``, and the connector jars fetched once by ``scripts/spark.sh fetch`` into .spark/jars.
Launched by ``spark-submit``, its ``--master``, ``--jars``/``--packages`` and memory flags are used as given.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession

ROOT = Path(__file__).resolve().parent.parent
FETCH_SCRIPT = ROOT / "scripts" / "spark.sh"
CASSANDRA_FORMAT = "org.apache.spark.sql.cassandra"


def progress(message: str) -> None:
    """One progress line on stderr (stdout stays for results)."""
    print(f"[spark] {message}", file=sys.stderr, flush=True)


def connector_jars() -> list[str]:
    """Paths of the Spark Cassandra connector jars, fetched from Maven Central on first use."""
    result = subprocess.run([str(FETCH_SCRIPT), "jars"], check=True, stdout=subprocess.PIPE, text=True)
    jars = [path for path in result.stdout.strip().split(",") if path]
    if not jars:
        raise RuntimeError(f"{FETCH_SCRIPT} jars returned no jar")
    return jars


def launched_by_spark_submit() -> bool:
    # spark-submit (and the pyspark shell) start the JVM first and hand its gateway to Python in this
    # variable; then the session must take the launcher's master, jars and memory instead of ours.
    return "PYSPARK_GATEWAY_PORT" in os.environ


def cassandra_settings(config: dict[str, Any]) -> dict[str, str]:
    """spark.cassandra.* settings from the service configuration (the same CASSANDRA_* variables)."""
    hosts = ",".join(h.strip() for h in config["CASSANDRA_HOSTS"].split(",") if h.strip())
    settings = {
        "spark.cassandra.connection.host": hosts,
        "spark.cassandra.connection.port": str(config["CASSANDRA_PORT"]),
        "spark.cassandra.output.consistency.level": config["CASSANDRA_CONSISTENCY"],
        "spark.cassandra.input.consistency.level": config["CASSANDRA_CONSISTENCY"],
        "spark.cassandra.output.ignoreNulls": "true",      # a null column writes nothing, not a tombstone
    }
    if config["CASSANDRA_LOCAL_DC"]:
        settings["spark.cassandra.connection.localDC"] = config["CASSANDRA_LOCAL_DC"]
    if config["CASSANDRA_USERNAME"]:
        settings["spark.cassandra.auth.username"] = config["CASSANDRA_USERNAME"]
        settings["spark.cassandra.auth.password"] = config["CASSANDRA_PASSWORD"]
    return settings


def build_session(config: dict[str, Any], app_name: str) -> SparkSession:
    """A SparkSession for the jobs. The caller owns it and must ``stop()`` it."""
    builder = SparkSession.builder.appName(app_name)
    if not launched_by_spark_submit():
        master = config["SPARK_MASTER"]
        builder = (builder.master(master)
                   .config("spark.jars", ",".join(connector_jars()))
                   .config("spark.driver.memory", config["SPARK_DRIVER_MEMORY"]))
        if master.startswith("local"):
            os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")     # no "hostname resolves to loopback"
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # Python workers: this virtualenv
            builder = (builder.config("spark.driver.host", "127.0.0.1")
                       .config("spark.driver.bindAddress", "127.0.0.1")
                       .config("spark.ui.enabled", "false"))
    builder = (builder
               .config("spark.sql.shuffle.partitions", str(config["SPARK_SHUFFLE_PARTITIONS"]))
               .config("spark.sql.session.timeZone", "UTC")
               .config("spark.sql.extensions", "com.datastax.spark.connector.CassandraSparkExtensions"))
    for key, value in cassandra_settings(config).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    ship_project_code(spark)
    return spark


def stop_session(spark: SparkSession) -> None:
    """Close the connector's cached Cassandra sessions, then stop ``spark``.

    The connector keeps its sessions for a while after their last use, and in a process that goes on (a test
    run) they keep reconnecting, and logging, when a node they knew is stopped.
    """
    try:
        spark.sparkContext._jvm.com.datastax.spark.connector.cql.CassandraConnector.evictCache()
    finally:
        spark.stop()


def ship_project_code(spark: SparkSession) -> None:
    """Send bandits/, eventlog/, webapp/ and spark_jobs/ to the executors' Python (what ``--py-files`` would do).

    Python functions that run on executors (the history import's row validation) import them; the priors
    job itself runs as column expressions in the JVM. Executors still need requirements.txt installed.
    """
    archive = Path(tempfile.mkdtemp(prefix="banner-bandit-")) / "banner_bandit_code.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for package in ("bandits", "eventlog", "webapp", "spark_jobs"):
            for path in sorted((ROOT / package).rglob("*.py")):
                bundle.write(path, path.relative_to(ROOT).as_posix())
    spark.sparkContext.addPyFile(str(archive))


def read_table(spark: SparkSession, keyspace: str, table: str, columns: list[str]) -> DataFrame:
    """A Cassandra table as a DataFrame (only ``columns`` are fetched).

    Joined on its whole partition key with a DataFrame of keys, the connector reads just those partitions
    (a "direct join", one query per key) instead of scanning the table.
    """
    return (spark.read.format(CASSANDRA_FORMAT).options(keyspace=keyspace, table=table, directJoinSetting="on")
            .load().select(*columns))


def write_table(frame: DataFrame, keyspace: str, table: str) -> None:
    """Upsert the rows of ``frame`` into an existing Cassandra table."""
    frame.write.format(CASSANDRA_FORMAT).mode("append").options(keyspace=keyspace, table=table).save()
