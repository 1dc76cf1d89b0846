"""The one SparkSession builder: Delta configured, settings from the config profile, s3a pointed
at the S3-compatible endpoint that the environment names.

Delta's jars and SQL extension are installed into pyspark's ``jars/`` and
``conf/spark-defaults.conf`` by ``scripts/setup_env.sh`` so that plain ``spark-submit`` and every
executor JVM know them; the settings below repeat the extension for sessions built elsewhere.
"""

from __future__ import annotations

import logging
import os
import sys
from urllib.parse import urlsplit

from pyspark import SparkConf, SparkContext
from pyspark.sql import SparkSession

from bigearth_spark import storage

DEFAULT_CONF: dict[str, str] = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.parquet.compression.codec": "zstd",
    # row groups of a few MB: the training reader reads (parts of) row groups
    "spark.hadoop.parquet.block.size": str(4 * 1024 * 1024),
    "spark.sql.files.maxRecordsPerFile": "2000",
    # a task writing several partitions (the splits of ``pairs``) keeps one open file per
    # partition instead of sorting its rows (band bytes) by partition first
    "spark.sql.maxConcurrentOutputFileWriters": "16",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.execution.arrow.maxRecordsPerBatch": "2000",
    "spark.databricks.delta.merge.repartitionBeforeWrite.enabled": "true",
    "spark.ui.showConsoleProgress": "true",
    # pools share the cores fairly: the ingest lease's heartbeat (pool "lease") gets the next
    # free task slot instead of queueing behind a long stage of decode tasks
    "spark.scheduler.mode": "FAIR",
}


def object_store_conf() -> dict[str, str]:
    """Hadoop s3a settings for the S3-compatible endpoint named in the environment
    (``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``, ``AWS_REGION``), handed to the executors'
    Python readers too. Empty for AWS itself. Credentials are never set here: s3a's default
    provider chain and pyarrow read them from the environment, profiles or instance roles."""
    endpoint = storage.s3_endpoint()
    if not endpoint:
        return {}
    url = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
    conf = {
        "spark.hadoop.fs.s3a.endpoint": endpoint,
        "spark.hadoop.fs.s3a.path.style.access": "true",  # S3-compatible servers: no DNS buckets
        "spark.hadoop.fs.s3a.connection.ssl.enabled": str(url.scheme == "https").lower(),
        "spark.executorEnv.AWS_ENDPOINT_URL": endpoint,
    }
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        conf["spark.hadoop.fs.s3a.endpoint.region"] = region
        conf["spark.executorEnv.AWS_REGION"] = region
    return conf


def _submitted_conf() -> set[str]:
    """Keys set by spark-submit (--conf, spark-defaults.conf) when it launched this driver."""
    if not os.environ.get("PYSPARK_GATEWAY_PORT"):
        return set()
    SparkContext._ensure_initialized()
    return {key for key, _ in SparkConf().getAll()}


def build_spark(
    app_name: str = "bigearth_spark",
    master: str | None = None,
    conf: dict[str, str] | None = None,
) -> SparkSession:
    """Get or create the SparkSession with Delta and the project's defaults.

    Settings given to ``spark-submit`` (``--conf``, spark-defaults.conf) win over ``conf`` and
    the defaults here; ``master`` is applied only when given (tests use ``local[2]`` or
    ``local-cluster[2,1,1024]``).
    """
    # Python workers run this interpreter (the venv's) unless the deployment says otherwise.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app_name)
    if master:
        builder = builder.master(master)
    submitted = _submitted_conf()
    for key, value in {**DEFAULT_CONF, **object_store_conf(), **(conf or {})}.items():
        if key not in submitted:
            builder = builder.config(key, value)
    spark = builder.getOrCreate()
    logging.getLogger("py4j").setLevel(logging.WARNING)
    return spark
