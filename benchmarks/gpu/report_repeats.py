"""Part n's tables: each client's runs of a point, their median, 95 % interval and CV.

    python benchmarks/gpu/report_repeats.py OUT_DIR

The plugin's numbers are its own (each point's ``repeats`` in summary.json); `vllm bench serve`'s
five result files get the same interval (pytest_vllm_serve.bench.metrics.over_repeats), so the two
columns are computed alike.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pytest_vllm_serve.bench.metrics import over_repeats

METRICS = ("request_throughput", "output_throughput", "median_ttft_ms", "median_tpot_ms")


def plugin_rows(out: Path) -> list[tuple[str, str, list[float], dict]]:
    rows = []
    for res in sorted(out.glob("res-plugin-*")):
        summary = json.loads((res / "latest" / "summary.json").read_text())
        for point in summary["points"]:
            for metric in METRICS:
                values = point["repeats"]["values"].get(metric, [])
                rows.append((f"plugin ({res.name.removeprefix('res-plugin-')})", metric, values, point))
    return rows


def peer_rows(out: Path) -> list[tuple[str, str, list[float], dict]]:
    rows = []
    for point in ("inf", "c64"):
        runs = [json.loads(p.read_text()) for p in sorted((out / "peer").glob(f"peer-{point}-*.json"))]
        if runs:
            for metric in METRICS:
                rows.append((f"vllm bench serve ({point})", metric, [r[metric] for r in runs], {}))
    return rows


def table(rows) -> list[str]:
    lines = [
        "| client (point) | metric | runs | median | 95 % interval | width | CV |",
        "|---|---|---|---|---|---|---|",
    ]
    for client, metric, values, _ in rows:
        if not values:
            continue
        iv = over_repeats(values)
        width = 100 * (iv.ci_high - iv.ci_low) / iv.median if iv.median else float("nan")
        runs = ", ".join(f"{v:.1f}" for v in values)
        lines.append(
            f"| {client} | {metric} | {runs} | {iv.median:.2f} | [{iv.ci_low:.2f}, {iv.ci_high:.2f}] "
            f"| {width:.1f} % | {iv.cv or 0:.1f} % |"
        )
    return lines


def durations(out: Path) -> list[str]:
    lines = []
    for res in sorted(out.glob("res-plugin-*")):
        for repeat in sorted((res / "latest" / "points" / "repeats").glob("*.json")):
            run = json.loads(repeat.read_text())
            kept = run.get("pytest_vllm_serve_repeat", {})
            lines.append(
                f"{res.name}: repeat {kept.get('repeat')}: {run['completed']} requests, "
                f"measured phase {kept.get('duration', 0):.1f} s"
            )
    return lines


def main() -> None:
    out = Path(sys.argv[1])
    print("\n".join(table(plugin_rows(out) + peer_rows(out))))
    print()
    print("\n".join(durations(out)))


if __name__ == "__main__":
    main()
