"""Option values that pytest took for test paths, and how the plugin gives them back.

pytest settles its rootdir and configfile before it loads any plugin, so it
does not yet know that ``--vllm-model`` takes a value. In
``pytest -m smoke --vllm-model /models/llama`` it reads ``/models/llama`` as
a test path (when that path exists); the rootdir becomes that folder and the
project's ``pyproject.toml``/``pytest.ini`` is never read. ``--vllm-model=/models/llama``
is safe.

When pytest was started from a command line, the plugin starts the same
command again in the same process (``os.execv``, same pid, same terminal) with
each such value joined to its option (``--vllm-model=/models/llama``), before
any conftest is read or anything is launched. Where it cannot (``pytest.main()``
called from code, or the value came from ``PYTEST_ADDOPTS``), it stops with a
usage error that names the exact fix.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

#: Set in the environment of the re-run, to the options that were joined (for the report header).
REJOINED_VAR = "PYTEST_VLLM_SERVE_REJOINED"

#: pytest-benchmark's options whose values may be paths.
BENCHMARK_VALUE_OPTIONS = (
    "--benchmark-json",
    "--benchmark-storage",
    "--benchmark-histogram",
    "--benchmark-csv",
    "--benchmark-cprofile-dump",
    "--benchmark-save",
)


@dataclass(frozen=True)
class SplitValue:
    """An option given as ``--opt VALUE`` whose VALUE pytest also took for a test path."""

    option: str
    value: str
    index: int  # of the option in its argument list

    @property
    def joined(self) -> str:
        return f"{self.option}={self.value}"


def _exists(value: str, invocation_dir: Path) -> bool:
    """Whether pytest would take ``value`` for a test path (it does when the path exists)."""
    try:
        return (invocation_dir / value.split("::")[0]).exists()
    except (OSError, ValueError):
        return False


def split_values(args: Sequence[str], value_options: Collection[str], invocation_dir: Path) -> list[SplitValue]:
    """The ``--opt VALUE`` pairs in ``args`` whose VALUE is an existing path."""
    found = []
    i = 0
    while i < len(args) - 1:
        token = args[i]
        if token == "--":  # everything after it is a test path
            break
        if token in value_options:
            value = args[i + 1]
            if not value.startswith("-") and _exists(value, invocation_dir):
                found.append(SplitValue(token, value, i))
            i += 2
            continue
        i += 1
    return found


def join_values(args: Sequence[str], splits: Sequence[SplitValue]) -> list[str]:
    """``args`` with each split pair written as ``--opt=VALUE``."""
    at = {split.index: split for split in splits}
    out: list[str] = []
    i = 0
    while i < len(args):
        if i in at:
            out.append(at[i].joined)
            i += 2
        else:
            out.append(args[i])
            i += 1
    return out


def rerun_argv(orig_argv: Sequence[str], argv: Sequence[str], args: Sequence[str]) -> list[str] | None:
    """The interpreter's whole command line with pytest's arguments replaced by ``args``.

    None when this process was not started with pytest's arguments at the end of
    its command line (e.g. ``pytest.main([...])`` called from code).
    """
    given = list(argv[1:])
    if not orig_argv or len(orig_argv) < len(given) + 1:
        return None
    if given and list(orig_argv[-len(given) :]) != given:
        return None
    head = list(orig_argv[: len(orig_argv) - len(given)])
    return [*head, *args]


def refusal(splits: Sequence[SplitValue], source: str) -> str:
    fixes = " ".join(split.joined for split in splits)
    pairs = ", ".join(f"{split.option} {split.value}" for split in splits)
    return (
        f"{pairs} ({source}): pytest took the value for a test path too, so it would choose its rootdir and "
        "configfile from there and ignore this project's pytest settings. "
        "pytest reads those before it loads plugins, and this run cannot be restarted by the plugin.\n"
        f"  fix: write {fixes}"
    )


def restart_joined(
    invocation_args: Sequence[str],
    value_options: Collection[str],
    invocation_dir: Path,
    environ: dict[str, str] | None = None,
) -> str | None:
    """Join split option values; restart this process with them when it can.

    Returns None when nothing needs joining. Returns the refusal message when the
    values need joining but this process cannot be restarted. Does not return
    when it restarts.
    """
    env = os.environ if environ is None else environ
    addopts = env.get("PYTEST_ADDOPTS", "")
    if addopts:
        import shlex

        try:
            from_env = split_values(shlex.split(addopts), value_options, invocation_dir)
        except ValueError:
            from_env = []
        if from_env:
            return refusal(from_env, "in PYTEST_ADDOPTS")
    splits = split_values(invocation_args, value_options, invocation_dir)
    if not splits:
        return None
    if env.get(REJOINED_VAR):  # already restarted once: never loop
        return refusal(splits, "on the command line")
    command = None
    if list(sys.argv[1:]) == list(invocation_args):
        command = rerun_argv(getattr(sys, "orig_argv", []), sys.argv, join_values(invocation_args, splits))
    if command is None:
        return refusal(splits, "given to pytest.main()")
    env[REJOINED_VAR] = " ".join(split.joined for split in splits)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, command)
    return None  # pragma: no cover (execv does not return)


def rejoined_note(environ: dict[str, str] | None = None) -> str | None:
    """The report-header line of a restarted run (and the marker is taken out of the environment,
    so that processes this run starts do not inherit it)."""
    env = os.environ if environ is None else environ
    joined = env.pop(REJOINED_VAR, None)
    if not joined:
        return None
    return f"vllm: command line re-read with {joined} (a path value given after a space is also a test path to pytest)"


# -- a value that starts with "-" -----------------------------------------------------------------


def missing_value_fix(option: str, args: Sequence[str]) -> str:
    """The usage error for a value option given without its value, e.g. ``--vllm-serve-args
    --enforce-eager``: argparse reads a value that starts with '-' as another option."""
    words = list(args)
    following = words[words.index(option) + 1] if option in words[:-1] else None
    if following and following.startswith("-"):
        import shlex

        return (
            f"{option} {following}: {option} takes a value, and a value that starts with '-' after a space "
            f"reads as another option.\n  fix: write it joined with '=': {option}={shlex.quote(following)}"
        )
    return f"{option} was given without a value.\n  fix: write {option}=VALUE"
