"""The tests' and benchmarks' S3 API server: moto's server mode on localhost, a real HTTP
server speaking the S3 protocol."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

VENV_BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def moto_server(bucket: str) -> Iterator[str]:
    """A moto S3 server on localhost with ``bucket``; while it runs the environment names it
    (as a user's would: ``AWS_ENDPOINT_URL``, test credentials, a region) for this process and
    every process it starts. Yields the bucket's ``s3a://`` URI."""
    import boto3

    port = _free_port()
    server = subprocess.Popen(
        [str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        boto3.client("s3").create_bucket(Bucket=bucket)
        yield f"s3a://{bucket}"
    finally:
        server.terminate()
        server.wait(timeout=10)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def upload(folder: Path, uri: str) -> int:
    """Copy ``folder`` to ``uri`` (``s3a://bucket/prefix``) as objects, 16 at a time (empty
    folders as ``key/`` markers, as S3 consoles and tools make them); return the objects
    written."""
    from bigearth_spark import storage

    client, (bucket, prefix) = storage.s3_client(), storage.s3_location(uri)
    objects: list[tuple[str | None, str]] = []  # (local file or None: a marker, key)
    for d, dirs, files in os.walk(folder):
        rel = os.path.relpath(d, folder)
        key = prefix if rel == "." else f"{prefix}/{rel}"
        objects += [(os.path.join(d, f), f"{key}/{f}") for f in files]
        if not dirs and not files:
            objects.append((None, f"{key}/"))

    def put(item: tuple[str | None, str]) -> None:
        file, key = item
        if file is None:
            client.put_object(Bucket=bucket, Key=key, Body=b"")
        else:
            client.upload_file(file, bucket, key)

    with ThreadPoolExecutor(16) as threads:
        list(threads.map(put, objects))
    return len(objects)
