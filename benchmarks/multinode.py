"""A server across two SLURM nodes against one node with DP=2: startup, throughput, and the
plugin's own overhead per job.

    python benchmarks/multinode.py --rounds 2 [--partition multi] [--json out.json]

Each round runs, in alternating order, the same small point of the shipped concurrency suite
(``test_concurrency`` at --concurrency, --prompts prompts of 64 tokens in and 32 out) in a
fresh pytest session against:
  * two-node: ``--vllm-slurm --vllm-slurm-opt="--partition=P --nodes=2" --vllm-dp 2`` (the rpc
    backend: the head and a headless worker, one engine on each node);
  * one-node: ``--vllm-dp 2`` with the local launcher (both engines in one process tree, on this
    machine).
Both serve the built-in model in float32 (bf16 across two nodes dies of SIGILL on CPUs with AMX;
docs/slurm.md). Per run: the server's startup as the plugin measured it (from the launch call
to healthy), the point's throughput and latencies, and for the SLURM job its submit-to-running
and running-to-healthy split (from ``scontrol show job``: whole seconds). Prints a Markdown
table with the median and the spread over the rounds.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import statistics
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVE_ARGS = "--vllm-serve-args=--max-model-len 8192 --dtype float32"
KEYS = ("request_throughput", "output_throughput", "median_ttft_ms", "median_tpot_ms")


def layouts(partition: str) -> dict[str, list[str]]:
    return {
        "two-node": ["--vllm-slurm", f"--vllm-slurm-opt=--partition={partition} --nodes=2", "--vllm-dp=2"],
        "one-node": ["--vllm-dp=2"],
    }


def job_times(job_id: str) -> tuple[float, float] | None:
    """(SubmitTime, StartTime) of a SLURM job as epoch seconds, while slurmctld still knows it."""
    out = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True).stdout
    found = dict(re.findall(r"(SubmitTime|StartTime)=(\S+)", out))
    if len(found) < 2:
        return None
    return tuple(datetime.fromisoformat(found[k]).timestamp() for k in ("SubmitTime", "StartTime"))  # type: ignore[return-value]


def run(name: str, args: list[str], concurrency: int, prompts: int) -> dict[str, float | str]:
    with tempfile.TemporaryDirectory(prefix=f"multinode-{name}-") as tmp:
        results = Path(tmp) / "results"
        argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--vllm-suite=benchmarks",
                "-k", "test_concurrency and not type", f"--vllm-sweep-concurrency={concurrency}",
                f"--vllm-num-prompts={prompts}", "--vllm-input-len=64", "--vllm-output-len=32",
                f"--vllm-results-dir={results}", SERVE_ARGS, *args]  # fmt: skip
        done = subprocess.run(argv, cwd=tmp, capture_output=True, text=True, timeout=900)
        text = done.stdout + done.stderr
        startup = re.search(r"\(startup ([\d.]+) s", text)
        rows = list(csv.DictReader((results / "latest" / "summary.csv").open())) if done.returncode == 0 else []
        if not startup or len(rows) != 1:
            raise SystemExit(f"{name}: the session failed (exit {done.returncode}):\n{text[-3000:]}")
        out: dict[str, float | str] = {"layout": name, "startup_s": float(startup.group(1))}
        out.update({k: float(rows[0][k]) for k in KEYS})
        batch = next(iter(sorted((results / "latest" / "logs").rglob("batch-*.log"))), None)
        if batch is not None:
            job = batch.stem.removeprefix("batch-")
            times = job_times(job)
            if times is not None:
                out["job"] = job
                out["submit_to_running_s"] = times[1] - times[0]
                out["running_to_healthy_s"] = out["startup_s"] - out["submit_to_running_s"]  # type: ignore[operator]
        return out


def table(runs: list[dict[str, float | str]]) -> str:
    figures = ("startup_s", "submit_to_running_s", "running_to_healthy_s", *KEYS)
    lines = ["| layout | " + " | ".join(figures) + " |", "|" + "---|" * (len(figures) + 1)]
    for name in ("two-node", "one-node"):
        mine = [r for r in runs if r["layout"] == name]
        cells = []
        for key in figures:
            values = [float(r[key]) for r in mine if key in r]
            cells.append(f"{statistics.median(values):.2f} ({min(values):.2f} to {max(values):.2f})" if values else "-")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--partition", default="multi")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--json", type=Path, default=None, help="also write every run's figures here")
    args = parser.parse_args()
    runs = []
    for round_ in range(args.rounds):
        order = list(layouts(args.partition).items())
        if round_ % 2:
            order.reverse()
        for name, extra in order:
            print(f"round {round_ + 1}: {name} ...", file=sys.stderr, flush=True)
            runs.append(run(name, extra, args.concurrency, args.prompts))
            print(f"  {runs[-1]}", file=sys.stderr, flush=True)
            if args.json is not None:
                args.json.write_text(json.dumps(runs, indent=1))
    print(table(runs))


if __name__ == "__main__":
    main()
