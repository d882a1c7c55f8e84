"""Soak: the smoke suite, again and again, while a benchmark point saturates the server.

    python benchmarks/soak.py --url http://127.0.0.1:8000 [--seconds 300] [--json out.json]
    python benchmarks/soak.py --seconds 300            # launches the built-in model itself

This process is the load generator: it sends rate-inf rounds of random prompts
back to back. Beside it, `pytest -m smoke --vllm-url` runs in a loop. The
client's memory (RSS) and open file descriptors are taken after the first
round (warm) and at the end; a leak shows as growth. Errors of both are counted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil

from pytest_vllm_serve.bench.client import RequestOptions
from pytest_vllm_serve.bench.loadgen.generator import LoadPlan, run_load
from pytest_vllm_serve.bench.schedule import Schedule
from pytest_vllm_serve.bench.workloads import RandomWorkload, server_tokenizer
from pytest_vllm_serve.serving.launchers.local import LocalLauncher
from pytest_vllm_serve.serving.server import serve
from pytest_vllm_serve.serving.spec import ServerSpec

ROOT = Path(__file__).resolve().parents[1]


def soak(url: str, model: str, seconds: float, prompts: int) -> dict:
    with httpx.Client(base_url=url) as client:
        prompt_list = tuple(RandomWorkload(32, 32, prompts, seed=7).prompts(server_tokenizer(client, model)))
    plan = LoadPlan(url, RequestOptions(model=model), prompt_list, Schedule(rate=math.inf), warmup=0)
    me = psutil.Process()
    stop = threading.Event()
    smoke: dict = {"runs": 0, "failed_runs": 0, "first_failure": None}

    def smoke_loop() -> None:
        with tempfile.TemporaryDirectory() as results:
            while not stop.is_set():
                done = subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "pytest",
                        str(ROOT / "tests" / "smoke"),
                        "-q",
                        "-p",
                        "no:cacheprovider",
                        f"--vllm-url={url}",
                        f"--vllm-results-dir={results}",
                    ],
                    capture_output=True,
                    text=True,
                    cwd=ROOT,
                )
                smoke["runs"] += 1
                if done.returncode != 0:
                    smoke["failed_runs"] += 1
                    smoke["first_failure"] = smoke["first_failure"] or done.stdout[-1500:]

    rounds, sent, failed = 0, 0, 0
    errors: dict[str, int] = {}  # each distinct failure, counted, so a failed soak says why

    def count(records) -> int:
        bad = [r for r in records if not r.success]
        for r in bad:
            reason = f"HTTP {r.status}: {r.error}" if r.status and r.status != 200 else str(r.error)
            errors[reason[:300]] = errors.get(reason[:300], 0) + 1
        return len(bad)

    first = run_load(plan)  # warm: imports, pools and buffers settle
    sent, failed = len(first.records), count(first.records)
    rss_before, fds_before = me.memory_info().rss, me.num_fds()
    thread = threading.Thread(target=smoke_loop, daemon=True)
    thread.start()
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        result = run_load(plan)
        rounds += 1
        sent += len(result.records)
        failed += count(result.records)
    stop.set()
    thread.join()
    rss_after, fds_after = me.memory_info().rss, me.num_fds()
    return {
        "seconds": round(time.monotonic() - start, 1),
        "load_rounds": rounds + 1,
        "requests_sent": sent,
        "requests_failed": failed,
        "request_errors": errors,
        "smoke_runs": smoke["runs"],
        "smoke_runs_failed": smoke["failed_runs"],
        "smoke_first_failure": smoke["first_failure"],
        "client_rss_mb_before": round(rss_before / 2**20, 1),
        "client_rss_mb_after": round(rss_after / 2**20, 1),
        "client_rss_growth_mb": round((rss_after - rss_before) / 2**20, 1),
        "open_fds_before": fds_before,
        "open_fds_after": fds_after,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="a running server (default: launch the built-in model)")
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--prompts", type=int, default=64, help="requests per saturating round")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        if args.url:
            url = args.url.rstrip("/")
            model = httpx.get(url + "/v1/models").json()["data"][0]["id"]
        else:
            server = stack.enter_context(serve(ServerSpec(), LocalLauncher(Path(tempfile.mkdtemp(prefix="soak-")))))
            url, model = server.url, server.model
        figures = soak(url, model, args.seconds, args.prompts)
    print(json.dumps(figures, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(figures))


if __name__ == "__main__":
    main()
