"""A point's progress lines while its load runs."""

from __future__ import annotations

import time
from collections.abc import Callable

from pytest_vllm_serve.bench.loadgen.generator import LoadPlan
from pytest_vllm_serve.bench.repeats import Repeat
from pytest_vllm_serve.bench.schedule import Schedule


def point_label(node_id: str, schedule: Schedule, plan: LoadPlan, repeat: Repeat) -> str:
    """How the progress lines name a point: its test, schedule and amount of work (and repeat)."""
    sent = f"for {plan.send_for:g} s" if plan.send_for else f"{len(plan.prompts)} prompts"
    if plan.conversations is not None:
        sent = f"{len(plan.conversations)} sessions, {plan.requests} turns"
    label = f"{node_id.split('::')[-1]} ({schedule.describe()}, {sent})"
    if repeat.repeated:
        label += f", repeat {repeat.index}/{repeat.count}"
    return label


def progress_reporter(
    writer: Callable[[str], None] | None, label: str, started: float
) -> Callable[[int, int, int], None]:
    """What the load generator calls with (finished, failed, total) now and then."""

    def report(finished: int, failed: int, total: int) -> None:
        if writer is not None:
            writer(
                f"[vllm-bench] {label}: {finished}/{total} done, {failed} failed, {time.monotonic() - started:.0f} s"
            )

    return report
