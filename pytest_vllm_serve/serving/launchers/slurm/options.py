"""What ``--vllm-slurm-opt`` asks of the scheduler. Pure: parses sbatch options.

Only what the plugin must know before submitting is read: the node count, the
GPUs per node and the partition. Everything is passed on to sbatch unchanged.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from pytest_vllm_serve.errors import ConfigError

#: Options the plugin sets itself; giving them would hide the logs from it.
RESERVED = {
    "--output": "logs go to the results dir (--vllm-results-dir)",
    "-o": "logs go to the results dir (--vllm-results-dir)",
    "--error": "logs go to the results dir (--vllm-results-dir)",
    "-e": "logs go to the results dir (--vllm-results-dir)",
    "--parsable": "the plugin passes it already",
    "--wrap": "the plugin submits its own batch script",
    "--ntasks-per-node": "the server runs one task per node",
    "--array": "one server is one job",
}

_SHORT_WITH_VALUE = {"-N": "--nodes", "-p": "--partition", "-G": "--gpus"}


@dataclass(frozen=True)
class Requested:
    """Resources named in the options (None: not given)."""

    nodes: int | None = None
    gpus_per_node: int | None = None
    gpus: int | None = None  # --gpus / -G: the job's total
    partition: str | None = None


def split_options(text: str) -> tuple[str, ...]:
    try:
        return tuple(shlex.split(text))
    except ValueError as exc:
        raise ConfigError(f"--vllm-slurm-opt cannot be parsed as shell words: {exc}") from None


def _items(words: tuple[str, ...]) -> list[tuple[str, str | None]]:
    """(option, value) pairs, for the options this module reads."""
    takes_value = {"--nodes", "--partition", "--gpus", "--gpus-per-node", "--gres"}
    out: list[tuple[str, str | None]] = []
    i = 0
    while i < len(words):
        word = words[i]
        name, eq, value = word.partition("=")
        if word in _SHORT_WITH_VALUE:  # -N 2
            if i + 1 >= len(words):
                raise ConfigError(f"--vllm-slurm-opt: {word} needs a value")
            out.append((_SHORT_WITH_VALUE[word], words[i + 1]))
            i += 1
        elif word[:2] in _SHORT_WITH_VALUE and not word.startswith("--"):  # -N2
            out.append((_SHORT_WITH_VALUE[word[:2]], word[2:]))
        elif name in takes_value:
            if eq:
                out.append((name, value))
            elif i + 1 < len(words):
                out.append((name, words[i + 1]))
                i += 1
            else:
                raise ConfigError(f"--vllm-slurm-opt: {name} needs a value")
        else:
            out.append((name, value if eq else None))
        i += 1
    return out


def _count(option: str, value: str) -> int:
    """The number at the end of a GPU spec: '8', 'h100:8', 'gpu:h100:8'."""
    match = re.search(r"(?:^|:)(\d+)$", value)
    if not match:
        raise ConfigError(
            f"--vllm-slurm-opt: cannot read a GPU count from {option}={value}.\n"
            "  fix: give it as a number, e.g. --gpus-per-node=8 or --gres=gpu:8"
        )
    return int(match.group(1))


def parse_requested(words: tuple[str, ...]) -> Requested:
    """Read nodes, GPUs and partition from sbatch options; reject the reserved ones."""
    nodes = gpn = gpus = None
    partition = None
    for name, value in _items(words):
        if name in RESERVED:
            raise ConfigError(
                f"--vllm-slurm-opt: {name} is set by the plugin ({RESERVED[name]}).\n"
                f"  fix: remove {name} from --vllm-slurm-opt"
            )
        if name == "--nodes" and value is not None:
            low, _, high = value.partition("-")
            if not low.isdigit() or (high and high != low):
                raise ConfigError(
                    f"--vllm-slurm-opt: --nodes={value}: the plugin plans the layout for a fixed node count.\n"
                    "  fix: give one number, e.g. --nodes=2"
                )
            nodes = int(low)
        elif name == "--gpus-per-node" and value is not None:
            gpn = _count(name, value)
        elif name == "--gres" and value is not None:
            for gres in value.split(","):
                if gres == "gpu" or gres.startswith("gpu:"):
                    gpn = 1 if gres == "gpu" else _count(name, gres)
        elif name == "--gpus" and value is not None:
            gpus = _count(name, value)
        elif name == "--partition" and value is not None:
            partition = value
    return Requested(nodes=nodes, gpus_per_node=gpn, gpus=gpus, partition=partition)


def gpus_per_node_from(requested: Requested, nodes: int) -> int | None:
    """GPUs per node from --gpus-per-node/--gres, or from --gpus spread evenly."""
    if requested.gpus_per_node is not None:
        return requested.gpus_per_node
    if requested.gpus is not None:
        if requested.gpus % nodes:
            raise ConfigError(
                f"--vllm-slurm-opt: --gpus={requested.gpus} does not spread evenly over {nodes} node(s).\n"
                "  fix: use --gpus-per-node=N instead"
            )
        return requested.gpus // nodes
    return None


def parse_gres_gpus(gres: str) -> int | None:
    """GPUs in a node's Gres field as sinfo/scontrol print it: 'gpu:8(S:0-1)', 'gpu:h100:4', '(null)'."""
    total = 0
    found = False
    for item in re.split(r",(?![^()]*\))", gres.strip()):
        item = re.sub(r"\(.*?\)", "", item).strip()
        if item == "gpu" or item.startswith("gpu:"):
            found = True
            match = re.search(r":(\d+)$", item)
            total += int(match.group(1)) if match else 1
    return total if found else None
