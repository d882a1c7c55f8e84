"""GPU telemetry through NVML (``nvidia-ml-py``): per GPU its utilization, memory used, SM
clock, power and energy counter, sampled beside ``/metrics`` (docs/server-metrics.md).

:class:`GpuReader` opens the GPUs once and reads them (no subprocess, no nvidia-smi). On a
machine without NVIDIA's driver it cannot open: :func:`open_reader` gives None with the
reason, and the point goes on without GPU figures (a CPU server's process figures come
from psutil instead). The rest are pure functions over :class:`GpuSample` lists.

Which GPUs are the server's is for the caller to say (:func:`server_gpus`): ids as in
``CUDA_VISIBLE_DEVICES`` (indices in NVML's order, which is nvidia-smi's, or ``GPU-`` UUIDs),
or None for every GPU NVML sees.
"""

from __future__ import annotations

import ipaddress
import os
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

#: The launchers whose servers run on this machine (their GPUs are this machine's).
LOCAL_LAUNCHERS = frozenset({"local", "docker"})


@dataclass(frozen=True)
class GpuSample:
    """One GPU at one moment. ``energy_j`` is NVML's total energy counter (None where the
    GPU has none, before Volta); the others are None where NVML does not tell."""

    gpu: str
    util_pct: float | None
    mem_used_mib: float | None
    sm_clock_mhz: float | None
    power_w: float | None
    energy_j: float | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GpuSample:
        return cls(**{k: data.get(k) for k in cls.__dataclass_fields__})


class GpuReader:
    """The GPUs ``ids`` (None: every GPU), opened through NVML; :meth:`read` samples them all."""

    def __init__(self, ids: Sequence[str] | None) -> None:
        import pynvml

        self._nvml = pynvml
        pynvml.nvmlInit()
        try:
            if ids is None:
                ids = [str(i) for i in range(pynvml.nvmlDeviceGetCount())]
            self.handles = [(gpu, self._handle(gpu)) for gpu in ids]
        except pynvml.NVMLError:
            pynvml.nvmlShutdown()
            raise

    def _handle(self, gpu: str) -> Any:
        if gpu.isdigit():
            return self._nvml.nvmlDeviceGetHandleByIndex(int(gpu))
        return self._nvml.nvmlDeviceGetHandleByUUID(gpu)

    def _try(self, call: Any, *args: Any) -> Any:
        try:
            return call(*args)
        except self._nvml.NVMLError:
            return None

    def read(self) -> list[GpuSample]:
        nvml, out = self._nvml, []
        for gpu, handle in self.handles:
            util = self._try(nvml.nvmlDeviceGetUtilizationRates, handle)
            memory = self._try(nvml.nvmlDeviceGetMemoryInfo, handle)
            clock = self._try(nvml.nvmlDeviceGetClockInfo, handle, nvml.NVML_CLOCK_SM)
            power = self._try(nvml.nvmlDeviceGetPowerUsage, handle)  # mW
            energy = self._try(nvml.nvmlDeviceGetTotalEnergyConsumption, handle)  # mJ
            out.append(
                GpuSample(
                    gpu,
                    float(util.gpu) if util is not None else None,
                    memory.used / 2**20 if memory is not None else None,
                    float(clock) if clock is not None else None,
                    power / 1000 if power is not None else None,
                    energy / 1000 if energy is not None else None,
                )
            )
        return out

    def close(self) -> None:
        try:
            self._nvml.nvmlShutdown()
        except self._nvml.NVMLError:
            pass


def open_reader(ids: Sequence[str] | None) -> tuple[GpuReader | None, str | None]:
    """(the reader, None), or (None, why not): no GPU, no nvidia-ml-py, no driver, an unknown id."""
    if ids is not None and not ids:
        return None, "no GPU of the server is on this machine"
    try:
        import pynvml
    except ImportError:
        return None, "nvidia-ml-py is not installed"
    try:
        reader = GpuReader(ids)
    except pynvml.NVMLError as exc:
        return None, f"NVML could not open GPUs {','.join(ids) if ids is not None else '(all)'}: {exc}"
    if not reader.handles:
        reader.close()
        return None, "NVML sees no GPU"
    return reader, None


def visible_ids(env: dict[str, str] | None = None) -> list[str] | None:
    """This process's GPUs: its ``CUDA_VISIBLE_DEVICES`` when set, else None (every GPU)."""
    value = (os.environ if env is None else env).get("CUDA_VISIBLE_DEVICES")
    if value is None:
        return None
    return [part.strip() for part in value.split(",") if part.strip() and part.strip() != "-1"]


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def server_gpus(launcher: str, ids: dict[str, object], url: str, visible: Sequence[str] | None) -> list[str] | None:
    """The GPUs to sample for a server: the ``CUDA_VISIBLE_DEVICES`` it was launched with;
    else, for a server on this machine (launched here, or a ``--vllm-url`` on a loopback
    address), the GPUs ``visible`` to this process (None: every GPU); else none, ``[]``
    (another host's GPUs)."""
    given = ids.get("CUDA_VISIBLE_DEVICES")
    if isinstance(given, str) and given:
        return [g for g in given.split(",") if g]
    if launcher in LOCAL_LAUNCHERS or _is_loopback(url):
        return None if visible is None else list(visible)
    return []


# -- the figures over a phase: pure functions ------------------------------------------------------
def summed(samples: Sequence[GpuSample], field: str) -> float | None:
    """``field`` summed over the GPUs; None when a GPU lacks it."""
    values = [getattr(s, field) for s in samples]
    return None if not values or any(v is None for v in values) else float(sum(values))


def _mean(samples: Sequence[GpuSample], field: str) -> float | None:
    values = [getattr(s, field) for s in samples]
    return None if not values or any(v is None for v in values) else statistics.fmean(values)


def aggregate(samples: Sequence[GpuSample]) -> dict[str, float | None]:
    """One moment over all the server's GPUs: utilization and SM clock averaged, memory and
    power summed."""
    return {
        "gpu_util_pct": _mean(samples, "util_pct"),
        "gpu_mem_used_mib": summed(samples, "mem_used_mib"),
        "gpu_sm_clock_mhz": _mean(samples, "sm_clock_mhz"),
        "gpu_power_w": summed(samples, "power_w"),
    }


def energy_j(times: Sequence[float], series: Sequence[Sequence[GpuSample]]) -> float | None:
    """The energy the GPUs used from the first to the last moment: the growth of NVML's energy
    counters, or where a GPU has none, the trapezoid integral of the summed power."""
    if len(series) < 2:
        return None
    first, last = summed(series[0], "energy_j"), summed(series[-1], "energy_j")
    if first is not None and last is not None:
        return last - first
    powers = [summed(s, "power_w") for s in series]
    if any(p is None for p in powers):
        return None
    return sum(
        (t1 - t0) * (p0 + p1) / 2
        for t0, t1, p0, p1 in zip(times, times[1:], powers, powers[1:])  # type: ignore[operator]
    )


def gpu_figures(
    times: Sequence[float], series: Sequence[Sequence[GpuSample]], output_tokens: int | None
) -> dict[str, float]:
    """A phase's GPU figures from its moments (``times`` in seconds, one list of samples per
    moment): the mean and max of each aggregate, the energy and output tokens per joule."""
    figures: dict[str, float] = {}
    if not series:
        return figures
    figures["gpu_count"] = float(len(series[0]))
    moments = [aggregate(s) for s in series]
    for key in ("gpu_util_pct", "gpu_mem_used_mib", "gpu_sm_clock_mhz", "gpu_power_w"):
        values = [m[key] for m in moments if m[key] is not None]
        if values:
            figures[f"{key}_mean"] = statistics.fmean(values)  # type: ignore[arg-type]
            figures[f"{key}_max"] = float(max(values))  # type: ignore[type-var]
    energy = energy_j(times, series)
    if energy is not None:
        figures["gpu_energy_j"] = energy
        if output_tokens and energy > 0:
            figures["output_tokens_per_joule"] = output_tokens / energy
    return figures
