"""Does the regression gate tell noise from a regression? One run a side against N repeats.

    python benchmarks/gate_noise.py --json gate-noise.json        # 20 decisions per scenario
    python benchmarks/gate_noise.py --quick                        # 4 decisions, a first look

A decision is two inner ``pytest`` runs of one benchmark point through the plugin: a
baseline, then a candidate gated against it (``--vllm-baseline`` with ``--vllm-fail-on``).
Every run has its own start of the latency test server with its own seed, made noisy
with ``--jitter`` (each request's TTFT and each ITL gap times a log-normal factor of
mean 1) and optionally ``--run-drift`` (one such factor per server start). Scenarios:

  * same: the candidate's server is set as the baseline's. Every fail is a false alarm.
  * slower: the candidate's ITL is ``--slowdown`` longer (10 %). Every decision that
    does not fail is a miss.

Two gates, with the same threshold: "single" (``--vllm-repeats 1`` on both sides, a
plain threshold check) and "repeats" (``--vllm-repeats N`` on both sides, the
noise-aware gate: a fail needs the change beyond the threshold and the confidence
interval of the difference clear of zero; too noisy to tell is "undecided", which
does not fail). A decision's baseline run serves both of its scenarios; seeds differ
between all runs and decisions. The verdicts are the plugin's (its exit status and its
messages); the change and, for repeats, its interval are recomputed from the saved
results with the gate's own function (``noise_gate.decide``: a latency percentile over
the requests of the repeat files), to show how wide the intervals were.

How often the gate catches a slowdown depends on how many samples a run has: the
change itself must come out beyond the threshold, and its spread shrinks with the
requests (``--prompts``), not with the interval's method.

With the defaults (--jitter 0.5; 16 requests of 16 tokens at concurrency 4, TTFT 20 ms,
ITL 10 ms), 20 decisions take about 12 minutes on 2 CPUs. Progress goes to stderr, the
table to stdout (markdown), everything to --json. The results: docs/repeats.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pytest_vllm_serve.bench.gates import parse_fail_on
from pytest_vllm_serve.bench.noise_gate import decide as gate_decide
from pytest_vllm_serve.bench.noise_gate import request_samples
from pytest_vllm_serve.bench.sinks.baseline import load_baseline
from pytest_vllm_serve.tools.latency_server import Timing, drift_factor, running

POINT = """
import math
import pytest
from pytest_vllm_serve.bench.schedule import Schedule
from pytest_vllm_serve.bench.workloads import RandomWorkload

@pytest.mark.benchmark
def test_point(vllm_bench):
    s = vllm_bench.settings
    vllm_bench.run(RandomWorkload(s.input_len, s.output_len, s.num_prompts, s.seed),
                   Schedule(rate=math.inf, max_concurrency={concurrency}), suite="custom")
"""

SCENARIOS = ("same", "slower")
GATES = ("single", "repeats")


def inner_run(work: Path, name: str, url: str, args: argparse.Namespace, repeats: int, baseline: Path | None):
    """One pytest run of the point; returns (verdict, the repeats an undecided verdict asked
    for, the metric per repeat, each repeat's per-request samples or None, the results file)."""
    results = work / name
    argv = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "-q",
        "test_point.py",
        f"--vllm-url={url}",
        f"--vllm-results-dir={results}",
        f"--vllm-num-prompts={args.prompts}",
        "--vllm-input-len=6",
        f"--vllm-output-len={args.output_len}",
        "--vllm-warmup=1",
        "--vllm-min-duration=0",  # short on purpose: the point is how many of them it takes
        "--vllm-no-plots",
        f"--vllm-repeats={repeats}",
    ]
    if baseline is not None:
        argv += [
            f"--vllm-baseline={baseline}",
            f"--vllm-fail-on={args.fail_on}",
            f"--vllm-gate-confidence={args.confidence}",
        ]
    done = subprocess.run(argv, cwd=work, capture_output=True, text=True, timeout=600)
    text = done.stdout + done.stderr
    failed = "regression against --vllm-baseline" in text
    if done.returncode not in (0, 1) or (done.returncode == 1) != failed:
        raise RuntimeError(f"inner run {name} ended {done.returncode}:\n{text[-3000:]}")
    verdict = "fail" if failed else "undecided" if "undecided, too noisy" in text else "pass"
    asked = re.search(r"\(--vllm-repeats (\d+)\)", text) if verdict == "undecided" else None
    summary = results / "latest" / "summary.json"
    [point] = json.loads(summary.read_text())["points"]
    repeated = (point.get("repeats") or {}).get("values")
    values = repeated[args.metric] if repeated else [point["metrics"][args.metric]]
    samples = load_baseline(summary).repeat_samples(point["id"])
    return verdict, int(asked.group(1)) if asked else None, values, samples, summary


def decide(work: Path, i: int, gate: str, args: argparse.Namespace) -> dict:
    """Decision i of one gate: a baseline run, then a candidate run per scenario against it."""
    repeats = 1 if gate == "single" else args.repeats
    seed = args.seed + 100 * i + (0 if gate == "single" else 50)
    noise = {"ttft_ms": args.ttft_ms, "jitter": args.jitter, "run_drift": args.run_drift}
    itl = {"same": args.itl_ms, "slower": args.itl_ms * args.slowdown}
    record: dict = {"decision": i, "gate": gate, "repeats": repeats, "load_average": os.getloadavg()[0]}
    with running(itl_ms=args.itl_ms, seed=seed, **noise) as url:
        _, _, base, base_samples, summary = inner_run(work, f"{i}-{gate}-baseline", url, args, repeats, None)
    record["baseline"] = {"seed": seed, "drift": _drift(args, seed), "values": base}
    for k, scenario in enumerate(SCENARIOS, 1):
        with running(itl_ms=itl[scenario], seed=seed + k, **noise) as url:
            verdict, asked, now, now_samples, _ = inner_run(work, f"{i}-{gate}-{scenario}", url, args, repeats, summary)
        samples = request_samples(args.metric, base_samples, now_samples)
        diff = gate_decide(args.threshold_spec, base, now, args.confidence, samples).difference
        assert diff is not None
        record[scenario] = {
            "seed": seed + k,
            "drift": _drift(args, seed + k),
            "values": now,
            "verdict": verdict,
            "repeats_asked": asked,
            "change_pct": diff.change,
            "ci_pct": [diff.ci_low, diff.ci_high],
            "over": diff.over,
        }
    return record


def _drift(args: argparse.Namespace, seed: int) -> float:
    return drift_factor(Timing(run_drift=args.run_drift, seed=seed))


def progress(record: dict, total: int) -> str:
    parts = []
    for scenario in SCENARIOS:
        r = record[scenario]
        ci = f" [{r['ci_pct'][0]:+.1f}, {r['ci_pct'][1]:+.1f}]" if record["repeats"] > 1 else ""
        parts.append(f"{scenario} {r['change_pct']:+.1f}%{ci} {r['verdict']}")
    return f"[{record['decision'] + 1}/{total}] {record['gate']}: " + ", ".join(parts)


def tally(records: list[dict]) -> list[dict]:
    """Per scenario and gate: the verdicts, the rate that matters, and the changes seen."""
    rows = []
    for scenario in SCENARIOS:
        for gate in GATES:
            mine = [r for r in records if r["gate"] == gate]
            verdicts = [r[scenario]["verdict"] for r in mine]
            changes = [r[scenario]["change_pct"] for r in mine]
            widths = [r[scenario]["ci_pct"][1] - r[scenario]["ci_pct"][0] for r in mine]
            asked = [r[scenario]["repeats_asked"] for r in mine if r[scenario].get("repeats_asked")]
            rows.append(
                {
                    "scenario": scenario,
                    "gate": gate,
                    "decisions": len(mine),
                    "fail": verdicts.count("fail"),
                    "undecided": verdicts.count("undecided"),
                    "pass": verdicts.count("pass"),
                    "change_pct_median": statistics.median(changes),
                    "change_pct_range": [min(changes), max(changes)],
                    "ci_width_pct_median": statistics.median(widths),
                    "repeats_asked_range": [min(asked), max(asked)] if asked else None,
                }
            )
    return rows


def spread(records: list[dict]) -> dict:
    """How much the metric moved: between single runs (separate starts), and between the
    repeats of one run (one start), as coefficients of variation in percent."""

    def cv(values: list[float]) -> float:
        return statistics.stdev(values) / statistics.mean(values) * 100 if len(values) > 1 else 0.0

    singles = [r[side]["values"][0] for r in records if r["gate"] == "single" for side in ("baseline", "same")]
    within = [cv(r[side]["values"]) for r in records if r["gate"] == "repeats" for side in ("baseline", "same")]
    medians = [
        statistics.median(r[s]["values"]) for r in records if r["gate"] == "repeats" for s in ("baseline", "same")
    ]
    return {
        "single_run_cv_pct": cv(singles),
        "single_run_range": [min(singles), max(singles)],
        "within_run_repeat_cv_pct_median": statistics.median(within) if within else None,
        "median_of_repeats_cv_pct": cv(medians),
    }


def table(rows: list[dict], args: argparse.Namespace) -> str:
    label = {"single": "single run", "repeats": f"N = {args.repeats}"}
    what = {"same": "same server twice", "slower": f"ITL x {args.slowdown:g} on the candidate"}
    lines = [
        f"| scenario | gate | failed | undecided | passed | median change (range) | median {args.confidence * 100:g}% CI width |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        n = row["decisions"]
        wrong = row["fail"] if row["scenario"] == "same" else n - row["fail"]
        kind = "false alarms" if row["scenario"] == "same" else "misses"
        low, high = row["change_pct_range"]
        width = f"{row['ci_width_pct_median']:.1f} %" if row["gate"] == "repeats" else "(a point)"
        asked = row["repeats_asked_range"]
        undecided = f"{row['undecided']}/{n}" + (f" (asked for {asked[0]}-{asked[1]} repeats)" if asked else "")
        lines.append(
            f"| {what[row['scenario']]} | {label[row['gate']]} | {row['fail']}/{n} | {undecided} | "
            f"{row['pass']}/{n} ({kind}: {wrong}/{n}) | {row['change_pct_median']:+.1f} % "
            f"({low:+.1f} to {high:+.1f}) | {width} |"
        )
    return "\n".join(lines)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--decisions", type=int, default=20, help="decisions per scenario and gate (default 20)")
    parser.add_argument("--quick", action="store_true", help="4 decisions (overrides --decisions)")
    parser.add_argument("--repeats", type=int, default=5, help="N of the noise-aware gate (default 5)")
    parser.add_argument("--metric", default="median_itl_ms", help="the gated metric (default median_itl_ms)")
    parser.add_argument("--threshold", default="+5%", help="its allowed change (default +5%%)")
    parser.add_argument("--confidence", type=float, default=0.95, help="the gate's confidence (default 0.95)")
    parser.add_argument("--slowdown", type=float, default=1.10, help="the slower candidate's ITL factor (1.10)")
    parser.add_argument("--ttft-ms", type=float, default=20.0, help="the servers' TTFT (default 20)")
    parser.add_argument("--itl-ms", type=float, default=10.0, help="the baseline's ITL (default 10)")
    parser.add_argument("--jitter", type=float, default=0.5, help="latency server --jitter (default 0.5)")
    parser.add_argument("--run-drift", type=float, default=0.0, help="latency server --run-drift (default 0)")
    parser.add_argument("--prompts", type=int, default=16, help="requests per run (default 16)")
    parser.add_argument("--output-len", type=int, default=16, help="tokens per answer (default 16)")
    parser.add_argument("--concurrency", type=int, default=4, help="the point's concurrency cap (default 4)")
    parser.add_argument("--seed", type=int, default=0, help="first server seed; each run gets its own")
    parser.add_argument("--workdir", help="keep the inner runs' results here (default: a temporary directory)")
    parser.add_argument("--json", help="also write every decision and the table's figures here")
    args = parser.parse_args(argv)
    if args.quick:
        args.decisions = 4
    args.fail_on = f"{args.metric}:{args.threshold}"
    [args.threshold_spec] = parse_fail_on(args.fail_on)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the servers and remove the temporary files
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="gate-noise-") as temporary:
        work = Path(args.workdir or temporary)
        work.mkdir(parents=True, exist_ok=True)
        (work / "test_point.py").write_text(POINT.format(concurrency=args.concurrency))
        records = []
        for i in range(args.decisions):
            for gate in GATES:  # the gates take turns, so a slow spell of the machine hits both
                records.append(decide(work, i, gate, args))
                print(progress(records[-1], args.decisions), file=sys.stderr, flush=True)
    seconds = time.monotonic() - started
    rows = tally(records)
    figures = {
        "command": shlex.join([Path(sys.argv[0]).as_posix(), *(sys.argv[1:] if argv is None else argv)]),
        "settings": {k: v for k, v in vars(args).items() if k not in ("json", "workdir", "threshold_spec")},
        "seconds": round(seconds, 1),
        "rows": rows,
        "spread": spread(records),
        "load_average_max": max(r["load_average"] for r in records),  # 1-minute, at each decision's start
        "decisions": records,
    }
    print(table(rows, args))
    s = figures["spread"]
    print(
        f"\n{args.metric}: single runs CV {s['single_run_cv_pct']:.1f} % "
        f"({s['single_run_range'][0]:.3f} to {s['single_run_range'][1]:.3f}); repeats of one run: median CV "
        f"{s['within_run_repeat_cv_pct_median']:.1f} %; medians of {args.repeats} CV {s['median_of_repeats_cv_pct']:.1f} %. "
        f"{seconds / 60:.1f} min; load average up to {figures['load_average_max']:.1f} on {os.cpu_count()} CPUs."
    )
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
