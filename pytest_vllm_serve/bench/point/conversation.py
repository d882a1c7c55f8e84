"""A multi-turn point (the conversation workload): its plan, and its metrics per turn."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from pytest_vllm_serve.bench.client import Prompt
from pytest_vllm_serve.bench.loadgen.conversations import turn_indices
from pytest_vllm_serve.bench.loadgen.run import LoadPlan, LoadResult
from pytest_vllm_serve.bench.metrics import TokenCounter, per_turn_metrics
from pytest_vllm_serve.bench.settings import BenchSettings
from pytest_vllm_serve.bench.workloads import Tokenizer
from pytest_vllm_serve.bench.workloads.conversation import ConversationWorkload, first_prompt
from pytest_vllm_serve.errors import ConfigError

Say = Callable[[str], None] | None


def conversation_plan(
    workload: ConversationWorkload,
    tokenizer: Tokenizer,
    settings: BenchSettings,
    endpoint: str | None,
    say: Say,
    plan_for: Callable[[tuple[Prompt, ...]], LoadPlan],
) -> LoadPlan:
    """The point's plan (``plan_for`` the sessions' first turns): its sessions start at the
    schedule, in one client process; --vllm-duration does not apply (every session runs)."""
    if (endpoint or settings.endpoint) != "chat":
        raise ConfigError(
            "the conversation workload sends chat histories: it needs the chat endpoint.\n"
            "  fix: drop --vllm-endpoint completions (or pass endpoint='chat')"
        )
    conversations = tuple(workload.conversations(tokenizer))
    if settings.duration and say:
        say("[vllm-bench] --vllm-duration does not apply to conversations: every session runs")
    plan = plan_for(tuple(first_prompt(c) for c in conversations))
    return replace(plan, conversations=conversations, think_time=workload.think_time, processes=1, send_for=None)


def per_turn(
    plan: LoadPlan, load: LoadResult, settings: BenchSettings, count_tokens: TokenCounter, node_id: str, say: Say
) -> dict[str, dict[str, float]]:
    """The point's metrics per turn, said in one progress line."""
    assert plan.conversations is not None
    turns = turn_indices(plan.conversations)
    figures = per_turn_metrics(load.records, turns, load.duration, settings.percentiles, count_tokens)
    if say:
        shown = ", ".join(
            f"{turn}: {f['median_ttft_ms']:.1f} ms" for turn, f in figures.items() if "median_ttft_ms" in f
        )
        say(f"[vllm-bench] {node_id.split('::')[-1]}: median TTFT per turn {shown}")
    return figures
