"""A stand-in for nvidia-ml-py's ``pynvml``, for tests on machines without an NVIDIA GPU.

Named as such: it is not NVIDIA's library. It answers the calls GPU telemetry makes, for GPUs
"0" and "1" (and UUIDs "GPU-0", "GPU-1"): utilization 50 % and 70 %, 1024 and 2048 MiB used,
an SM clock of 1980 MHz, a steady 300 W and 100 W, and an energy counter that grows at that
power on the machine's monotonic clock. GPU "1" has no energy counter when the environment
sets FAKE_NVML_NO_ENERGY=1 (a GPU before Volta). The real library runs in the H200 script
(benchmarks/gpu/), where a GPU is.
"""

from __future__ import annotations

import os
import time
import types

NVML_CLOCK_SM = 1
_GPUS = {0: (50, 1024, 300.0), 1: (70, 2048, 100.0)}
_open = 0


class NVMLError(Exception):
    pass


def nvmlInit() -> None:
    global _open
    _open += 1


def nvmlShutdown() -> None:
    global _open
    _open -= 1


def nvmlDeviceGetCount() -> int:
    return len(_GPUS)


def nvmlDeviceGetHandleByIndex(index: int) -> int:
    if index not in _GPUS:
        raise NVMLError("Invalid Argument")
    return index


def nvmlDeviceGetHandleByUUID(uuid: str) -> int:
    return nvmlDeviceGetHandleByIndex(int(uuid.removeprefix("GPU-")))


def nvmlDeviceGetUtilizationRates(handle: int) -> types.SimpleNamespace:
    return types.SimpleNamespace(gpu=_GPUS[handle][0], memory=10)


def nvmlDeviceGetMemoryInfo(handle: int) -> types.SimpleNamespace:
    return types.SimpleNamespace(used=_GPUS[handle][1] * 2**20, total=80 * 2**30)


def nvmlDeviceGetClockInfo(handle: int, clock: int) -> int:
    assert clock == NVML_CLOCK_SM
    return 1980


def nvmlDeviceGetPowerUsage(handle: int) -> int:
    return int(_GPUS[handle][2] * 1000)  # mW


def nvmlDeviceGetTotalEnergyConsumption(handle: int) -> int:
    if handle == 1 and os.environ.get("FAKE_NVML_NO_ENERGY") == "1":
        raise NVMLError("Not Supported")
    return int(_GPUS[handle][2] * time.monotonic() * 1000)  # mJ
