"""Side-by-side tables of pytest-vllm-serve and `vllm bench serve` from a run_h200.sh output.

    python benchmarks/gpu/report.py OUT_DIR > tables.md

For every point: output throughput, TTFT/TPOT/ITL p50 and p99 by each client,
and the difference (ours - vllm) / vllm. Differences above 5% are marked **bold**
so each one can be explained. A burst point measured twice (``-again``, the
other client first) is a second row. Also each client's CPU time per request.
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_h200 import CAUSE_VARIANTS, GAP, GAP_VARIANTS, POINTS, point_id

COLUMNS = (
    ("out tok/s", "output_throughput"),
    ("TTFT p50", "median_ttft_ms"),
    ("TTFT p99", "p99_ttft_ms"),
    ("TPOT p50", "median_tpot_ms"),
    ("TPOT p99", "p99_tpot_ms"),
    ("ITL p50", "median_itl_ms"),
    ("ITL p99", "p99_itl_ms"),
)
ORDER = ("rate", "concurrency", "input", "output", "ttft")
REPEAT = (("out tok/s", "output_throughput"), ("TTFT p50", "median_ttft_ms"), ("TPOT p50", "median_tpot_ms"))


def _change(first: float, second: float) -> str:
    return f"{first:.1f} -> {second:.1f} ({(second - first) / first * 100 if first else 0.0:+.1f}%)"


def sessions(out: Path) -> list[Path]:
    """The latest results session of each pytest run in a run_h200.sh output."""
    return [(results / "latest").resolve() for results in sorted(out.glob("results-*"))]


def load(out: Path) -> list[tuple[str, str, dict, dict]]:
    rows = []
    for session in sessions(out):
        for path in sorted((session / "points").glob("*.json")):
            ours = json.loads(path.read_text())
            meta = ours["pytest_vllm_serve"]
            point = meta["id"].split("[")[-1].rstrip("]")
            peer_path = session / "peer" / f"{point}.json"
            if not peer_path.exists():
                continue
            rows.append((meta["suite"], point, ours, json.loads(peer_path.read_text())))
    return sorted(rows, key=lambda r: (ORDER.index(r[0]) if r[0] in ORDER else 9, _value(r[1])))


def _value(point: str) -> tuple[float, ...]:
    """Sort key: the swept value, then the pass (``-again``, ``-rN``)."""
    parts = point.removesuffix("-again").split("-")[1:]
    numbers = [float("inf") if p == "inf" else float(p.lstrip("r")) for p in parts]
    return (*numbers, point.endswith("-again"))


def first(point: str) -> str:
    """Who measured first: test_point alternates by place, test_burst_again reverses it."""
    if re.search(r"-r\d+$", point):  # test_ttft_repeat, test_point_repeat: the plugin first on even repeats
        return "plugin" if int(point.rsplit("r", 1)[1]) % 2 == 0 else "vllm"
    base = point.removesuffix("-again")
    place = next((i for i, (s, v, _) in enumerate(POINTS) if point_id(s, v) == base), None)
    if place is None:
        return "?"
    ours_first = (place % 2 == 0) != point.endswith("-again")
    return "plugin" if ours_first else "vllm"


def cell(ours: float, peer: float) -> str:
    diff = (ours - peer) / peer * 100 if peer else 0.0
    text = f"{ours:.1f} / {peer:.1f} ({diff:+.1f}%)"
    return f"**{text}**" if abs(diff) > 5 else text


def main() -> None:
    out = Path(sys.argv[1])
    rows = load(out)
    print(
        "Each cell: pytest-vllm-serve / vllm bench serve (difference). Latencies in ms. **Bold**: more than 5% apart.\n"
    )
    for suite in ORDER:
        suite_rows = [r for r in rows if r[0] == suite]
        if not suite_rows:
            continue
        print(f"### {suite}\n")
        print("| point | prompts | first | " + " | ".join(title for title, _ in COLUMNS) + " |")
        print("|---|---|---|" + "---|" * len(COLUMNS))
        for _, point, ours, peer in suite_rows:
            cells = [cell(float(ours.get(key) or 0), float(peer.get(key) or 0)) for _, key in COLUMNS]
            print(f"| {point} | {ours['num_prompts']} | {first(point)} | " + " | ".join(cells) + " |")
        print()
    if rows:
        print("### client CPU time per request\n")
        print("| point | pytest-vllm-serve (ms) | vllm bench serve (ms) | client processes |")
        print("|---|---|---|---|")
    for _, point, ours, peer in rows:
        n = ours["num_prompts"]
        print(
            f"| {point} | {1000 * ours['client_cpu_seconds'] / n:.2f} | {1000 * peer['client_cpu_seconds'] / n:.2f} | "
            f"{ours.get('client_processes', 1)} |"
        )
    passes = {point: (ours, peer) for _, point, ours, peer in rows}
    again = [p for p in passes if p.endswith("-again") and p.removesuffix("-again") in passes]
    if again:
        print("\n### the same point twice (burst points, the other client first the second time)\n")
        print("Each cell: first pass -> second pass (change), per client.\n")
        print("| point | " + " | ".join(f"{title}, {who}" for title, _ in REPEAT for who in ("plugin", "vllm")) + " |")
        print("|---|" + "---|" * (2 * len(REPEAT)))
        for point in again:
            one, two = passes[point.removesuffix("-again")], passes[point]
            cells = [_change(float(one[i][key]), float(two[i][key])) for _, key in REPEAT for i in (0, 1)]
            print(f"| {point.removesuffix('-again')} | " + " | ".join(cells) + " |")
    repeats = sorted(p for p in passes if p.startswith("ttft-"))
    if repeats:
        print("\n### TTFT at concurrency 1, repeated\n")
        print("| client | per-run TTFT p50 (ms) | all requests: TTFT p50 | mean (ms) |")
        print("|---|---|---|---|")
        for i, who in enumerate(("pytest-vllm-serve", "vllm bench serve")):
            medians = ", ".join(f"{passes[p][i]['median_ttft_ms']:.1f}" for p in repeats)
            pooled = [t * 1000 for p in repeats for t in passes[p][i]["ttfts"]]
            print(f"| {who} | {medians} | {statistics.median(pooled):.1f} | {statistics.fmean(pooled):.1f} |")
    cause_table(out)
    gap_table(out)
    ab_table(out)
    failed = [
        (point, ours["failed"], peer["failed"]) for _, point, ours, peer in rows if ours["failed"] or peer["failed"]
    ]
    print("\nfailed requests: " + (", ".join(f"{p}: {a} / {b}" for p, a, b in failed) if failed else "none"))


# (title, key, decimals)
CAUSE_COLUMNS = (
    ("TPOT p50", "median_tpot_ms", 2),
    ("TPOT mean", "mean_tpot_ms", 2),
    ("TTFT p50", "median_ttft_ms", 1),
    ("TTFT mean", "mean_ttft_ms", 1),
    ("end-to-end mean", "mean_e2el_ms", 0),
    ("ITL p99", "p99_itl_ms", 1),
    ("out tok/s", "output_throughput", 0),
)


def cause_table(out: Path) -> None:
    """test_concurrency_64_cause: each variant's figures in each round (part c)."""
    runs: dict[str, dict[int, dict]] = {}
    for session in sessions(out):
        for path in [*session.glob("points/*c64-*.json"), *session.glob("peer/c64-*.json")]:
            match = re.search(r"c64-(.+)-r(\d+)\.json$", path.name)
            if match:
                runs.setdefault(match[1], {})[int(match[2])] = json.loads(path.read_text())
    if not runs:
        return
    rounds = sorted({r for by_round in runs.values() for r in by_round})
    print("\n### concurrency 64 five ways (part c)\n")
    print("Each cell: round " + " / ".join(str(r) for r in rounds) + ". Latencies in ms.\n")
    print("| variant | " + " | ".join(title for title, _, _ in CAUSE_COLUMNS) + " |")
    print("|---|" + "---|" * len(CAUSE_COLUMNS))
    for variant in sorted(runs, key=lambda v: CAUSE_VARIANTS.index(v) if v in CAUSE_VARIANTS else 99):
        by_round = runs[variant]
        cells = [
            " / ".join(f"{by_round[r][key]:.{digits}f}" for r in rounds if r in by_round)
            for _, key, digits in CAUSE_COLUMNS
        ]
        print(f"| {variant} | " + " | ".join(cells) + " |")


GAP_COLUMNS = (
    ("req/s", "request_throughput", 1),
    ("TPOT p50", "median_tpot_ms", 2),
    ("TPOT mean", "mean_tpot_ms", 2),
    ("TTFT p50", "median_ttft_ms", 1),
    ("ITL p50", "median_itl_ms", 2),
)


def metric_cells(by_round: dict[int, tuple[dict, dict]], rounds: list[int], columns) -> list[str]:
    """One cell per column: the point's value in each round, "a / b / c"."""
    return [
        " / ".join(f"{by_round[r][0][key]:.{digits}f}" for r in rounds if r in by_round) for _, key, digits in columns
    ]


def server_cpu(procs: dict[str, float]) -> str:
    """ "API/engine" CPU seconds from a run's per-process CPU ("PID:NAME" -> s; vLLM names its
    engine processes VLLM::...)."""
    api = sum(v for k, v in procs.items() if not k.split(":", 1)[1].startswith("VLLM"))
    engine = sum(v for k, v in procs.items() if k.split(":", 1)[1].startswith("VLLM"))
    return f"{api:.1f}/{engine:.1f}"


def gap_table(out: Path) -> None:
    """test_gap_c64 (part g): each variant in each round, with what the server did meanwhile."""
    runs: dict[str, dict[int, tuple[dict, dict]]] = {}
    for session in sessions(out):
        for path in [*session.glob("points/*gap-*.json"), *session.glob("peer/gap-*.json")]:
            match = re.search(r"gap-(.+)-r(\d+)\.json$", path.name)
            server = session / "server" / f"gap-{match[1]}-r{match[2]}.json" if match else None
            if match and server.exists():
                runs.setdefault(match[1], {})[int(match[2])] = (
                    json.loads(path.read_text()),
                    json.loads(server.read_text()),
                )
    if not runs:
        return
    rounds = sorted({r for by_round in runs.values() for r in by_round})
    print("\n### concurrency 64 on a small model (part g)\n")
    print(
        "Each cell: round " + " / ".join(str(r) for r in rounds) + "; in brackets, the run's place in its round "
        "(1 = first). Latencies in ms. Steps: the engine's iterations (vllm:iteration_tokens_total count) during "
        "the run, warmups included; CPU: seconds of the server's API process / its engine processes.\n"
    )
    print("| variant | " + " | ".join(title for title, _, _ in GAP_COLUMNS) + " | steps | tokens/step | server CPU s |")
    print("|---|" + "---|" * (len(GAP_COLUMNS) + 3))
    for variant in sorted(runs, key=lambda v: GAP_VARIANTS.index(v) if v in GAP_VARIANTS else 99):
        by_round = runs[variant]
        cells = metric_cells(by_round, rounds, GAP_COLUMNS)
        places = [[v for r2, v in GAP if r2 == r].index(variant) + 1 for r in rounds if r in by_round]
        cells[0] += " (" + ", ".join(map(str, places)) + ")"
        steps = [by_round[r][1]["vllm:iteration_tokens_total_count"] for r in rounds if r in by_round]
        tokens = [by_round[r][1]["vllm:iteration_tokens_total_sum"] for r in rounds if r in by_round]
        cpu = [server_cpu(by_round[r][1]["cpu"]) for r in rounds if r in by_round]
        cells += [
            " / ".join(f"{v:.0f}" for v in steps),
            " / ".join(f"{t / n:.0f}" for t, n in zip(tokens, steps)),
            " / ".join(cpu),
        ]
        print(f"| {variant} | " + " | ".join(cells) + " |")


AB_VARIANTS = ("old-1", "new-1", "old-3", "peer")


def ab_table(out: Path) -> None:
    """run_ab.sh (part h): the older client, this one and vllm bench serve on one server."""
    ab = out / "ab"
    runs: dict[str, dict[int, tuple[dict, dict]]] = {}
    for server in sorted(ab.glob("server-*.json")) if ab.exists() else []:
        name = server.stem.removeprefix("server-")
        variant, round_ = name.rsplit("-r", 1)
        if variant == "peer":
            point = ab / f"{name}.json"
        else:
            point = next((out / f"res-{name}").glob("2*/points/*.json"), None)
        if point is not None and point.exists():
            runs.setdefault(variant, {})[int(round_)] = (json.loads(point.read_text()), json.loads(server.read_text()))
    if not runs:
        return
    rounds = sorted({r for by_round in runs.values() for r in by_round})
    print("\n### the older client, this one and vllm bench serve (part h)\n")
    print(
        "Each cell: round " + " / ".join(str(r) for r in rounds) + "; in brackets, the run's place in its round. "
        "old-N: the client before this change with N processes; new-1: this client; server CPU: API process / "
        "engine processes, seconds.\n"
    )
    print(
        "| variant | " + " | ".join(title for title, _, _ in GAP_COLUMNS) + " | steps | server CPU s | client package |"
    )
    print("|---|" + "---|" * (len(GAP_COLUMNS) + 3))
    for variant in sorted(runs, key=lambda v: AB_VARIANTS.index(v) if v in AB_VARIANTS else 99):
        by_round = runs[variant]
        cells = metric_cells(by_round, rounds, GAP_COLUMNS)
        order = [v for v in AB_VARIANTS if v in runs]  # the run's variants, in run_ab.sh's order
        places = [(order.index(variant) - r) % len(order) + 1 for r in rounds if r in by_round]
        cells[0] += " (" + ", ".join(map(str, places)) + ")"
        steps = " / ".join(
            f"{by_round[r][1]['vllm:iteration_tokens_total_count']:.0f}" for r in rounds if r in by_round
        )
        cpu = [server_cpu(by_round[r][1]["cpu"]) for r in rounds if r in by_round]
        trees = sorted({Path(by_round[r][1].get("client_package", "?")).parent.name for r in rounds if r in by_round})
        print(f"| {variant} | " + " | ".join(cells) + f" | {steps} | {' / '.join(cpu)} | {', '.join(trees)} |")


if __name__ == "__main__":
    main()
