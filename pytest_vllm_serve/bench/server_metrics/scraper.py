"""Sampling ``/metrics`` during a measured phase, in a process of its own, so that a scrape
never delays the load generator's sends.

The process (``python -m pytest_vllm_serve.bench.server_metrics.scraper``) is started during the
warmup, so that its start-up is not in the measured phase. It reads the server's headers as one
JSON line on stdin (so no key shows in the process list), waits for a second line (the phase
begins; the end of stdin before it: no phase), then GETs ``/metrics``
every interval at a lower priority (nice +5) (with ``--pid``, also the RSS of that process
tree, a launched local server's; with ``--gpus``, those GPUs through NVML), and appends one
JSON line per scrape to its file: ``{"t": ..., "samples": [[name, labels, value], ...]}``
(the gauges and counters of the time series; ``"answered"``, when its answer came;
``"gpu": [...]`` beside them) or ``{"t": ..., "error": ...}``. ``t`` is
``time.monotonic()``: CLOCK_MONOTONIC, the same clock in every process of the machine. It
stops when its stdin closes.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

import httpx

from pytest_vllm_serve.bench.server_metrics.gpu import GpuReader, GpuSample, open_reader
from pytest_vllm_serve.bench.server_metrics.parse import MetricsTextError, Snapshot, parse_metrics
from pytest_vllm_serve.bench.server_metrics.process import tree_usage
from pytest_vllm_serve.bench.server_metrics.summary import COUNTERS, GAUGES

#: What the process keeps of each scrape: the time series' names.
SERIES_NAMES = frozenset([name for name, _ in GAUGES.values()] + list(COUNTERS.values()))


#: How long the phase may wait for the scraper process to start up (its imports, on a busy machine).
READY_TIMEOUT = 30.0


class ScrapeError(Exception):
    """A scrape that gave no samples, and why."""


def scrape(client: httpx.Client, url: str, timeout: float = 5.0) -> Snapshot:
    """One GET /metrics, parsed; ScrapeError says why not."""
    t = time.monotonic()
    try:
        response = client.get(f"{url}/metrics", timeout=timeout)
    except httpx.HTTPError as exc:
        raise ScrapeError(f"GET /metrics failed: {type(exc).__name__}: {exc}") from None
    answered = time.monotonic()  # the whole answer is in: before the parse, which is ours
    if response.status_code == 404:
        raise ScrapeError("the server has no /metrics (HTTP 404)")
    if response.status_code != 200:
        raise ScrapeError(f"GET /metrics answered HTTP {response.status_code}")
    try:
        return Snapshot(t, parse_metrics(response.text), answered=answered)
    except MetricsTextError as exc:
        raise ScrapeError(f"GET /metrics answered no vLLM metrics ({exc})") from None


def _line(client: httpx.Client, url: str, pid: int | None, gpus: GpuReader | None = None) -> dict[str, Any]:
    usage = tree_usage(pid) if pid is not None else None
    extra: dict[str, Any] = {"rss": usage[1]} if usage is not None else {}
    # the GPUs are read at the scrape's own time stamp (taken as its GET starts), not after the
    # GET's answer, which a busy server can delay by a large part of a second
    read = [sample.to_json() for sample in gpus.read()] if gpus is not None else None
    try:
        snapshot = scrape(client, url)
    except ScrapeError as exc:
        return {"t": time.monotonic(), "error": str(exc), **extra}
    if read is not None:
        extra["gpu"] = read
    samples = [[name, dict(labels), v] for (name, labels), v in snapshot.values.items() if name in SERIES_NAMES]
    return {"t": snapshot.t, "answered": snapshot.answered, "samples": samples, **extra}


def _wait_or_stop(stdin: IO[str], seconds: float) -> bool:
    """Sleep up to ``seconds``; True when stdin closed (time to stop)."""
    readable, _, _ = select.select([stdin], [], [], max(seconds, 0.0))
    return bool(readable) and stdin.readline() == ""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="sample a vLLM server's /metrics until stdin closes")
    parser.add_argument("--url", required=True)
    parser.add_argument("--interval", type=float, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--pid", type=int, default=None, help="also sample this process tree's RSS")
    parser.add_argument("--gpus", default="", help="also sample these GPUs (ids as in CUDA_VISIBLE_DEVICES)")
    args = parser.parse_args(argv)
    headers = json.loads(sys.stdin.readline() or "{}")
    print("ready", flush=True)  # imported and set up: the parent may begin the phase
    if sys.stdin.readline() == "":
        return  # closed before the phase began: nothing to scrape
    try:
        os.nice(5)
    except OSError:
        pass
    gpus, _ = open_reader([g for g in args.gpus.split(",") if g]) if args.gpus else (None, None)
    with httpx.Client(headers=headers) as client, open(args.out, "a", buffering=1) as out:
        due = time.monotonic()
        while True:
            due += args.interval
            out.write(json.dumps(_line(client, args.url, args.pid, gpus)) + "\n")
            if _wait_or_stop(sys.stdin, due - time.monotonic()):
                if gpus is not None:
                    gpus.close()
                return


class ScraperProcess:
    """The parent's side: start the process, stop it, read what it wrote."""

    def __init__(
        self,
        url: str,
        headers: dict[str, str],
        interval: float,
        path: Path,
        pid: int | None = None,
        gpus: list[str] | None = None,
    ) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")
        argv = [sys.executable, "-m", __name__, "--url", url, "--interval", str(interval), "--out", str(path)]
        argv += ["--pid", str(pid)] if pid is not None else []
        argv += ["--gpus", ",".join(gpus)] if gpus else []
        self.rss: list[int] = []
        self.gpu: dict[float, list[GpuSample]] = {}  # by the time of the scrape they were read beside
        self.process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(headers) + "\n")
        self.process.stdin.flush()
        self.interval = interval
        self._ready = False

    def ready(self, timeout: float = READY_TIMEOUT) -> bool:
        """Wait (at most ``timeout`` s) until the process has started up and waits for the phase:
        on a busy machine its imports alone can take seconds, and a phase begun before would go
        unsampled until then. False when it did not say so in time (or died)."""
        if self._ready:
            return True
        assert self.process.stdout is not None
        readable, _, _ = select.select([self.process.stdout], [], [], timeout)
        self._ready = bool(readable) and self.process.stdout.readline().strip() == "ready"
        return self._ready

    def go(self) -> None:
        """The phase begins: scrape from now on."""
        try:
            assert self.process.stdin is not None
            self.process.stdin.write("go\n")
            self.process.stdin.flush()
        except OSError:
            pass  # it died: stop() reads what there is

    def stop(self) -> tuple[list[Snapshot], list[str]]:
        """Close its stdin, wait for it, and read its snapshots and errors."""
        try:
            if self.process.stdin is not None:
                self.process.stdin.close()
            self.process.wait(timeout=10 + self.interval)
        except (OSError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait()
        return read_scrapes(self.path, self.rss, self.gpu)


def read_scrapes(
    path: Path, rss: list[int] | None = None, gpu: dict[float, list[GpuSample]] | None = None
) -> tuple[list[Snapshot], list[str]]:
    """The snapshots and errors in the process's file; its RSS samples appended to ``rss``, its
    GPU samples put in ``gpu`` by the time of their scrape."""
    snapshots, errors = [], []
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        return [], [f"could not read the scrapes: {exc}"]
    for line in lines:
        try:
            data = json.loads(line)
        except ValueError:
            continue  # a line cut short
        if rss is not None and isinstance(data.get("rss"), int):
            rss.append(data["rss"])
        if "error" in data:
            errors.append(str(data["error"]))
            continue
        values = {(n, tuple(sorted(labels.items()))): float(v) for n, labels, v in data["samples"]}
        answered = data.get("answered")
        snapshots.append(Snapshot(float(data["t"]), values, float(answered) if answered is not None else None))
        if gpu is not None and isinstance(data.get("gpu"), list):
            gpu[float(data["t"])] = [GpuSample.from_json(g) for g in data["gpu"]]
    return snapshots, errors


if __name__ == "__main__":
    main()
