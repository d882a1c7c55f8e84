"""A point's progress lines while its load runs."""

from __future__ import annotations

import time
from collections.abc import Callable


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
