"""The load generator never sends a request on a connection that the server closed as idle.

A server closes a keep-alive connection that stayed idle for its timeout (vLLM's
uvicorn: VLLM_HTTP_TIMEOUT_KEEP_ALIVE, 5 s), and a POST written on it fails
("Server disconnected", "Can not write request body"): aiohttp retries only
idempotent methods. The pre-opened connections of a burst sit idle until the
dispatcher reaches their request, which on a starved client (benchmarks/soak.py on
two cores) took over 5 s, so ~0.2 % of a soak's requests failed. Here the client's
event loop is blocked while the server's idle timer fires, as under that
starvation: the client must not reuse the connections, whose close it has not
yet seen.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from pytest_vllm_serve.bench.client import Prompt, RequestOptions, send
from pytest_vllm_serve.bench.loadgen.drive import KEEPALIVE_EXPIRY, make_client, open_connections
from pytest_vllm_serve.bench.records import RequestRecord

#: vLLM's (and uvicorn's) default keep-alive timeout, in seconds.
VLLM_KEEP_ALIVE = 5.0


@contextmanager
def keep_alive_server(timeout: float) -> Iterator[str]:
    """A minimal OpenAI-style server, in a thread, that closes a connection idle for ``timeout`` s."""
    models = json.dumps({"object": "list", "data": [{"id": "m", "object": "model"}]}).encode()
    chunk = json.dumps({"choices": [{"index": 0, "delta": {"content": "hi"}}]})
    stream = f"data: {chunk}\n\ndata: [DONE]\n\n".encode()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
                except asyncio.TimeoutError:
                    return  # idle for the keep-alive timeout: close, as uvicorn does
                lines = head.decode("latin-1").split("\r\n")
                length = next(
                    (
                        int(v)
                        for k, _, v in (line.partition(":") for line in lines[1:])
                        if k.strip().lower() == "content-length"
                    ),
                    0,
                )
                if length:
                    await reader.readexactly(length)
                body, kind = (
                    (models, "application/json") if lines[0].startswith("GET") else (stream, "text/event-stream")
                )
                writer.write(
                    f"HTTP/1.1 200 OK\r\nContent-Type: {kind}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    loop = asyncio.new_event_loop()
    started = threading.Event()
    holder: dict = {}

    async def run() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        holder["port"] = server.sockets[0].getsockname()[1]
        holder["server"] = server
        started.set()

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(run(), loop)
    assert started.wait(10)
    try:
        yield f"http://127.0.0.1:{holder['port']}"
    finally:

        async def stop() -> None:
            holder["server"].close()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


def test_expiry_leaves_room_below_vllms_keep_alive():
    assert KEEPALIVE_EXPIRY <= VLLM_KEEP_ALIVE - 2.5, "a starved client's check-to-write gap must fit in the margin"


def test_pre_opened_connections_closed_by_the_server_are_not_reused():
    options = RequestOptions(model="m")
    body = options.encode(Prompt("hello", 1, 1))
    server_keep_alive = 3.0  # stricter than vLLM's 5 s, to keep the test short

    async def main() -> list[RequestRecord]:
        async with make_client(url, {}, 4) as client:
            await open_connections(client, 4)
            # The client's loop is starved (blocked) while the server's idle timer closes
            # the connections: their FINs wait unread, and the pool still takes them for open.
            time.sleep(server_keep_alive + 0.8)  # the connections are now idle for longer than both
            records = [RequestRecord(index=i, scheduled_time=0.0, dispatch_time=0.0) for i in range(4)]
            await asyncio.gather(*(send(client, options, body, r) for r in records))
            return records

    with keep_alive_server(server_keep_alive) as url:
        records = asyncio.run(main())
    assert [r.error for r in records] == [None] * 4
    assert all(r.success for r in records)
