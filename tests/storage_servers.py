"""Object storage on 127.0.0.1 for the tests: a GCS emulator, S3 servers (moto, also with IAM enforced), and a
reverse proxy that injects faults and lets a test act on each request (to kill a client at a chosen moment)."""

from __future__ import annotations

import http.client
import http.server
import json
import os
import random
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from urllib.parse import urlsplit

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection",
              "content-length", "host"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


class GcsEmulator:
    """gcp-storage-emulator in this process, in memory."""

    def __init__(self) -> None:
        from gcp_storage_emulator.server import create_server

        self.port = free_port()
        self.server = create_server("127.0.0.1", self.port, in_memory=True)
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> GcsEmulator:
        self.server.start()
        wait_for_port(self.port)
        return self

    def __exit__(self, *exc) -> None:
        self.server.stop()


class MotoServer:
    """moto's S3 (and IAM) server in a subprocess. With `authenticated_after`, requests after the first that
    many are checked against moto's IAM users and policies."""

    def __init__(self, authenticated_after: int | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ}
        if authenticated_after is not None:
            self.env["INITIAL_NO_AUTH_ACTION_COUNT"] = str(authenticated_after)

    def __enter__(self) -> MotoServer:
        server = os.path.join(os.path.dirname(sys.executable), "moto_server")
        self.process = subprocess.Popen([server, "-H", "127.0.0.1", "-p", str(self.port)], env=self.env,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port)
        return self

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)

    def client(self, service: str, key: str = "test", secret: str = "test"):
        import boto3

        return boto3.client(service, endpoint_url=self.url, aws_access_key_id=key, aws_secret_access_key=secret,
                            region_name="us-east-1")

    def user(self, name: str, bucket: str, actions: list[str]) -> dict:
        """An IAM user allowed `actions` on `bucket` (3 requests); returns its access key."""
        iam = self.client("iam")
        iam.create_user(UserName=name)
        key = iam.create_access_key(UserName=name)["AccessKey"]
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions,
                  "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]}]}
        iam.put_user_policy(UserName=name, PolicyName=f"{name}-policy", PolicyDocument=json.dumps(policy))
        return {"key": key["AccessKeyId"], "secret": key["SecretAccessKey"]}


class FaultProxy:
    """A reverse proxy in front of `upstream`. A seeded `fault_rate` of requests gets a 503 or a connection
    reset (the two in turn) instead of an answer; `hook(method, path)` runs before each request is forwarded and may
    return the fault to answer it with: '503', 'reset', or 'drop' to close the connection without answering (after,
    say, killing the client)."""

    def __init__(self, upstream: str, fault_rate: float = 0.0, seed: int = 0,
                 hook: Callable[[str, str], str | None] | None = None) -> None:
        self.upstream = urlsplit(upstream)
        self.fault_rate = fault_rate
        self.random = random.Random(seed)
        self.hook = hook
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str]] = []
        self.faults = {"503": 0, "reset": 0}
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _body(self) -> bytes:
                if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0], 16)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b""):
                                pass
                            return b"".join(chunks)
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _reset(self) -> None:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.close_connection = True

            def _relay(self) -> None:
                body = self._body()
                fault = proxy._decide(self.command, self.path)
                if fault == "drop" or fault == "reset":
                    self._reset()
                    return
                if fault == "503":
                    payload = (b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>SlowDown</Code>"
                               b"<Message>Please reduce your request rate.</Message></Error>")
                    self.send_response(503)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                status, headers, answer = proxy._forward(self.command, self.path, self.headers, body)
                self.send_response(status)
                for name, value in headers:
                    if name.lower() not in HOP_BY_HOP:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(answer)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = _relay

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def _decide(self, method: str, path: str) -> str | None:
        with self.lock:
            self.requests.append((method, path))
            if self.hook is not None and (fault := self.hook(method, path)) is not None:
                return fault
            if self.random.random() < self.fault_rate:
                fault = "503" if self.faults["503"] <= self.faults["reset"] else "reset"  # the kinds alternate
                self.faults[fault] += 1
                return fault
        return None

    def _forward(self, method: str, path: str, headers, body: bytes) -> tuple[int, list, bytes]:
        connection = http.client.HTTPConnection(self.upstream.hostname, self.upstream.port, timeout=60)
        try:
            forwarded = {k: v for k, v in headers.items() if k.lower() not in HOP_BY_HOP}
            forwarded["Host"] = self.upstream.netloc
            connection.request(method, path, body=body if body or method in ("PUT", "POST") else None,
                               headers=forwarded)
            response = connection.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            connection.close()

    def __enter__(self) -> FaultProxy:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
