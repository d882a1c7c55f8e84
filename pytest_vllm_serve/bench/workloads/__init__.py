"""Workloads: the prompts a benchmark point sends. All seeded.

* ``RandomWorkload`` (synthetic.py): prompts of an exact token length, counted with the
  server's own ``/tokenize`` (or a local tokenizer from ``--vllm-tokenizer``, tokenizers.py).
* ``SonnetWorkload`` (synthetic.py): one shared prefix plus a varying suffix per prompt.
* ``PrefixWorkload`` (synthetic.py): P distinct prefixes, each followed by S distinct
  suffixes, in a seeded shuffled order (vLLM's prefix_repetition).
* ``ShareGPTWorkload`` (sharegpt.py): conversations from a local ShareGPT-format JSON file
  (``--vllm-dataset-path``), sampled as ``vllm bench serve`` does. Nothing is downloaded.
* ``ConversationWorkload`` (conversation.py): multi-turn sessions, each turn sent with the
  whole history after the last answer (the load generator's conversations.py sends them).
* ``TraceWorkload`` (trace.py): a Mooncake-format JSONL trace, replayed on its own clock,
  requests that share hash ids sharing their prompt prefix.

base.py holds the Workload protocol that each of them (and a workload of your own) follows.
"""

from pytest_vllm_serve.bench.workloads.base import Workload, exact_text
from pytest_vllm_serve.bench.workloads.conversation import Conversation, ConversationWorkload, Turn, synthetic_multiturn
from pytest_vllm_serve.bench.workloads.sharegpt import ShareGPTWorkload, synthetic_sharegpt
from pytest_vllm_serve.bench.workloads.synthetic import PrefixWorkload, RandomWorkload, SonnetWorkload
from pytest_vllm_serve.bench.workloads.tokenizers import LocalTokenizer, ServerTokenizer, Tokenizer, server_tokenizer
from pytest_vllm_serve.bench.workloads.trace import TraceWorkload, read_trace, shipped_trace, synthetic_trace

__all__ = [
    "Conversation",
    "ConversationWorkload",
    "LocalTokenizer",
    "PrefixWorkload",
    "RandomWorkload",
    "ServerTokenizer",
    "ShareGPTWorkload",
    "SonnetWorkload",
    "Tokenizer",
    "TraceWorkload",
    "Turn",
    "Workload",
    "exact_text",
    "read_trace",
    "server_tokenizer",
    "shipped_trace",
    "synthetic_multiturn",
    "synthetic_sharegpt",
    "synthetic_trace",
]
