"""A stand-in OpenAI streaming server whose latencies are known exactly.

It is not vLLM. It exists to measure the *client*: with a server that streams
N tokens with a set TTFT and ITL, any difference a client reports is client
error. Used by the accuracy and capacity benchmarks and by the tests that need
a deliberately slow server.

    python -m pytest_vllm_serve.tools.latency_server --port 8100 --ttft-ms 50 --itl-ms 10

Chunk times are absolute (request arrival + TTFT + k x ITL; with noise, the sum of
the k gaps drawn), so server-side scheduling jitter does not accumulate. Tokens are
whitespace-separated words (``/tokenize`` and ``/detokenize`` agree with that), and
every answer has exactly ``max_tokens`` tokens. ``--tokens-per-chunk K`` sends K tokens per
chunk every K x ITL, like vLLM's ``--stream-interval``.

Noise, for tests of what a benchmark makes of a server that does not repeat itself:
``--jitter SIGMA`` multiplies each request's TTFT and each ITL gap by its own
exp(N(0, SIGMA^2) - SIGMA^2/2), a log-normal factor whose mean is 1 (so the mean
latency stays the set one; the median is exp(-SIGMA^2/2) of it), and ``--run-drift
SIGMA`` multiplies every latency of this server by one such factor drawn at start,
like a GPU server that is a few percent faster or slower from one start to the next.
Both come from ``--seed``: request k's factors depend only on the seed and k.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import json
import math
import random
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

WORD = "tok"
#: What ``--bad-utf8`` sends instead of the answer's first WORD: 0xFF is never valid in UTF-8.
BAD_UTF8_WORD = b"t\xffk"


@dataclass
class Timing:
    ttft: float = 0.0  # seconds
    itl: float = 0.0  # seconds per token
    tokens_per_chunk: int = 1
    model: str = "latency-server"
    max_model_len: int = 1_000_000
    # Faults, for tests of the client's error handling:
    fail_every: int = 0  # answer HTTP 500 to every Nth generation request
    cut_after: int = 0  # close the connection after N tokens, without [DONE]
    no_done: bool = False  # end the stream cleanly but never send [DONE]
    empty_stream: bool = False  # 200 with an event stream that holds no chunk
    error_after: int = 0  # after N tokens, an {"error": ...} event and then [DONE], as vLLM's server on an error
    stall_every: int = 0  # hold back the first token of every Nth generation request ...
    stall_ms: float = 0.0  # ... by this much more than the TTFT
    bad_utf8: bool = (
        False  # answers whose first token is not UTF-8: in the JSON body, and in a stream's first token chunk
    )
    # Trace, for measuring a client against what the server actually did: each
    # streamed answer's first token is its request tag (``req-N``), and when its
    # connection was accepted, when the request arrived and when every chunk was
    # handed to the socket are appended to this JSON-lines file (perf_counter
    # times: CLOCK_MONOTONIC, the same clock as the client's on one machine).
    trace: str | None = None
    # Noise (see the module's docstring): log-normal factors of mean 1, from the seed.
    jitter: float = 0.0  # sigma of each request's TTFT factor and each ITL gap's
    run_drift: float = 0.0  # sigma of this server's one factor on every latency
    seed: int = 0
    # Capacity, for tests of a search for the highest load a server takes: at most this many
    # generation requests at once; the others wait in arrival order, and their latencies run
    # from when a slot is free (a slot is busy until its request's last token is due), so the
    # wait shows in their TTFT (0: no limit).
    max_running: int = 0


def lognormal_factor(rng: random.Random, sigma: float) -> float:
    """exp(N(0, sigma^2) - sigma^2/2): a factor of mean 1; exactly 1 for sigma 0."""
    return math.exp(rng.gauss(0.0, sigma) - sigma * sigma / 2) if sigma else 1.0


def drift_factor(timing: Timing) -> float:
    """The server's one factor on every latency (``--run-drift``), drawn from the seed."""
    return lognormal_factor(random.Random(f"{timing.seed}:drift"), timing.run_drift)


class Vocabulary:
    """Word-level tokenizer: ids are assigned on first sight and never change."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self.words: list[str] = []

    def encode(self, text: str) -> list[int]:
        out = []
        for word in text.split():
            if word not in self.ids:
                self.ids[word] = len(self.words)
                self.words.append(word)
            out.append(self.ids[word])
        return out

    def decode(self, ids: list[int]) -> str:
        return " ".join(self.words[i] if 0 <= i < len(self.words) else WORD for i in ids)


def _prompt_text(body: dict) -> str:
    if "messages" in body:
        parts = []
        for message in body["messages"]:
            content = message.get("content", "")
            parts.append(content if isinstance(content, str) else " ".join(p.get("text", "") for p in content))
        return " ".join(parts)
    prompt = body.get("prompt", "")
    return prompt if isinstance(prompt, str) else " ".join(map(str, prompt))


class LatencyServer:
    def __init__(self, timing: Timing) -> None:
        self.timing = timing
        self.vocab = Vocabulary()
        self.counter = 0
        self.trace = open(timing.trace, "a", buffering=1) if timing.trace else None  # noqa: SIM115  (server lifetime)
        self.drift = drift_factor(timing)
        self.slots_free_at = [0.0] * timing.max_running  # a heap: when each slot's request ends

    def noise(self, request: int) -> Callable[[float], float]:
        """Request ``request``'s latencies: each call gives one (a TTFT, then ITL gaps) times
        its own jitter factor and the server's drift; without noise, the latency as set."""
        if not self.timing.jitter and self.drift == 1.0:
            return lambda seconds: seconds
        rng = random.Random(f"{self.timing.seed}:{request}")
        return lambda seconds: seconds * self.drift * lognormal_factor(rng, self.timing.jitter)

    # -- HTTP plumbing ---------------------------------------------------------
    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted = time.perf_counter()
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                arrived = time.perf_counter()
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                length = 0
                for line in lines[1:]:
                    if line[:15].lower() == "content-length:":
                        length = int(line[15:].strip())
                body = await reader.readexactly(length) if length else b""
                keep = await self.route(method, path.split("?", 1)[0], body, arrived, writer, accepted)
                if not keep:
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            try:
                writer.close()
            except Exception:
                pass

    @staticmethod
    def _json(writer: asyncio.StreamWriter, status: int, payload: object, bad_utf8: bool = False) -> None:
        data = json.dumps(payload).encode()
        if bad_utf8:
            data = data.replace(WORD.encode(), BAD_UTF8_WORD, 1)
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}.get(status, "OK")
        writer.write(
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n".encode()
            + data
        )

    async def route(self, method: str, path: str, body: bytes, arrived: float, writer, accepted: float = 0.0) -> bool:
        if method == "GET" and path == "/health":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        elif method == "GET" and path == "/v1/models":
            self._json(
                writer,
                200,
                {
                    "object": "list",
                    "data": [{"id": self.timing.model, "object": "model", "max_model_len": self.timing.max_model_len}],
                },
            )
        elif method == "POST" and path == "/tokenize":
            request = json.loads(body or b"{}")
            ids = self.vocab.encode(_prompt_text(request))
            self._json(writer, 200, {"count": len(ids), "tokens": ids, "max_model_len": self.timing.max_model_len})
        elif method == "POST" and path == "/detokenize":
            request = json.loads(body or b"{}")
            self._json(writer, 200, {"prompt": self.vocab.decode(request.get("tokens", []))})
        elif method == "POST" and path in ("/v1/completions", "/v1/chat/completions"):
            request = json.loads(body or b"{}")
            chat = path.endswith("chat/completions")
            self.counter += 1
            if self.timing.fail_every and self.counter % self.timing.fail_every == 0:
                self._json(
                    writer,
                    500,
                    {
                        "object": "error",
                        "message": f"injected failure on request {self.counter}",
                        "type": "InternalServerError",
                        "code": 500,
                    },
                )
            elif self.slots_free_at:
                await self.generate(request, chat, self._slot(request, arrived), writer, accepted)
            else:
                await self.generate(request, chat, arrived, writer, accepted)
        else:
            self._json(writer, 404, {"error": {"message": f"no route {method} {path}"}})
        await writer.drain()
        return True

    # -- generation --------------------------------------------------------------
    def _slot(self, request: dict, arrived: float) -> float:
        """``--max-running``: when this request starts, the earliest a slot is free, and that slot
        then busy until its last token is due. Kept as times, not as a lock held by the handler, so a
        request that comes in right after the last token of another finds that slot free."""
        _, n = self._lengths(request)
        start = max(arrived, heapq.heappop(self.slots_free_at))
        heapq.heappush(self.slots_free_at, start + self.timing.ttft + (n - 1) * self.timing.itl)
        return start

    async def generate(self, request: dict, chat: bool, arrived: float, writer, accepted: float) -> None:
        if request.get("stream"):
            await self.stream(request, chat, arrived, writer, accepted)
        else:
            await self.complete(request, chat, arrived, writer)

    def _lengths(self, request: dict) -> tuple[int, int]:
        n = int(request.get("max_completion_tokens") or request.get("max_tokens") or 16)
        return len(_prompt_text(request).split()), max(n, 1)

    async def _sleep_until(self, when: float) -> None:
        # Sleep to just before the deadline, then yield until it: the loop's timer
        # alone wakes up to ~1 ms late, which would blur the "known" latencies.
        delay = when - time.perf_counter()
        if delay > 0.0015:
            await asyncio.sleep(delay - 0.0015)
        while time.perf_counter() < when:
            await asyncio.sleep(0)

    async def complete(self, request: dict, chat: bool, arrived: float, writer) -> None:
        prompt_tokens, n = self._lengths(request)
        noisy = self.noise(self.counter)
        await self._sleep_until(arrived + noisy(self.timing.ttft) + sum(noisy(self.timing.itl) for _ in range(n - 1)))
        text = " ".join([WORD] * n)
        choice = {"index": 0, "finish_reason": "length"}
        choice.update({"message": {"role": "assistant", "content": text}} if chat else {"text": text})
        self._json(
            writer,
            200,
            {
                "id": f"cmpl-{self.counter}",
                "object": "chat.completion" if chat else "text_completion",
                "model": self.timing.model,
                "choices": [choice],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": n, "total_tokens": prompt_tokens + n},
            },
            bad_utf8=self.timing.bad_utf8,
        )

    async def stream(self, request: dict, chat: bool, arrived: float, writer, accepted: float = 0.0) -> None:
        rid = f"cmpl-{self.counter}"
        prompt_tokens, n = self._lengths(request)
        with_ids = bool(request.get("return_token_ids"))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")

        writes: list[float] = []
        tag = f"req-{self.counter}" if self.trace else None

        def event(payload: object, bad_utf8: bool = False) -> None:
            data = b"data: " + (payload if isinstance(payload, bytes) else json.dumps(payload).encode()) + b"\n\n"
            if bad_utf8:
                data = data.replace(WORD.encode(), BAD_UTF8_WORD, 1)
            if isinstance(payload, dict) and payload.get("choices"):
                writes.append(time.perf_counter())  # before the write: the client may read it at once
            writer.write(b"%x\r\n%s\r\n" % (len(data), data))

        def chunk(tokens: int, last: bool) -> dict:
            text = " ".join([WORD] * tokens)
            if tag and sent == 0:
                text = " ".join([tag] + [WORD] * (tokens - 1))
            if sent > 0:  # a later token's text begins with its space, as a real tokenizer's does
                text = " " + text
            choice: dict = {"index": 0, "finish_reason": "length" if last else None}
            choice.update({"delta": {"content": text}} if chat else {"text": text})
            if with_ids:
                choice["token_ids"] = [0] * tokens
            return {
                "id": rid,
                "object": "chat.completion.chunk" if chat else "text_completion",
                "model": self.timing.model,
                "choices": [choice],
            }

        k = max(1, self.timing.tokens_per_chunk)
        sent = 0
        noisy = self.noise(self.counter)
        first_at = arrived + noisy(self.timing.ttft)
        if self.timing.stall_every and self.counter % self.timing.stall_every == 0:
            first_at += self.timing.stall_ms / 1000
        await self._sleep_until(first_at)
        due = first_at  # when the last chunk was due: each chunk is due its tokens' gaps later
        if self.timing.empty_stream:
            event(b"[DONE]")
            writer.write(b"0\r\n\r\n")
            return
        if chat:  # vLLM sends the role first, with the first token
            event(
                {
                    "id": rid,
                    "object": "chat.completion.chunk",
                    "model": self.timing.model,
                    "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}],
                }
            )
        event(chunk(1, n == 1), bad_utf8=self.timing.bad_utf8)
        sent = 1
        await writer.drain()
        while sent < n:
            if self.timing.error_after and sent >= self.timing.error_after:
                event(
                    {
                        "error": {
                            "object": "error",
                            "message": "injected error mid-stream",
                            "type": "InternalServerError",
                            "code": 500,
                        }
                    }
                )
                break
            if self.timing.cut_after and sent >= self.timing.cut_after:
                await writer.drain()
                writer.transport.abort()  # mid-stream: no [DONE], no terminating chunk
                raise ConnectionResetError("injected cut")
            tokens = min(k, n - sent)
            due += sum(noisy(self.timing.itl) for _ in range(tokens))
            await self._sleep_until(due)
            sent += tokens
            event(chunk(tokens, sent == n))
            await writer.drain()
        if (request.get("stream_options") or {}).get("include_usage") and sent == n:
            event(
                {
                    "id": rid,
                    "object": "chat.completion.chunk" if chat else "text_completion",
                    "model": self.timing.model,
                    "choices": [],
                    "usage": {
                        "prompt_tokens": prompt_tokens,
                        "completion_tokens": n,
                        "total_tokens": prompt_tokens + n,
                    },
                }
            )
        if not self.timing.no_done:
            event(b"[DONE]")
        writer.write(b"0\r\n\r\n")
        if self.trace:
            self.trace.write(
                json.dumps({"tag": tag, "accepted": accepted, "arrived": arrived, "writes": writes}) + "\n"
            )


async def serve_forever(host: str, port: int, timing: Timing, ready=None) -> None:
    server = LatencyServer(timing)
    listener = await asyncio.start_server(server.handle, host, port, backlog=4096, limit=2**20)
    if ready is not None:
        ready(listener.sockets[0].getsockname()[1])
    async with listener:
        await listener.serve_forever()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--ttft-ms", type=float, default=0.0, help="time to first token, from request arrival")
    parser.add_argument("--itl-ms", type=float, default=0.0, help="gap between tokens")
    parser.add_argument("--tokens-per-chunk", type=int, default=1, help="tokens per streamed chunk (stream interval)")
    parser.add_argument("--model", default="latency-server")
    parser.add_argument("--max-model-len", type=int, default=1_000_000)
    parser.add_argument("--fail-every", type=int, default=0, help="answer 500 to every Nth generation request")
    parser.add_argument("--cut-after", type=int, default=0, help="drop the connection after N tokens")
    parser.add_argument("--no-done", action="store_true", help="never send [DONE]")
    parser.add_argument("--empty-stream", action="store_true", help="streams with no chunk at all")
    parser.add_argument("--error-after", type=int, default=0, help="after N tokens, an error event and then [DONE]")
    parser.add_argument(
        "--stall-every", type=int, default=0, help="hold back every Nth generation request's first token"
    )
    parser.add_argument("--stall-ms", type=float, default=0.0, help="by this many ms (with --stall-every)")
    parser.add_argument(
        "--bad-utf8",
        action="store_true",
        help="send each answer's first token as bytes that "
        "are not UTF-8 (in the JSON body, or in a stream's first token chunk)",
    )
    parser.add_argument(
        "--trace",
        metavar="FILE",
        help="tag each stream's first token with its request id and "
        "append the times its events were written to FILE (JSON lines)",
    )
    parser.add_argument(
        "--jitter",
        type=float,
        default=0.0,
        metavar="SIGMA",
        help="multiply each request's TTFT and each ITL gap by a log-normal factor of mean 1, "
        "exp(N(0, SIGMA^2) - SIGMA^2/2) (default 0: exact latencies)",
    )
    parser.add_argument(
        "--run-drift",
        type=float,
        default=0.0,
        metavar="SIGMA",
        help="multiply every latency by one such factor, drawn once at start (default 0: none)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of --jitter and --run-drift (default 0)")
    parser.add_argument(
        "--max-running",
        type=int,
        default=0,
        metavar="K",
        help="serve at most K generation requests at once; the rest wait for a slot (default 0: no limit)",
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    timing = Timing(
        args.ttft_ms / 1000,
        args.itl_ms / 1000,
        args.tokens_per_chunk,
        args.model,
        args.max_model_len,
        args.fail_every,
        args.cut_after,
        args.no_done,
        args.empty_stream,
        args.error_after,
        args.stall_every,
        args.stall_ms,
        bad_utf8=args.bad_utf8,
        trace=args.trace,
        jitter=args.jitter,
        run_drift=args.run_drift,
        seed=args.seed,
        max_running=args.max_running,
    )
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass

    noise = (
        f" jitter={args.jitter} drift={drift_factor(timing):.4f} seed={args.seed}"
        if args.jitter or args.run_drift
        else ""
    )

    def ready(port: int) -> None:
        print(f"listening on {args.host}:{port} ttft={args.ttft_ms} ms itl={args.itl_ms} ms{noise}", flush=True)

    asyncio.run(serve_forever(args.host, args.port, timing, ready))


if __name__ == "__main__":
    main()


@contextmanager
def running(**options: object) -> Iterator[str]:
    """Run the server in a subprocess on a free port; yields its base URL.

    Keyword options are the command-line flags: ``running(ttft_ms=50, itl_ms=10, fail_every=3)``.
    """
    argv = [sys.executable, "-m", "pytest_vllm_serve.tools.latency_server", "--port", "0"]
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            argv.append(flag)
        elif value not in (False, None):
            argv += [flag, str(value)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        match = re.search(r"listening on ([^ ]+):(\d+)", line)
        if not match:
            raise RuntimeError(f"the latency server did not start: {line!r}")
        yield f"http://{match.group(1)}:{match.group(2)}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
