"""Client capacity: the highest request rate each client sustains on schedule.

    python benchmarks/client_capacity.py [--rates 100,200,...] [--seconds 3]

Against the fastest server available here (the latency test server answering
every request at once with a single token), each client is asked for a
constant request rate R. A rate is sustained when the achieved rate, (n-1) /
(last send - first send), is within 2% of R and the median send lag is under
1 ms. Send lag is measured against the ideal constant-rate schedule anchored at
the first send: lag_i = send_i - (send_0 + i / R), for both clients alike.

The clients alternate at every rate: `vllm bench serve` (one asyncio process)
and pytest-vllm-serve with one client process and with `--processes` (default:
the CPU count). Also reports each client's CPU time per request.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
from vllm_bench import bench_serve_argv  # benchmarks/, next to this script

from pytest_vllm_serve.bench.client import Prompt, RequestOptions
from pytest_vllm_serve.bench.loadgen.generator import LoadPlan, run_load
from pytest_vllm_serve.bench.schedule import Schedule
from pytest_vllm_serve.serving.models import ensure_tiny_model
from pytest_vllm_serve.tools.latency_server import running


def judge(send_times: list[float], rate: float) -> tuple[float, float]:
    """(achieved rate, median lag in ms) against the ideal schedule from the first send."""
    sends = sorted(send_times)
    achieved = (len(sends) - 1) / (sends[-1] - sends[0])
    lags = [s - (sends[0] + i / rate) for i, s in enumerate(sends)]
    return achieved, statistics.median(lags) * 1000


def ours(url: str, rate: float, n: int, processes: int) -> tuple[list[float], float, int]:
    prompts = tuple(Prompt("a b c d", 4, 1) for _ in range(n))
    plan = LoadPlan(
        url,
        RequestOptions(model="latency-server", endpoint="completions"),
        prompts,
        Schedule(rate=rate, burstiness=math.inf),
        warmup=2,
        processes=processes,
    )
    result = run_load(plan)
    failed = sum(1 for r in result.records if not r.success)
    return [r.dispatch_time for r in result.records], result.client_cpu_seconds, failed


def theirs(url: str, rate: float, n: int, tokenizer: str) -> tuple[list[float], float, int]:
    with tempfile.TemporaryDirectory() as out:
        argv = bench_serve_argv(url, tokenizer, n, 1, out, "--request-rate", str(rate), "--burstiness", "inf")
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        ps = psutil.Process(proc.pid)
        cpu_start = None
        output = []
        for line in proc.stdout:  # CPU counted from the start of the measured phase
            output.append(line)
            if "Starting main benchmark run" in line:
                times = ps.cpu_times()
                cpu_start = times.user + times.system
        times = ps.cpu_times()
        cpu_end = times.user + times.system
        proc.wait()
        if proc.returncode != 0:
            raise RuntimeError("".join(output[-40:]))
        data = json.loads(next(Path(out).glob("*.json")).read_text())
    failed = sum(1 for e in data["errors"] if e)
    return data["start_times"], cpu_end - (cpu_start or cpu_end), failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default="100,200,400,600,800,1000,1200,1500,2000,2500,3000")
    parser.add_argument("--seconds", type=float, default=3.0, help="schedule length per rate")
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()
    tokenizer = str(ensure_tiny_model())
    rates = [float(r) for r in args.rates.split(",")]
    clients = {
        "vllm bench serve": None,
        "pytest-vllm-serve, 1 process": 1,
        f"pytest-vllm-serve, {args.processes} processes": args.processes,
    }
    rows = []
    best = {name: 0.0 for name in clients}
    with running() as url:
        for rate in rates:
            n = max(200, int(rate * args.seconds))
            for name, processes in clients.items():
                started = time.monotonic()
                if processes is None:
                    sends, cpu, failed = theirs(url, rate, n, tokenizer)
                else:
                    sends, cpu, failed = ours(url, rate, n, processes)
                achieved, lag = judge(sends, rate)
                ok = abs(achieved - rate) / rate <= 0.02 and lag < 1.0 and failed == 0
                if ok:
                    best[name] = max(best[name], rate)
                rows.append((rate, name, achieved, lag, 1000 * cpu / n, failed, ok))
                print(
                    f"{rate:>6g} req/s {name:<34} achieved {achieved:8.1f}  lag {lag:7.3f} ms  "
                    f"cpu {1000 * cpu / n:.3f} ms/req  failed {failed}  {'ok' if ok else 'NOT SUSTAINED'} "
                    f"({time.monotonic() - started:.0f} s)",
                    file=sys.stderr,
                )
    print(
        "| target req/s | client | achieved req/s | median send lag (ms) | client CPU per request (ms) | failed | sustained |"
    )
    print("|---|---|---|---|---|---|---|")
    for rate, name, achieved, lag, cpu, failed, ok in rows:
        print(f"| {rate:g} | {name} | {achieved:.1f} | {lag:.3f} | {cpu:.3f} | {failed} | {'yes' if ok else 'no'} |")
    print()
    print("| client | highest sustained rate (req/s) |")
    print("|---|---|")
    for name, rate in best.items():
        print(f"| {name} | {rate:g} |")


if __name__ == "__main__":
    main()
