"""The tables of run_slo.sh's results: each SLO search's probes and answer, and the rate sweep's
points on the same server with whether each met the same SLO (checked with the plugin's own
bench/slo.py).

    python benchmarks/gpu/report_slo.py OUT_DIR [OUT_DIR ...]
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

from pytest_vllm_serve.bench.slo import parse_slo

COLUMNS = (
    ("rate", "request_rate", "{:g}"),
    ("sent req/s", "achieved_request_rate", "{:.2f}"),
    ("requests", "completed", "{:.0f}"),
    ("TTFT p99 ms", "p99_ttft_ms", "{:.0f}"),
    ("TPOT p99 ms", "p99_tpot_ms", "{:.1f}"),
    ("out tok/s", "output_throughput", "{:.0f}"),
)


def cell(values: dict, key: str, fmt: str) -> str:
    value = values.get(key)
    return fmt.format(float(value)) if value not in ("", None) else "-"


def meets(values: dict, slo: str) -> str:
    bounds, _warnings = parse_slo(slo)
    numbers = {k: float(v) for k, v in values.items() if v not in ("", None) and _number(v)}
    return "yes" if all(b.holds(numbers) for b in bounds) else "no"


def _number(value: object) -> bool:
    try:
        float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return True


def searches(out: Path) -> list[str]:
    lines = []
    for path in sorted(out.glob("res-*search-*/latest/slo_search.json")):
        doc = json.loads(path.read_text())
        slo = ",".join(f"{m}{b}" for m, b in doc["slo"].items())
        lines += [
            f"### {path.parts[-3]}: best {doc['variable']} {doc.get('best')} (bracket {doc.get('bracket')}) for {slo}",
            "",
            "| probe | " + doc["variable"] + " | met | " + " | ".join(t for t, _, _ in COLUMNS[1:]) + " |",
            "|" + "---|" * (len(COLUMNS) + 2),
        ]
        for i, probe in enumerate(doc["probes"], 1):
            row = [str(i), f"{probe['value']:g}", "yes" if probe["passed"] else "no"]
            lines.append("| " + " | ".join(row + [cell(probe["metrics"], k, f) for _, k, f in COLUMNS[1:]]) + " |")
        if doc.get("stopped"):
            lines.append(f"\nstopped: {doc['stopped']}")
        lines.append("")
    return lines


def sweep(out: Path, slo: str) -> list[str]:
    lines = []
    for path in sorted(out.glob("res-sweep-*/latest/summary.csv")):
        rows = sorted(csv.DictReader(path.open()), key=lambda r: float(r["request_rate"]))
        lines += [
            f"### {path.parts[-3]}: the rate sweep on the same server (meets {slo}?)",
            "",
            "| " + " | ".join(t for t, _, _ in COLUMNS) + " | meets |",
            "|" + "---|" * (len(COLUMNS) + 1),
        ]
        lines += ["| " + " | ".join(cell(r, k, f) for _, k, f in COLUMNS) + f" | {meets(r, slo)} |" for r in rows]
        lines.append("")
    return lines


def main(argv: list[str]) -> None:
    for out in map(Path, argv):
        docs = [json.loads(p.read_text()) for p in sorted(out.glob("res-*search-*/latest/slo_search.json"))]
        slo = ",".join(f"{m}{b}" for m, b in docs[0]["slo"].items()) if docs else "p99_ttft_ms<=300,p99_tpot_ms<=30"
        print(f"## {out.name}\n")
        print("\n".join(searches(out) + sweep(out, slo)))


if __name__ == "__main__":
    main(sys.argv[1:])
