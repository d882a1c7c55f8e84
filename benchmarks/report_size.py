"""The HTML report at scale: file size, build time and render time in headless Chromium.

Writes a synthetic results directory of N points (the rate, concurrency, input and output
sweeps, each point with its per-request lists as a real point file has them), builds its
report.html with the plugin's own code, and opens it in Chromium (Debian's package, driven by
Playwright) until the page says it has drawn its plots; then sorts the table once and opens a
point's details. Repeated, since these machines are noisy.

    python benchmarks/report_size.py --points 1000 --requests 200 --repeats 3

Prints one line per repeat and a JSON summary; docs/report.md quotes the figures.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pytest_vllm_serve.bench.sinks.report import load_run, write_session_report
from pytest_vllm_serve.bench.sinks.results import PointRecord, ResultsStore
from tests.support.browser import open_page

SUITES = (
    ("rate", "request_rate"),
    ("concurrency", "max_concurrency"),
    ("input", "input_len"),
    ("output", "output_len"),
)


def synthetic_point(rng: random.Random, n: int, suite: str, key: str, value: float, requests: int):
    ttft = [rng.lognormvariate(-3.5, 0.4) for _ in range(requests)]
    itls = [[rng.lognormvariate(-5.5, 0.3) for _ in range(31)] for _ in range(requests)]
    latencies = [t + sum(g) for t, g in zip(ttft, itls)]
    result = {
        "ttfts": ttft, "itls": itls, "latencies": latencies, "output_lens": [32] * requests,
        "errors": [""] * requests, "chunk_tokens": [[1] * 32 for _ in range(requests)],
    }  # fmt: skip
    metrics = {
        "completed": requests, "failed": 0, "request_throughput": 10 + value / 100, "output_throughput": 320 + value,
        "total_token_throughput": 640 + value, "median_ttft_ms": statistics.median(ttft) * 1000,
        "p99_ttft_ms": max(ttft) * 1000, "median_tpot_ms": 4.1, "median_itl_ms": 4.0, "p99_e2el_ms": max(latencies) * 1000,
    }  # fmt: skip
    point = PointRecord(
        id=f"tests/test_sweeps.py::test_{suite}[{key}={value:g}-n{n}]",  # unique per point
        suite=suite,
        params={key: value},
        metrics=metrics,
        server={"url": "http://gpu-box:8000", "model": "m", "spec": "tp=1", "command": "vllm serve m"},
    )
    return point, result


#: Each suite's points form this many lines (another server setting each), so a page of
#: 1,000 points has 4 suites x 5 lines x 50 swept values.
LINES = 5


def build(root: Path, points: int, requests: int) -> None:
    rng = random.Random(0)
    store = ResultsStore(root)
    for n in range(points):
        suite, key = SUITES[n % len(SUITES)]
        line, step = (n // len(SUITES)) % LINES, n // (len(SUITES) * LINES)
        value = float(1 + step)
        point, result = synthetic_point(rng, n, suite, key, value, requests)
        point.params["max_num_seqs"] = 2 ** (4 + line)
        path = store.points_dir / f"{n:05d}.json"
        point.file = str(path.relative_to(root))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({**result, "pytest_vllm_serve": point.to_json()}))
    store.rebuild_summaries()


def measure(root: Path) -> dict[str, float]:
    started = time.monotonic()
    page_file = write_session_report(load_run(root))
    built = time.monotonic() - started
    with open_page(page_file, timeout_s=300) as opened:
        page = opened.page
        t = time.monotonic()
        page.click("th:has-text('req/s') >> nth=0")
        sorted_s = time.monotonic() - t
        t = time.monotonic()
        page.click("tbody.point button.open")
        page.wait_for_function("document.querySelectorAll('.detail-plot .main-svg').length >= 5")
        details_s = time.monotonic() - t
        errors = opened.console_errors + opened.page_errors
        assert not errors and not opened.foreign_requests, (errors, opened.foreign_requests)
        load_s = opened.load_seconds
    return {
        "size_mb": page_file.stat().st_size / 1e6,
        "build_s": built,
        "load_s": load_s,
        "sort_s": sorted_s,
        "details_s": details_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=200, help="requests per point")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "results"
        build(root, args.points, args.requests)
        rows = []
        for k in range(args.repeats):
            row = measure(root)
            rows.append(row)
            print(f"repeat {k + 1}: " + ", ".join(f"{key} {value:.2f}" for key, value in row.items()), flush=True)
    summary = {key: {"median": statistics.median(r[key] for r in rows), "min": min(r[key] for r in rows),
                     "max": max(r[key] for r in rows)} for key in rows[0]}  # fmt: skip
    print(json.dumps({"points": args.points, "requests": args.requests, "repeats": args.repeats, **summary}, indent=1))


if __name__ == "__main__":
    main()
