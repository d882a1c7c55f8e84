"""ServerSpec: what server a test needs, and the parallelism rules it must obey.

Pure: no I/O, no hardware probing. The launcher passes in how many GPUs it can
see, and :meth:`ServerSpec.resolve` either returns a :class:`Layout` or raises
:class:`~pytest_vllm_serve.errors.ConfigError` naming the rule that was broken.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from pytest_vllm_serve.errors import ConfigError
from pytest_vllm_serve.redact import is_secret_name, redact_argv

BACKENDS = ("mp", "ray")
AUTO = "auto"

#: vllm serve flags that the spec owns. They are lifted out of free-form args so
#: that the rules below see them, whichever spelling the user chose.
_SIZE_FLAGS = {
    "tp": ("--tensor-parallel-size", "-tp"),
    "pp": ("--pipeline-parallel-size", "-pp"),
    "dp": ("--data-parallel-size", "-dp"),
}
_EP_FLAGS = ("--enable-expert-parallel", "-ep")
_BACKEND_FLAG = "--distributed-executor-backend"

#: Keywords accepted by ``@pytest.mark.vllm(...)``.
MARKER_KEYS = ("model", "tp", "pp", "dp", "ep", "backend", "args", "env", "served_model_name")


class RuleError(ConfigError):
    """A parallel layout breaks one of the serving rules."""

    def __init__(self, rule: str, detail: str, fix: str):
        self.rule = rule
        super().__init__(f"invalid parallel layout ({rule}): {detail}\n  fix: {fix}")


@dataclass(frozen=True)
class Layout:
    """A spec resolved against the GPUs a launcher can see."""

    tp: int
    pp: int
    dp: int
    ep: bool
    backend: str | None

    @property
    def world_size(self) -> int:
        return self.tp * self.pp * self.dp

    @property
    def ep_size(self) -> int | None:
        """Expert-parallel size. vLLM derives it as TP x DP; the plugin only reports it."""
        return self.tp * self.dp if self.ep else None

    def describe(self) -> str:
        ep = f"on (EP size {self.ep_size} = TP x DP, derived by vLLM)" if self.ep else "off"
        return (
            f"TP={self.tp} PP={self.pp} DP={self.dp} EP={ep} backend={self.backend or 'default'} GPUs={self.world_size}"
        )


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ConfigError(f"{name} must be a positive integer, got {value!r}.\n  fix: use e.g. {name}=1")
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}.\n  fix: use e.g. {name}=1") from None
    if number <= 0:
        raise RuleError(
            "sizes are positive",
            f"{name}={number}; zero or negative sizes are not a layout",
            f"use {name}=1 or more",
        )
    return number


def _as_bool(name: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
        return True
    if isinstance(value, str) and value.lower() in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{name} must be true or false, got {value!r}")


def extract_parallel_flags(args: Iterable[str]) -> tuple[dict[str, object], tuple[str, ...]]:
    """Split the spec-owned flags out of free-form ``vllm serve`` args.

    Understands both ``--flag N`` and ``--flag=N`` (the seed's scripts missed the
    second form). Returns ``(found, remaining_args)``.
    """
    found: dict[str, object] = {}
    rest: list[str] = []
    items = list(args)
    i = 0
    flag_to_key = {flag: key for key, flags in _SIZE_FLAGS.items() for flag in flags}
    flag_to_key[_BACKEND_FLAG] = "backend"
    while i < len(items):
        arg = items[i]
        name, eq, inline = arg.partition("=")
        if name in flag_to_key:
            if eq:
                value = inline
            elif i + 1 < len(items):
                i += 1
                value = items[i]
            else:
                raise ConfigError(f"serve argument {name} needs a value")
            found[flag_to_key[name]] = value
        elif arg in _EP_FLAGS:
            found["ep"] = True
        elif arg == "--no-enable-expert-parallel":
            found["ep"] = False
        else:
            rest.append(arg)
        i += 1
    return found, tuple(rest)


@dataclass(frozen=True)
class ServerSpec:
    """An immutable description of one vLLM server. Equal specs share one server."""

    model: str | None = None  # None: the built-in tiny model
    tp: int = 1
    pp: int = 1
    dp: int | str = 1  # an int, or "auto": visible GPUs / (TP x PP)
    ep: bool = False
    backend: str | None = None  # --distributed-executor-backend: mp or ray
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = field(default=())
    served_model_name: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "tp", _positive_int("tp", self.tp))
        object.__setattr__(self, "pp", _positive_int("pp", self.pp))
        if not (isinstance(self.dp, str) and self.dp.lower() == AUTO):
            object.__setattr__(self, "dp", _positive_int("dp", self.dp))
        else:
            object.__setattr__(self, "dp", AUTO)
        object.__setattr__(self, "ep", _as_bool("ep", self.ep))
        if self.backend is not None and self.backend not in BACKENDS:
            raise ConfigError(
                f"unknown distributed executor backend {self.backend!r}.\n"
                f"  fix: use one of {', '.join(BACKENDS)}, or leave it unset"
            )
        object.__setattr__(self, "args", tuple(str(a) for a in self.args))
        object.__setattr__(self, "env", tuple(sorted((str(k), str(v)) for k, v in dict(self.env).items())))
        self._check_static_rules()

    def __repr__(self) -> str:
        """The dataclass repr, with secret-looking args masked (``--hf-token ***``)."""
        fields = [
            f"model={self.model!r}",
            f"tp={self.tp!r}",
            f"pp={self.pp!r}",
            f"dp={self.dp!r}",
            f"ep={self.ep!r}",
            f"backend={self.backend!r}",
            f"args={tuple(redact_argv(self.args))!r}",
            f"env={tuple((k, '***' if is_secret_name(k) else v) for k, v in self.env)!r}",
            f"served_model_name={self.served_model_name!r}",
        ]
        return "ServerSpec(" + ", ".join(fields) + ")"

    # -- construction -------------------------------------------------------
    @classmethod
    def build(
        cls,
        *,
        model: str | None = None,
        tp: object = None,
        pp: object = None,
        dp: object = None,
        ep: object = None,
        backend: str | None = None,
        args: Iterable[str] = (),
        env: Mapping[str, str] | None = None,
        served_model_name: str | None = None,
    ) -> ServerSpec:
        """Build a spec, lifting parallel flags out of ``args``.

        A size given both as a keyword and inside ``args`` must agree.
        """
        found, rest = extract_parallel_flags(args)
        given = {"tp": tp, "pp": pp, "dp": dp, "ep": ep, "backend": backend}
        merged: dict[str, object] = {}
        for key, value in given.items():
            in_args = found.get(key)
            if value is not None and in_args is not None and str(value) != str(in_args):
                raise ConfigError(
                    f"{key} is given twice with different values: {value!r} and {in_args!r} "
                    "(in the serve args).\n  fix: give it once"
                )
            chosen = value if value is not None else in_args
            if chosen is not None:
                merged[key] = chosen
        return cls(
            model=model,
            args=rest,
            env=tuple((env or {}).items()),
            served_model_name=served_model_name,
            **merged,  # type: ignore[arg-type]
        )

    def with_overrides(self, **changes: object) -> ServerSpec:
        return replace(self, **changes)  # type: ignore[arg-type]

    # -- rules ----------------------------------------------------------------
    def _check_static_rules(self) -> None:
        if self.pp > 1 and self.ep:
            raise RuleError(
                "PP and EP cannot be combined",
                f"pp={self.pp} with expert parallelism",
                "use EP for MoE models (with TP/DP) or PP for large dense models, not both",
            )
        if self.pp > 1 and self.dp not in (1, AUTO):
            raise RuleError(
                "PP > 1 means no DP",
                f"pp={self.pp} with dp={self.dp}; vLLM does not combine PP, TP and DP",
                "set dp=1 (total GPUs = TP x PP), or drop PP",
            )
        if self.pp > 1 and self.backend == "ray":
            raise RuleError(
                "PP > 1 selects the mp backend",
                f"pp={self.pp} with backend='ray'",
                "leave the backend unset (mp is chosen) or set backend='mp'",
            )

    def resolve(self, visible_gpus: int | None, gpus_per_node: int | None = None) -> Layout:
        """Apply the hardware rules. ``visible_gpus=None`` means "not a GPU launcher" (CPU)."""
        per_node = gpus_per_node if gpus_per_node is not None else visible_gpus
        backend = self.backend or ("mp" if self.pp > 1 else None)
        if self.dp == AUTO:
            if visible_gpus is None:
                raise RuleError(
                    "dp=auto needs a GPU count",
                    "dp='auto' on a launcher that sees no GPUs",
                    "give dp as a number",
                )
            dp = 1 if self.pp > 1 else visible_gpus // (self.tp * self.pp)
            if dp < 1:
                raise RuleError(
                    "total GPUs = TP x PP x DP must fit the visible GPUs",
                    f"dp=auto: {visible_gpus} visible GPU(s) cannot hold one TP={self.tp} x PP={self.pp} replica",
                    "lower TP/PP or make more GPUs visible",
                )
        else:
            dp = int(self.dp)
        layout = Layout(tp=self.tp, pp=self.pp, dp=dp, ep=self.ep, backend=backend)
        if visible_gpus is not None:
            if per_node is not None and per_node > 0 and self.tp > per_node:
                raise RuleError(
                    "TP must fit in one node",
                    f"tp={self.tp} but a node has {per_node} GPU(s)",
                    f"use tp <= {per_node}; spread further with DP or PP",
                )
            if per_node is not None and per_node > 0 and per_node % self.tp != 0:
                raise RuleError(
                    "TP must divide the GPUs of one node",
                    f"tp={self.tp} does not divide {per_node} GPU(s) per node",
                    "use a TP that divides the node's GPU count (1, 2, 4, 8, ...)",
                )
            if layout.world_size > visible_gpus:
                raise RuleError(
                    "total GPUs = TP x PP x DP must not exceed the visible GPUs",
                    f"TP={self.tp} x PP={self.pp} x DP={dp} = {layout.world_size} GPU(s), "
                    f"but only {visible_gpus} are visible",
                    "lower the sizes, use dp='auto', or set CUDA_VISIBLE_DEVICES to expose more GPUs",
                )
        return layout

    # -- rendering --------------------------------------------------------------
    def serve_args(self, layout: Layout) -> list[str]:
        """The parallelism part of the ``vllm serve`` command, then the free args."""
        out: list[str] = []
        if layout.tp > 1:
            out += ["--tensor-parallel-size", str(layout.tp)]
        if layout.pp > 1:
            out += ["--pipeline-parallel-size", str(layout.pp)]
        if layout.dp > 1:
            out += ["--data-parallel-size", str(layout.dp)]
        if layout.ep:
            out.append("--enable-expert-parallel")
        if layout.backend:
            out += [_BACKEND_FLAG, layout.backend]
        return out + list(self.args)

    @property
    def env_dict(self) -> dict[str, str]:
        return dict(self.env)

    def key(self) -> str:
        """A stable hash: equal specs get one server."""
        payload = json.dumps(
            {
                "model": self.model,
                "tp": self.tp,
                "pp": self.pp,
                "dp": self.dp,
                "ep": self.ep,
                "backend": self.backend,
                "args": list(self.args),
                "env": [list(kv) for kv in self.env],
                "served_model_name": self.served_model_name,
            },
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:12]

    @property
    def short_name(self) -> str:
        base = (self.model or "builtin").rstrip("/").split("/")[-1]
        base = re.sub(r"[^A-Za-z0-9_.-]+", "_", base)[:40]
        parts = [base]
        if self.tp > 1:
            parts.append(f"tp{self.tp}")
        if self.pp > 1:
            parts.append(f"pp{self.pp}")
        if self.dp != 1:
            parts.append(f"dp{self.dp}")
        if self.ep:
            parts.append("ep")
        return "-".join(parts)

    def describe(self) -> str:
        bits = [
            f"model={self.model or 'built-in tiny model'}",
            f"tp={self.tp}",
            f"pp={self.pp}",
            f"dp={self.dp}",
            f"ep={self.ep}",
            f"backend={self.backend or 'default'}",
        ]
        if self.args:
            bits.append(f"args={' '.join(redact_argv(self.args))}")
        if self.env:
            bits.append("env=" + ",".join(k for k, _ in self.env))
        return "ServerSpec(" + ", ".join(bits) + ")"
