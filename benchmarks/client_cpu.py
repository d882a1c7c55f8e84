"""Client CPU per request, measured differentially, against ``vllm bench serve``.

    python benchmarks/client_cpu.py [--n 1000] [--pairs 5] [--output-lens 16,256]
                                    [--concurrency 128] [--json out.json]

Whole-process CPU hides the per-request cost: pytest's collection, vLLM's CLI import and
tokenizer loading are fixed costs of seconds. So each client runs a point of N and of 3N
requests in a fresh process, and its CPU per request is

    (CPU of the 3N run - CPU of the N run) / 2N

where a run's CPU is the process's user + system time from the start of its benchmark (after
the imports, the tokenizer and the dataset: ``vllm bench serve``'s "Starting initial single
prompt test run" line, our ``run_load`` call) to its exit, results and metrics included. The
differential takes out what is the same in both runs; counting from the benchmark's start
takes out the import's own spread (``vllm bench serve``'s whole-process CPU moved by 3 s
between identical runs here, as much as 2000 requests cost). Both clients send
the same grid to the same latency test server answering at zero latency (``--ttft-ms 0
--itl-ms 0``): the completions endpoint, 4-token prompts, ``--output-lens`` tokens per
answer in one-token chunks, ``--concurrency`` requests in flight, every request at once.
Ours runs with one client process (``processes=1``), as ``vllm bench serve`` does.

A pair is both clients' four runs; the order of the clients alternates from pair to pair.
Reported per output length: each client's CPU per request in every pair, the ratio
ours/theirs per pair with its median and range, and each client's sustained request rate
(completed / duration of its 3N run, median over the pairs).

``--profile DIR`` also writes a VizTracer trace of our client on one 3N run per output
length (DIR/ours-<len>.json; open it with ``vizviewer``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil
from vllm_bench import bench_serve_argv  # benchmarks/, next to this script

from pytest_vllm_serve.serving.models import ensure_tiny_model
from pytest_vllm_serve.tools.latency_server import running

HERE = Path(__file__).resolve()
#: The line each client prints as its benchmark starts: CPU is counted from there.
THEIRS_START = "Starting initial single prompt test run"
OURS_START = "client-cpu: starting"


@dataclass(frozen=True)
class Run:
    """One client process's run: its whole CPU, and what it measured."""

    cpu_s: float
    completed: int
    duration_s: float

    @property
    def rate(self) -> float:
        return self.completed / self.duration_s if self.duration_s > 0 else math.nan


def child_cpu(argv: list[str], start_line: str) -> tuple[float, str]:
    """Run argv to its end; (its user + system CPU seconds from the moment it printed a line
    holding ``start_line`` to its exit, its output)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    ps = psutil.Process(proc.pid)
    at_start = None
    output = []
    assert proc.stdout is not None
    for line in proc.stdout:
        output.append(line)
        if at_start is None and start_line in line:
            times = ps.cpu_times()
            at_start = times.user + times.system
    proc.wait()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    text = "".join(output)
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[:4]} failed ({proc.returncode}):\n{text[-4000:]}")
    if at_start is None:
        raise RuntimeError(f"{argv[:4]} never printed {start_line!r}:\n{text[-4000:]}")
    total = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return total - at_start, text


def ours(url: str, n: int, output_len: int, concurrency: int, profile: Path | None = None) -> Run:
    argv = [sys.executable, str(HERE), "ours-child", url, str(n), str(output_len), str(concurrency)]
    if profile is not None:
        argv = [sys.executable, "-m", "viztracer", "--quiet", "-o", str(profile), "--", *argv[1:]]
    cpu, out = child_cpu(argv, OURS_START)
    data = json.loads(out.strip().splitlines()[-1])
    return Run(cpu, data["completed"], data["duration"])


def theirs(url: str, tokenizer: str, n: int, output_len: int, concurrency: int) -> Run:
    with tempfile.TemporaryDirectory() as out:
        argv = bench_serve_argv(
            url, tokenizer, n, output_len, out, "--request-rate", "inf", "--max-concurrency", str(concurrency)
        )
        cpu, _ = child_cpu(argv, THEIRS_START)
        data = json.loads(next(Path(out).glob("*.json")).read_text())
    return Run(cpu, int(data["completed"]), float(data["duration"]))


def ours_child(url: str, n: int, output_len: int, concurrency: int) -> None:
    """The client side of ``ours``: one point through the load generator, in this process."""
    from pytest_vllm_serve.bench.client import Prompt, RequestOptions
    from pytest_vllm_serve.bench.loadgen.generator import LoadPlan, run_load
    from pytest_vllm_serve.bench.schedule import Schedule

    plan = LoadPlan(
        url,
        RequestOptions(model="latency-server", endpoint="completions"),
        tuple(Prompt("a b c d", 4, output_len) for _ in range(n)),
        Schedule(rate=math.inf, max_concurrency=concurrency),
        warmup=1,
        processes=1,
    )
    print(OURS_START, flush=True)
    result = run_load(plan)
    completed = sum(1 for r in result.records if r.success)
    print(json.dumps({"completed": completed, "duration": result.duration}))


def per_request(small: Run, large: Run, n: int) -> float:
    """CPU ms per extra request: the difference of the 3N and N runs over 2N."""
    return 1000 * (large.cpu_s - small.cpu_s) / (2 * n)


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} ({min(values):.3f} to {max(values):.3f})"


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "ours-child":
        url, n, output_len, concurrency = sys.argv[2:6]
        ours_child(url, int(n), int(output_len), int(concurrency))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000, help="requests of the small run (the large: 3N)")
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--output-lens", default="16,256")
    parser.add_argument("--concurrency", type=int, default=128)
    parser.add_argument("--json", type=Path, default=None, help="also write every run here")
    parser.add_argument("--profile", type=Path, default=None, help="VizTracer traces of our client here")
    args = parser.parse_args()
    tokenizer = str(ensure_tiny_model())
    lens = [int(x) for x in args.output_lens.split(",")]
    n, c = args.n, args.concurrency
    runs: list[dict[str, object]] = []
    report: dict[int, dict[str, list[float]]] = {}
    with running(ttft_ms=0, itl_ms=0) as url:
        for output_len in lens:
            table = report.setdefault(
                output_len, {"ours": [], "theirs": [], "ratio": [], "ours_rate": [], "theirs_rate": []}
            )
            for pair in range(args.pairs):
                clients = ["ours", "theirs"] if pair % 2 == 0 else ["theirs", "ours"]
                cost: dict[str, float] = {}
                for client in clients:
                    started = time.monotonic()
                    if client == "ours":
                        small, large = ours(url, n, output_len, c), ours(url, 3 * n, output_len, c)
                    else:
                        small = theirs(url, tokenizer, n, output_len, c)
                        large = theirs(url, tokenizer, 3 * n, output_len, c)
                    for run, size in ((small, n), (large, 3 * n)):
                        if run.completed != size:
                            raise RuntimeError(f"{client} completed {run.completed} of {size} requests")
                    cost[client] = per_request(small, large, n)
                    table[f"{client}_rate"].append(large.rate)
                    runs.append(
                        {
                            "output_len": output_len,
                            "pair": pair,
                            "client": client,
                            "small": asdict(small),
                            "large": asdict(large),
                            "cpu_ms_per_request": cost[client],
                        }
                    )
                    print(
                        f"output {output_len:>4}  pair {pair + 1}  {client:<6}  {cost[client]:.3f} ms/request  "
                        f"CPU {small.cpu_s:.2f} s / {large.cpu_s:.2f} s  rate {large.rate:,.0f} req/s  "
                        f"({time.monotonic() - started:.0f} s)",
                        file=sys.stderr,
                        flush=True,
                    )
                table["ours"].append(cost["ours"])
                table["theirs"].append(cost["theirs"])
                table["ratio"].append(cost["ours"] / cost["theirs"])
            if args.profile is not None:
                args.profile.mkdir(parents=True, exist_ok=True)
                ours(url, 3 * n, output_len, c, profile=args.profile / f"ours-{output_len}.json")
    if args.json is not None:
        args.json.write_text(json.dumps({"n": n, "concurrency": c, "cpus": os.cpu_count(), "runs": runs}, indent=1))
    print(f"N = {n}, 3N = {3 * n}, concurrency {c}, {args.pairs} pairs, {os.cpu_count()} CPUs")
    print()
    print(
        "| output tokens | ours, ms/request | vllm bench serve, ms/request | ratio ours/theirs | ours, req/s | vllm bench serve, req/s |"
    )
    print("|---|---|---|---|---|---|")
    for output_len, t in report.items():
        print(
            f"| {output_len} | {spread(t['ours'])} | {spread(t['theirs'])} | {spread(t['ratio'])} | "
            f"{statistics.median(t['ours_rate']):,.0f} | {statistics.median(t['theirs_rate']):,.0f} |"
        )
    print()
    print("(medians over the pairs, the range in brackets; rates: completed / duration of the 3N runs)")


if __name__ == "__main__":
    main()
