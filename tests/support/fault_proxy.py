"""A small HTTP fault proxy for the fault-injection tests.

It sits between the client and a real server and forwards each request
unchanged, except that it can answer HTTP 500 to every Nth generation request,
or close the connection in the middle of every Nth streamed answer. One request
per connection (it asks the server for ``Connection: close``), which keeps the
relay a plain byte copy.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class FaultProxy:
    upstream: str  # http://host:port of the real server
    fail_every: int = 0  # answer 500 to every Nth generation request
    cut_every: int = 0  # drop the connection mid-answer on every Nth generation request
    cut_after_bytes: int = 1500  # how much of the answer gets through first
    posts: int = 0
    injected: list[str] = field(default_factory=list)
    url: str = ""
    _loop: asyncio.AbstractEventLoop | None = None
    _server: asyncio.AbstractServer | None = None
    _thread: threading.Thread | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            length = 0
            kept = [lines[0]]
            for line in lines[1:]:
                if not line:
                    continue
                name = line.split(b":", 1)[0].strip().lower()
                if name == b"content-length":
                    length = int(line.split(b":", 1)[1])
                if name in (b"connection", b"keep-alive"):
                    continue
                kept.append(line)
            body = await reader.readexactly(length) if length else b""
            is_post = lines[0].startswith((b"POST /v1/completions", b"POST /v1/chat/completions"))
            number = 0
            if is_post:
                self.posts += 1
                number = self.posts
            if is_post and self.fail_every and number % self.fail_every == 0:
                self.injected.append(f"500 on request {number}")
                payload = b'{"object":"error","message":"injected by the fault proxy","type":"InternalServerError","code":500}'
                writer.write(
                    b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(payload), payload)
                )
                await writer.drain()
                return
            cut = is_post and self.cut_every and number % self.cut_every == 0
            target = urlsplit(self.upstream)
            up_reader, up_writer = await asyncio.open_connection(target.hostname, target.port)
            up_writer.write(b"\r\n".join(kept) + b"\r\nConnection: close\r\n\r\n" + body)
            await up_writer.drain()
            sent = 0
            while True:
                chunk = await up_reader.read(65536)
                if not chunk:
                    break
                if cut and sent + len(chunk) > self.cut_after_bytes:
                    writer.write(chunk[: max(self.cut_after_bytes - sent, 0)])
                    await writer.drain()
                    self.injected.append(f"cut on request {number}")
                    writer.transport.abort()
                    up_writer.close()
                    return
                writer.write(chunk)
                await writer.drain()
                sent += len(chunk)
            up_writer.close()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            try:
                writer.close()
            except Exception:
                pass

    def __enter__(self) -> FaultProxy:
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
            self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._server.close)
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(5)
