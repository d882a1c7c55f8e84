"""Coverage-guided fuzzing of the SSE parser with atheris (libFuzzer).

    python benchmarks/fuzz_sse.py -max_total_time=60 [-runs=N] [corpus_dir]

Each input is split in two at a position taken from the input itself; the
parser must (1) never raise, and (2) give the same events whether the bytes
arrive at once or in two reads. A failure prints the input and stops.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from pytest_vllm_serve.bench.sse import SSEParser, parse_all


def one_input(data: bytes) -> None:
    if not data:
        return
    cut = data[0] % (len(data) + 1)
    payload = data[1:]
    whole = parse_all(payload)
    parser = SSEParser()
    split = parser.feed(payload[:cut]) + parser.feed(payload[cut:]) + parser.close()
    if split != whole:
        raise AssertionError(f"split at {cut} changed the events: {split!r} != {whole!r}")


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
