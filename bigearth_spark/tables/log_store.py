"""Whether the lake's Delta LogStore lets several jobs commit to one table safely.

Delta's commit protocol needs an atomic put-if-absent of ``_delta_log/<version>.json``. HDFS,
ABFS and GCS have it, and so do local filesystems; S3 does not, and Delta's default S3 LogStore
(``S3SingleDriverLogStore``) is safe for one writing driver only: two concurrent ingests would
overwrite each other's commits, and the ingest lease (itself a Delta table) would not exclude
them. Multi-writer S3 needs ``io.delta.storage.S3DynamoDBLogStore`` (jar
``io.delta:delta-storage-s3-dynamodb``; see deploy/README.md).
"""

from __future__ import annotations

from collections.abc import Callable

from bigearth_spark import storage

MULTI_WRITER_S3 = "io.delta.storage.S3DynamoDBLogStore"


class UnsafeLogStoreError(RuntimeError):
    """The lake's LogStore does not make concurrent ingests safe, and the job did not promise to
    be the only writer."""


def log_store(lake: str, conf: Callable[[str], str | None]) -> str | None:
    """The LogStore class configured for the lake's scheme (None: Delta's default)."""
    s = storage.scheme(lake)
    return (s and conf(f"spark.delta.logStore.{s}.impl")) or conf("spark.delta.logStore.class")


def check_concurrent_writes(
    lake: str, conf: Callable[[str], str | None], single_writer: bool
) -> None:
    """Raise :class:`UnsafeLogStoreError` when ``lake`` is on S3 without the multi-writer
    LogStore, unless ``single_writer`` (the caller promises that no other job writes the lake)."""
    if single_writer or storage.scheme(lake) not in storage.S3_SCHEMES:
        return
    if log_store(lake, conf) == MULTI_WRITER_S3:
        return
    s = storage.scheme(lake)
    raise UnsafeLogStoreError(
        f"the lake {lake} is on S3, where Delta's default LogStore is safe for one writing job "
        f"only: concurrent ingests could overwrite each other's commits. Either configure the "
        f"multi-writer LogStore (--conf spark.delta.logStore.{s}.impl={MULTI_WRITER_S3} with "
        f"its DynamoDB table; see deploy/README.md) or pass --single-writer when no other job "
        f"writes this lake."
    )
