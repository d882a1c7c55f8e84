"""Measurement accuracy: our client vs `vllm bench serve` against a server with known latencies.

    python benchmarks/accuracy.py [--ttft-ms 50] [--itl-ms 10] [--tokens 32] [--repeats 5] [--points 1:24,64:256,200:200]

The latency test server streams exactly N tokens, the first TTFT after the
request arrives and then one every ITL (absolute times, no drift). Both clients
run against the same server in the same run, alternating, at each point
(concurrency:prompts; 200:200 is a 200-request burst like a rate-inf point). The
error of a measurement is (measured - set); the table reports the median error of
TTFT and of ITL per client (lower is better), each the median over repeats.

The server also keeps a trace (``--trace``): when each request arrived and when
each chunk was written, on the same clock as the clients. From it the table adds,
per client, the median lag from the client's send stamp to the request's arrival
at the server (time a client counts in TTFT that the server never saw), and the
arrival spread of the opening burst (first to last of the first `concurrency`
requests to arrive): how fast the client really got its burst to the server.

vLLM's ITL definition includes the gap between the chat role chunk and the
first token chunk, so both clients use the completions endpoint here.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from vllm_bench import bench_serve_argv  # benchmarks/, next to this script

from pytest_vllm_serve.bench.client import Prompt, RequestOptions
from pytest_vllm_serve.bench.loadgen.generator import LoadPlan, run_load
from pytest_vllm_serve.bench.schedule import Schedule
from pytest_vllm_serve.serving.models import ensure_tiny_model
from pytest_vllm_serve.tools.latency_server import running


@dataclass
class Run:
    """One client's run at one point: per request, its tag, send stamp, TTFT and ITLs."""

    tags: list[str]
    sends: list[float]
    ttfts: list[float]
    itls: list[list[float]]


def _tag(text: str) -> str:
    return re.match(r"req-\d+", text).group()


def ours(url: str, concurrency: int, n: int, tokens: int) -> Run:
    prompts = tuple(Prompt("alpha beta gamma delta", 4, tokens) for _ in range(n))
    plan = LoadPlan(
        url,
        RequestOptions(model="latency-server", endpoint="completions"),
        prompts,
        Schedule(rate=math.inf, max_concurrency=concurrency),
        warmup=2,
        processes=1,
    )
    result = run_load(plan)
    ok = [r for r in result.records if r.success]
    assert len(ok) == n, [r.error for r in result.records if not r.success][:3]
    return Run(
        [_tag("".join(r.text_parts)) for r in ok], [r.send_time for r in ok], [r.ttft for r in ok], [r.itl for r in ok]
    )


def theirs(url: str, concurrency: int, n: int, tokens: int, tokenizer: str) -> Run:
    with tempfile.TemporaryDirectory() as out:
        proc = subprocess.run(
            bench_serve_argv(
                url, tokenizer, n, tokens, out, "--max-concurrency", str(concurrency), "--num-warmups", "2"
            ),
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise RuntimeError(proc.stdout[-2000:] + proc.stderr[-2000:])
        data = json.loads(next(Path(out).glob("*.json")).read_text())
    ok = [i for i, e in enumerate(data["errors"]) if not e]
    assert len(ok) == n
    return Run(
        [_tag(data["generated_texts"][i]) for i in ok],
        [data["start_times"][i] for i in ok],
        [data["ttfts"][i] for i in ok],
        [data["itls"][i] for i in ok],
    )


def served(trace: Path, offset: int) -> tuple[dict[str, dict], int]:
    """The trace lines written since ``offset`` (by tag), and the new offset."""
    with trace.open() as f:
        f.seek(offset)
        text = f.read()
        return {line["tag"]: line for line in map(json.loads, text.splitlines())}, f.tell()


def median_error(values: list[float], target: float) -> float:
    return statistics.median(abs(v - target) for v in values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ttft-ms", type=float, default=50.0)
    parser.add_argument("--itl-ms", type=float, default=10.0)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--points", default="1:24,64:256,200:200", help="concurrency:prompts, comma-separated")
    args = parser.parse_args()
    tokenizer = str(ensure_tiny_model())
    ttft, itl = args.ttft_ms / 1000, args.itl_ms / 1000
    columns = ("ttft", "itl", "lag", "spread")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        trace = Path(tmp) / "trace.jsonl"
        trace.touch()
        offset = 0
        with running(ttft_ms=args.ttft_ms, itl_ms=args.itl_ms, trace=str(trace)) as url:
            for concurrency, n in (tuple(int(x) for x in p.split(":")) for p in args.points.split(",")):
                figures: dict[str, dict[str, list[float]]] = {w: {c: [] for c in columns} for w in ("ours", "vllm")}
                for repeat in range(args.repeats):
                    order = ("ours", "vllm") if repeat % 2 == 0 else ("vllm", "ours")
                    for who in order:
                        run = (
                            ours(url, concurrency, n, args.tokens)
                            if who == "ours"
                            else theirs(url, concurrency, n, args.tokens, tokenizer)
                        )
                        lines, offset = served(trace, offset)
                        arrivals = sorted(lines[t]["arrived"] for t in run.tags)[:concurrency]
                        f = figures[who]
                        f["ttft"].append(median_error(run.ttfts, ttft))
                        f["itl"].append(median_error([g for gaps in run.itls for g in gaps], itl))
                        f["lag"].append(statistics.median(lines[t]["arrived"] - s for t, s in zip(run.tags, run.sends)))
                        f["spread"].append(arrivals[-1] - arrivals[0])
                        print(
                            f"concurrency {concurrency} repeat {repeat + 1} {who}: TTFT err {f['ttft'][-1] * 1000:.3f} ms, "
                            f"ITL err {f['itl'][-1] * 1000:.3f} ms, send-to-server lag {f['lag'][-1] * 1000:.3f} ms, "
                            f"burst arrival spread {f['spread'][-1] * 1000:.1f} ms",
                            file=sys.stderr,
                            flush=True,
                        )
                for who in ("ours", "vllm"):
                    rows.append((concurrency, n, who, *(statistics.median(figures[who][c]) * 1000 for c in columns)))
    print(
        f"Set TTFT {args.ttft_ms:g} ms, ITL {args.itl_ms:g} ms, {args.tokens} tokens per request; "
        f"median |measured - set| per run, median of {args.repeats} runs.\n"
    )
    print(
        "| concurrency | prompts | client | TTFT error (ms) | ITL error (ms) | send-to-server lag (ms) | burst arrival spread (ms) |"
    )
    print("|---|---|---|---|---|---|---|")
    for concurrency, n, who, t, i, lag, spread in rows:
        name = "pytest-vllm-serve" if who == "ours" else "vllm bench serve"
        print(f"| {concurrency} | {n} | {name} | {t:.3f} | {i:.3f} | {lag:.3f} | {spread:.1f} |")


if __name__ == "__main__":
    main()
