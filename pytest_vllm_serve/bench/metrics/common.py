"""The constants and the error every metrics module shares."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from pytest_vllm_serve.errors import VllmServeError

DEFAULT_PERCENTILES: tuple[float, ...] = (50.0, 90.0, 95.0, 99.0)
GOODPUT_METRICS: tuple[str, ...] = ("ttft", "tpot", "e2el")  # vLLM's VALID_NAMES
MS_PER_S = 1000  # vLLM's MILLISECONDS_TO_SECONDS_CONVERSION

#: Latency series reported as mean_/median_/std_/pNN_<series>_ms. The first six are
#: vLLM's own names; the last two are this plugin's additions.
VLLM_SERIES: tuple[str, ...] = ("ttft", "tpot", "itl", "e2el", "client_queue_time", "e2el_including_client_queue")
EXTRA_SERIES: tuple[str, ...] = ("per_token_itl", "send_lag")
SERIES: tuple[str, ...] = VLLM_SERIES + EXTRA_SERIES

#: Counts the tokens of a text, without special tokens: vLLM's
#: ``len(tokenizer(text, add_special_tokens=False).input_ids)``. None when the
#: tokenizer cannot answer (a server's /tokenize after the server died): the
#: request's chunk tokens count instead.
TokenCounter = Callable[[str], int | None]


class AllRequestsFailedError(VllmServeError):
    """No measured request succeeded, so there is no latency or throughput to report.

    ``failure_reasons`` maps each reason to how many requests failed with it.
    """

    def __init__(self, message: str, failure_reasons: Mapping[str, int]):
        super().__init__(message)
        self.failure_reasons = dict(failure_reasons)
