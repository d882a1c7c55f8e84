"""Workloads: the prompts a benchmark point sends. All seeded.

* ``RandomWorkload`` (synthetic.py): prompts of an exact token length, counted with the
  server's own ``/tokenize`` (or a local tokenizer from ``--vllm-tokenizer``, tokenizers.py).
* ``SonnetWorkload`` (synthetic.py): one shared prefix plus a varying suffix per prompt.
* ``PrefixWorkload`` (synthetic.py): P distinct prefixes, each followed by S distinct
  suffixes, in a seeded shuffled order (vLLM's prefix_repetition).
* ``ShareGPTWorkload`` (sharegpt.py): conversations from a local ShareGPT-format JSON file
  (``--vllm-dataset-path``), sampled as ``vllm bench serve`` does. Nothing is downloaded.
* ``TraceWorkload`` (trace.py): a Mooncake-format JSONL trace, replayed on its own clock,
  requests that share hash ids sharing their prompt prefix.

base.py holds the Workload protocol that each of them (and a workload of your own) follows.
"""

from pytest_vllm_serve.bench.workloads.base import Workload, exact_text
from pytest_vllm_serve.bench.workloads.sharegpt import ShareGPTWorkload, synthetic_sharegpt
from pytest_vllm_serve.bench.workloads.synthetic import PrefixWorkload, RandomWorkload, SonnetWorkload
from pytest_vllm_serve.bench.workloads.tokenizers import LocalTokenizer, ServerTokenizer, Tokenizer, server_tokenizer
from pytest_vllm_serve.bench.workloads.trace import TraceWorkload, read_trace, shipped_trace, synthetic_trace

__all__ = [
    "LocalTokenizer",
    "PrefixWorkload",
    "RandomWorkload",
    "ServerTokenizer",
    "ShareGPTWorkload",
    "SonnetWorkload",
    "Tokenizer",
    "TraceWorkload",
    "Workload",
    "exact_text",
    "read_trace",
    "server_tokenizer",
    "shipped_trace",
    "synthetic_sharegpt",
    "synthetic_trace",
]
