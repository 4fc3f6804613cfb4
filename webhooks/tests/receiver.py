"""A tenant's webhook receiver for tests: a real HTTP server on loopback that records every
request and answers as it is told (a status, hanging, or being down)."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]

    @property
    def json(self) -> dict:
        return json.loads(self.body)


class Receiver:
    """Answers each request with the next behaviour queued (`answer_with`), else 200.

    A behaviour is an HTTP status, or "hang" (hold the request `hang_seconds`, answering
    nothing). `stop()` takes the server down (connections refused); `start()` brings it back
    on the same port.
    """

    def __init__(self, port: int = 0, hang_seconds: float = 5.0) -> None:
        self.port = port
        self.hang_seconds = hang_seconds
        self.received: list[Received] = []
        self.requests_seen = threading.Event()
        self._script: list[int | str] = []
        self._ok: list[bool] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def answer_with(self, *behaviours: int | str) -> None:
        with self._lock:
            self._script.extend(behaviours)

    def delivered(self) -> list[Received]:
        """The requests that were answered 2xx."""
        with self._lock:
            return [r for r, ok in zip(self.received, self._ok, strict=True) if ok]

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the standard library's name
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                behaviour = receiver._next()
                with receiver._lock:
                    receiver.received.append(
                        Received({k.lower(): v for k, v in self.headers.items()}, body)
                    )
                    receiver._ok.append(isinstance(behaviour, int) and behaviour < 300)
                receiver.requests_seen.set()
                if behaviour == "hang":
                    time.sleep(receiver.hang_seconds)
                    return
                self.send_response(int(behaviour))
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(f"answered {behaviour}".encode())

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _next(self) -> int | str:
        with self._lock:
            return self._script.pop(0) if self._script else 200
