"""A real HTTP proxy in front of the tests' S3 server: it adds latency, counts requests and
fails chosen ones.

Every request waits ``delay_ms`` (an object store's round trip), then is forwarded to the
server as it came (method, path, headers, body) and the server's answer is returned, except the
requests that ``failing`` matches: those get S3's own throttling answer (503 ``SlowDown``),
which the AWS SDKs retry and then raise. The proxy counts the requests it received by method
and kind (``GET``, ``HEAD``, ``LIST``...). No mock: the clients under test speak S3 over TCP to
this proxy, and it to moto's server.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

# (method, path, query) → whether to fail the request
Failing = Callable[[str, str, dict[str, list[str]]], bool]
_SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection"}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDKs expect
    disable_nagle_algorithm = True  # headers and body are two writes: no delayed-ACK stall

    def _forward(self) -> None:
        server: ProxyServer = self.server  # type: ignore[assignment]
        url = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        query = parse_qs(url.query)
        server.count(self.command, url.path, query)
        try:
            self._answer_after_delay(server, url.path, query, body)
        finally:
            server.done()

    def _answer_after_delay(
        self, server: ProxyServer, path: str, query: dict[str, list[str]], body: bytes
    ) -> None:
        if server.delay_s:
            time.sleep(server.delay_s)
        if server.failing(self.command, path, query):
            server.failed += 1
            self._answer(503, {"Content-Type": "application/xml"}, _SLOW_DOWN)
            return
        conn = http.client.HTTPConnection(*server.upstream, timeout=60)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            conn.request(self.command, self.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            kept = {k: v for k, v in resp.getheaders() if k.lower() not in _HOP_BY_HOP}
            self._answer(resp.status, kept, data)
        finally:
            conn.close()

    def _answer(self, status: int, headers: dict[str, str], data: bytes) -> None:
        self.send_response(status)
        for k, v in headers.items():
            if k.lower() != "content-length":
                self.send_header(k, v)
        # a HEAD answer has no body but the object's length
        given = {k.lower(): v for k, v in headers.items()}.get("content-length", "0")
        length = given if self.command == "HEAD" else len(data)
        self.send_header("Content-Length", str(length))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

    def log_message(self, format: str, *args: object) -> None:
        pass


class ProxyServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream: tuple[str, int], failing: Failing, delay_s: float) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.upstream, self.failing, self.failed, self.delay_s = upstream, failing, 0, delay_s
        self.requests: Counter[str] = Counter()  # by kind: GET, HEAD, LIST, PUT...
        # (GET or HEAD, bucket/key), (LIST, the listing's prefix)
        self.objects: Counter[tuple[str, str]] = Counter()
        self.in_flight = self.max_in_flight = 0  # requests received and not yet answered
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        """The proxy's endpoint URL (``AWS_ENDPOINT_URL`` of the clients under test)."""
        return f"http://127.0.0.1:{self.server_port}"

    def count(self, method: str, path: str, query: dict[str, list[str]]) -> None:
        """Count one request: a GET of a bucket (no key) is a LIST."""
        kind = "LIST" if method == "GET" and "/" not in path.strip("/") else method
        with self._lock:
            self.requests[kind] += 1
            if kind in ("GET", "HEAD"):
                self.objects[kind, path.strip("/")] += 1
            elif kind == "LIST":
                self.objects[kind, query.get("prefix", [""])[0]] += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def done(self) -> None:
        """One request answered."""
        with self._lock:
            self.in_flight -= 1

    def reset(self) -> None:
        """Forget the counts."""
        with self._lock:
            self.requests.clear()
            self.objects.clear()
            self.max_in_flight = self.in_flight


def never(method: str, path: str, query: dict[str, list[str]]) -> bool:
    """Fails no request."""
    return False


@contextmanager
def s3_proxy(
    endpoint: str, failing: Failing = never, delay_ms: float = 0.0
) -> Iterator[ProxyServer]:
    """A proxy to the S3 server at ``endpoint`` (``http://host:port``) that delays every request
    by ``delay_ms`` and answers the requests ``failing`` matches with 503 SlowDown; its URL is
    ``.url``, its counts ``.requests``."""
    url = urlsplit(endpoint)
    server = ProxyServer((url.hostname, url.port), failing, delay_ms / 1000)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def flat_listing_of(prefix: str) -> Failing:
    """Fails the flat listings (ListObjects without a delimiter: see
    :mod:`bigearth_spark.key_ranges`) of keys below ``s3a://bucket/key/prefix``."""
    bucket, key = prefix.removeprefix("s3a://").split("/", 1)

    def failing(method: str, path: str, query: dict[str, list[str]]) -> bool:
        listed = query.get("prefix", [""])[0]
        flat = "delimiter" not in query
        return method == "GET" and path.strip("/") == bucket and flat and listed.startswith(key)

    return failing


def object_read(key: str, times: int) -> Failing:
    """Fails the first ``times`` reads (GET) of object ``bucket/key``."""
    left = [times]
    lock = threading.Lock()

    def failing(method: str, path: str, query: dict[str, list[str]]) -> bool:
        if method != "GET" or path.strip("/") != key:
            return False
        with lock:
            left[0] -= 1
            return left[0] >= 0

    return failing
