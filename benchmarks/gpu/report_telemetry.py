"""The tables of run_telemetry.sh's results: the concurrency sweep's server and GPU figures, and
the gate's decisions recomputed from the saved files with the plugin's own functions.

    python benchmarks/gpu/report_telemetry.py OUT_DIR [CANDIDATE_OUT_DIR]

CANDIDATE_OUT_DIR is a gate-candidate run's (for example on a server started with
--enforce-eager), gated against OUT_DIR's baseline.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

from pytest_vllm_serve.bench.gates import parse_fail_on
from pytest_vllm_serve.bench.noise_gate import check_decisions
from pytest_vllm_serve.bench.sinks.baseline import load_baseline

GATE = "output_throughput:-5%,median_tpot_ms:+5%,p99_ttft_ms:+10%"
SWEEP = (
    ("concurrency", "max_concurrency", "{:.0f}"),
    ("requests", "completed", "{:.0f}"),
    ("out tok/s", "output_throughput", "{:.0f}"),
    ("TTFT p50 ms", "median_ttft_ms", "{:.0f}"),
    ("TPOT p50 ms", "median_tpot_ms", "{:.1f}"),
    ("KV cache max", "server_kv_cache_usage_max", "{:.0%}"),
    ("waiting max", "server_waiting_max", "{:.0f}"),
    ("preemptions", "server_preemptions", "{:.0f}"),
    ("GPU util mean %", "server_gpu_util_pct_mean", "{:.0f}"),
    ("power mean W", "server_gpu_power_w_mean", "{:.0f}"),
    ("energy J", "server_gpu_energy_j", "{:.0f}"),
    ("tokens/J", "server_output_tokens_per_joule", "{:.2f}"),
)


def cell(row: dict[str, str], key: str, fmt: str) -> str:
    value = row.get(key, "")
    return fmt.format(float(value)) if value not in ("", None) else "-"


def sweep_table(out: Path) -> str:
    rows = list(csv.DictReader((out / "res-sweep" / "latest" / "summary.csv").open()))
    rows.sort(key=lambda r: float(r["max_concurrency"]))
    lines = ["| " + " | ".join(t for t, _, _ in SWEEP) + " |", "|" + "---|" * len(SWEEP)]
    lines += ["| " + " | ".join(cell(r, k, f) for _, k, f in SWEEP) + " |" for r in rows]
    return "\n".join(lines)


def gate_table(baseline_out: Path, candidate: Path, name: str) -> str:
    baseline = load_baseline(baseline_out / "res-gate-base" / "latest" / "summary.json")
    summary = candidate / f"res-{name}" / "latest" / "summary.json"
    [point] = json.loads(summary.read_text())["points"]
    now = load_baseline(summary)
    pid = point["id"]
    base_values = {**baseline.get(pid), **(baseline.repeat_values(pid) or {})}
    now_values = {**now.get(pid), **(now.repeat_values(pid) or {})}
    result = check_decisions(
        base_values,
        now_values,
        parse_fail_on(GATE),
        baseline_samples=baseline.repeat_samples(pid),
        current_samples=now.repeat_samples(pid),
    )
    lines = [
        "| metric | baseline median [95% CI] | this run [95% CI] | change [95% CI] | over | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for d in result.decisions:
        diff, b, c = d.difference, d.baseline, d.current
        assert diff is not None and c is not None
        lines.append(
            f"| {d.metric} | {b.median:.4g} [{b.ci_low:.4g}, {b.ci_high:.4g}] | {c.median:.4g} [{c.ci_low:.4g}, "
            f"{c.ci_high:.4g}] | {diff.change:+.1f}% [{diff.ci_low:+.1f}, {diff.ci_high:+.1f}] | {diff.over} | "
            f"{d.verdict} |"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(argv[0])
    print("## Concurrency sweep\n\n" + sweep_table(out))
    print("\n## The same server twice\n\n" + gate_table(out, out, "gate-same"))
    if len(argv) > 1:
        print("\n## The candidate\n\n" + gate_table(out, Path(argv[1]), "gate-candidate"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
