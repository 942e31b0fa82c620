"""A local Spark session for tests: one per test module (module-scoped fixtures call this), small and quiet."""

from __future__ import annotations

from pyspark.sql import SparkSession

from spark_jobs.session import build_session
from webapp.web import config as config_module


def job_config(**overrides) -> dict:
    """The jobs' configuration for tests: the environment's Cassandra, 2 shuffle partitions."""
    return config_module.load({"SPARK_SHUFFLE_PARTITIONS": 2, "SPARK_DRIVER_MEMORY": "768m", **overrides})


def local_spark(**overrides) -> SparkSession:
    return build_session(job_config(**overrides), "banner-bandit tests")
