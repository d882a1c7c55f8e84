"""The shipped suites: the smoke suite and the serving benchmarks.

They are ordinary pytest test modules inside the package, so an installed
plugin can run them from any directory::

    pytest --pyargs pytest_vllm_serve.suites -m smoke --vllm-url http://gpu-box:8000
    pytest --vllm-suite smoke,benchmarks --vllm-model=/models/llama

This repository's ``tests/smoke`` and ``tests/benchmarks`` collect these same
functions (they import them); the code lives here once.
"""

from __future__ import annotations

from pathlib import Path

#: ``--vllm-suite`` names and the folder of each, inside this package.
SUITES: dict[str, str] = {"smoke": "smoke", "benchmarks": "benchmarks"}
ALL = "all"


def suite_paths(value: str) -> list[Path]:
    """The folders that a ``--vllm-suite`` value names (a comma list of suite names, or ``all``).

    Raises ValueError naming the suites there are.
    """
    names = [name.strip() for name in value.split(",") if name.strip()]
    if not names:
        raise ValueError(f"--vllm-suite is empty; use one of {', '.join([*SUITES, ALL])}")
    unknown = [name for name in names if name != ALL and name not in SUITES]
    if unknown:
        raise ValueError(
            f"--vllm-suite {value!r}: no suite named {', '.join(map(repr, unknown))}. "
            f"The shipped suites are {', '.join(SUITES)} (or {ALL} for both); e.g. --vllm-suite smoke"
        )
    wanted = list(SUITES) if ALL in names else list(dict.fromkeys(names))
    here = Path(__file__).resolve().parent
    return [here / SUITES[name] for name in wanted]
