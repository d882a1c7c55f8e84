"""A test item's ServerSpec: its ``vllm`` marker over the command line over the ini over the defaults."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_vllm_serve.config import Settings
from pytest_vllm_serve.errors import ConfigError
from pytest_vllm_serve.serving.command import check_model, merge_defaults
from pytest_vllm_serve.serving.spec import MARKER_KEYS, ServerSpec

MARKER = "vllm"


def marker_kwargs(item: pytest.Item) -> dict[str, Any]:
    """Merged ``vllm`` marker keywords, closest marker winning. Validates the keys."""
    merged: dict[str, Any] = {}
    for mark in reversed(list(item.iter_markers(MARKER))):
        if len(mark.args) > 1:
            raise ConfigError(f"{item.nodeid}: @pytest.mark.vllm takes at most one positional argument (the model)")
        if mark.args:
            merged["model"] = mark.args[0]
        unknown = sorted(set(mark.kwargs) - set(MARKER_KEYS))
        if unknown:
            raise ConfigError(
                f"{item.nodeid}: unknown @pytest.mark.vllm keyword(s) {', '.join(unknown)}.\n"
                f"  fix: use only {', '.join(MARKER_KEYS)}"
            )
        merged.update(mark.kwargs)
    return merged


def spec_from(settings: Settings, kwargs: dict[str, Any]) -> ServerSpec:
    marker_args = kwargs.get("args") or ()
    if isinstance(marker_args, str):
        raise ConfigError("@pytest.mark.vllm(args=...) takes a list of strings, e.g. args=['--max-model-len', '2048']")
    model = kwargs.get("model", settings.model)
    check_model(model)

    def pick(key: str) -> Any:
        return kwargs[key] if key in kwargs else getattr(settings, key)

    return ServerSpec.build(
        model=model,
        tp=pick("tp"),
        pp=pick("pp"),
        dp=pick("dp"),
        ep=pick("ep"),
        backend=pick("backend"),
        args=merge_defaults(settings.serve_args, tuple(marker_args)),
        env=kwargs.get("env") or {},
        served_model_name=kwargs.get("served_model_name"),
    )


def spec_for(settings: Settings, item: pytest.Item) -> ServerSpec:
    return spec_from(settings, marker_kwargs(item))
