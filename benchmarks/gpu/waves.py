"""How a closed-loop (max concurrency) run's requests got their first tokens, wave by wave.

    python benchmarks/gpu/waves.py [--concurrency 64] [--gap-ms 20] RESULT.json ...

Each RESULT.json is a detailed result from either client: a plugin point file
(``points/*.json``) or ``vllm bench serve --save-detailed`` output. With a
concurrency cap C and equal requests, the run goes in waves of C requests that
start together. vLLM prefills a wave's prompts a token budget at a time, so the
wave's first tokens come in groups, one group per prefill step, and the requests
of a wave then finish together. This prints, per run: TTFT/TPOT/end-to-end
p50, ITL p99 and how many ITLs are over 5x the median (tokens produced in a
step that also carried a prefill chunk), and for each wave the
size of each first-token group and when it came (ms after the wave's first
request started), TTFT/TPOT/end-to-end p50 and the correlation of TTFT and
TPOT over the wave's requests.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Run:
    name: str
    start: np.ndarray  # send times, s (any origin)
    ttft: np.ndarray  # s
    decode: np.ndarray  # first to last token, s
    tokens: np.ndarray  # output tokens
    itl: np.ndarray  # every inter-token gap of every request, s


def load(path: Path) -> Run:
    data = json.loads(path.read_text())
    itls = data["itls"]
    return Run(
        path.stem,
        np.asarray(data["start_times"], float),
        np.asarray(data["ttfts"], float),
        np.asarray([sum(i) for i in itls], float),
        np.asarray(data["output_lens"], float),
        np.asarray([gap for i in itls for gap in i], float),
    )


def waves(start: np.ndarray, size: int) -> list[np.ndarray]:
    """Request indices in send order, cut into consecutive waves of ``size``."""
    order = np.argsort(start, kind="stable")
    return [order[i : i + size] for i in range(0, len(order), size)]


def groups(first_token: np.ndarray, gap: float) -> list[tuple[int, float]]:
    """(count, time of the first) for each run of first-token times closer than ``gap``."""
    times = np.sort(first_token)
    out: list[tuple[int, float]] = []
    for k, t in enumerate(times):
        if k and t - times[k - 1] <= gap:
            out[-1] = (out[-1][0] + 1, out[-1][1])
        else:
            out.append((1, float(t)))
    return out


def describe(run: Run, concurrency: int, gap: float) -> list[str]:
    tpot = run.decode / np.maximum(run.tokens - 1, 1)
    e2e = run.ttft + run.decode
    slow = int((run.itl > 5 * np.median(run.itl)).sum())
    lines = [
        f"{run.name}: TTFT p50 {np.median(run.ttft) * 1e3:.1f} ms, TPOT p50 {np.median(tpot) * 1e3:.2f} ms "
        f"(mean {tpot.mean() * 1e3:.2f}), end-to-end p50 {np.median(e2e) * 1e3:.0f} ms (mean {e2e.mean() * 1e3:.0f}), "
        f"ITL p99 {np.percentile(run.itl, 99) * 1e3:.1f} ms, {slow} of {len(run.itl)} ITLs over 5x the median"
    ]
    for k, idx in enumerate(waves(run.start, concurrency)):
        t0 = run.start[idx].min()
        found = groups(run.start[idx] + run.ttft[idx] - t0, gap)
        cells = ", ".join(f"{n} @ {t * 1e3:.0f}" for n, t in found)
        corr = float(np.corrcoef(run.ttft[idx], tpot[idx])[0, 1]) if len(idx) > 2 else float("nan")
        lines.append(
            f"  wave {k + 1} ({len(idx)} requests, sent over {np.ptp(run.start[idx]) * 1e3:.0f} ms): "
            f"first tokens {cells}; TTFT p50 {np.median(run.ttft[idx]) * 1e3:.0f} ms, "
            f"TPOT p50 {np.median(tpot[idx]) * 1e3:.2f} ms, end-to-end p50 {np.median(e2e[idx]) * 1e3:.0f} ms, "
            f"corr(TTFT, TPOT) {corr:.2f}"
        )
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="+", type=Path, help="detailed result JSON files (either client)")
    parser.add_argument(
        "--concurrency", type=int, default=64, help="the run's concurrency cap = wave size (default 64)"
    )
    parser.add_argument(
        "--gap-ms", type=float, default=5.0, help="first tokens closer than this belong to one prefill step (default 5)"
    )
    args = parser.parse_args(argv)
    for path in args.results:
        print("\n".join(describe(load(path), args.concurrency, args.gap_ms / 1e3)))


if __name__ == "__main__":
    main()
