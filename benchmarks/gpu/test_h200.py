"""The reduced sweeps on a GPU, each point measured twice against the same server:
by pytest-vllm-serve (vllm_bench) and by `vllm bench serve`, one right after the other.

Run through benchmarks/gpu/run_h200.sh (which sets the model and the server up):

    pytest -c benchmarks/gpu/pytest.ini --rootdir . benchmarks/gpu/test_h200.py \
        --vllm-model MODEL_DIR --vllm-serve-args "--load-format dummy" -k "rate or concurrency"

The comparison runs with --vllm-no-token-ids, so both clients send the same
requests. test_token_ids_cost measures what asking vLLM for per-chunk token ids
(the plugin's default, for exact per-token ITL) costs at rate inf.

Points and prompt counts: 200 prompts where that fits the time budget, fewer
for the slow low-rate and low-concurrency points (a point at rate 1 needs n
seconds). The two clients alternate who goes first, point by point, and every
burst point (all requests due at once) is measured a second time in the other
order (test_burst_again).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import psutil
import pytest

from pytest_vllm_serve.bench.client import Prompt
from pytest_vllm_serve.bench.schedule import Schedule
from pytest_vllm_serve.bench.workloads import RandomWorkload, Workload

HERE = Path(__file__).resolve().parent
INF = math.inf

# (suite, swept value, prompts); rate/concurrency use 512 in / 256 out; input uses output 128;
# output uses input 512 (the reference sweep.sh's fixed lengths).
POINTS = [
    ("rate", 1, 30),
    ("rate", 4, 100),
    ("rate", 16, 200),
    ("rate", INF, 200),
    ("concurrency", 1, 16),
    ("concurrency", 8, 64),
    ("concurrency", 64, 200),
    ("concurrency", 256, 256),
    ("input", 128, 200),
    ("input", 1024, 200),
    ("input", 4096, 200),
    ("output", 64, 200),
    ("output", 256, 200),
    ("output", 1024, 200),
]


def lengths(suite: str, value: float) -> tuple[int, int]:
    if suite == "ttft":
        return 512, 16
    if suite == "gap":
        return 512, 128
    if suite == "input":
        return int(value), 128
    if suite == "output":
        return 512, int(value)
    return 512, 256


def schedule(suite: str, value: float) -> Schedule:
    if suite == "rate":
        return Schedule(rate=value, seed=42)
    if suite in ("concurrency", "ttft", "gap"):
        return Schedule(rate=INF, max_concurrency=int(value), seed=42)
    return Schedule(rate=INF, seed=42)


def point_id(suite: str, value: float) -> str:
    return f"{suite}-{'inf' if value == INF else int(value)}"


def is_burst(suite: str, value: float, prompts: int) -> bool:
    """Every request of the point is due at once (rate inf, no cap below the prompt count)."""
    return (
        suite in ("input", "output")
        or (suite == "rate" and value == INF)
        or (suite == "concurrency" and value >= prompts)
    )


BURSTS = [p for p in POINTS if is_burst(*p)]


def run_peer(server, suite: str, value: float, prompts: int, out_dir: Path, tokenizer: str, name: str = "") -> dict:
    """`vllm bench serve` at the same point, against the same server. Returns its result
    plus the CPU seconds its process used in the measured phase."""
    input_len, output_len = lengths(suite, value)
    name = name or point_id(suite, value)
    argv = [
        sys.executable,
        str(HERE.parent / "vllm_bench.py"),
        "bench",
        "serve",
        "--backend",
        "openai-chat",
        "--endpoint",
        "/v1/chat/completions",
        "--base-url",
        server.url,
        "--model",
        server.model,
        "--tokenizer",
        tokenizer,
        "--dataset-name",
        "random",
        "--random-input-len",
        str(input_len),
        "--random-output-len",
        str(output_len),
        "--num-prompts",
        str(prompts),
        "--ignore-eos",
        "--seed",
        "42",
        "--num-warmups",
        "2",
        "--percentile-metrics",
        "ttft,tpot,itl,e2el",
        "--metric-percentiles",
        "50,99",
        "--save-result",
        "--save-detailed",
        "--result-dir",
        str(out_dir),
        "--result-filename",
        f"{name}.json",
        "--disable-tqdm",
    ]
    if suite == "rate":
        argv += ["--request-rate", "inf" if value == INF else str(value)]
    elif suite in ("concurrency", "ttft", "gap"):
        argv += ["--request-rate", "inf", "--max-concurrency", str(int(value))]
    else:
        argv += ["--request-rate", "inf"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    me = psutil.Process(proc.pid)
    cpu_start, lines = None, []
    for line in proc.stdout:
        lines.append(line)
        if "Starting main benchmark run" in line:
            t = me.cpu_times()
            cpu_start = t.user + t.system
    t = me.cpu_times()
    cpu = (t.user + t.system) - (cpu_start or 0.0)
    proc.wait()
    (out_dir / f"{name}.log").write_text("".join(lines))
    assert proc.returncode == 0, "".join(lines[-40:])
    result = json.loads((out_dir / f"{name}.json").read_text())
    result["client_cpu_seconds"] = cpu
    (out_dir / f"{name}.json").write_text(json.dumps(result))
    return result


def both_clients(
    vllm_bench,
    vllm_server,
    vllm_session,
    suite: str,
    value: float,
    prompts: int,
    *,
    ours_first: bool,
    name: str,
    **params,
) -> None:
    """Measure one point with the plugin and with `vllm bench serve`, in the order given.
    ``name`` names the peer's result file (the point's test id); ``params`` go into the
    plugin's point next to the swept value."""
    out_dir = vllm_session.results_dir / "peer"
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = os.environ.get("PEER_TOKENIZER", str(vllm_server.spec.model))
    input_len, output_len = lengths(suite, value)

    def ours():
        vllm_bench.run(
            RandomWorkload(input_len, output_len, prompts, seed=42),
            schedule(suite, value),
            suite=suite,
            params={"swept": value, **params},
        )

    def peer():
        run_peer(vllm_server, suite, value, prompts, out_dir, tokenizer, name=name)

    for measure in (ours, peer) if ours_first else (peer, ours):
        measure()


@pytest.mark.benchmark
@pytest.mark.parametrize("suite, value, prompts", POINTS, ids=[point_id(s, v) for s, v, _ in POINTS])
def test_point(vllm_bench, vllm_server, vllm_session, suite, value, prompts):
    both_clients(
        vllm_bench,
        vllm_server,
        vllm_session,
        suite,
        value,
        prompts,
        ours_first=POINTS.index((suite, value, prompts)) % 2 == 0,
        name=point_id(suite, value),
    )


@pytest.mark.benchmark
@pytest.mark.parametrize("suite, value, prompts", BURSTS, ids=[point_id(s, v) + "-again" for s, v, _ in BURSTS])
def test_burst_again(vllm_bench, vllm_server, vllm_session, suite, value, prompts):
    """Each burst point once more, in the other order: who goes first can change what a
    burst meets on the server (test_point's order, reversed)."""
    both_clients(
        vllm_bench,
        vllm_server,
        vllm_session,
        suite,
        value,
        prompts,
        ours_first=POINTS.index((suite, value, prompts)) % 2 == 1,
        name=point_id(suite, value) + "-again",
        again=True,
    )


TTFT_REPEATS = 4


@pytest.mark.benchmark
@pytest.mark.parametrize("repeat", range(TTFT_REPEATS), ids=[f"ttft-1-r{i}" for i in range(TTFT_REPEATS)])
def test_ttft_repeat(vllm_bench, vllm_server, vllm_session, repeat):
    """TTFT at concurrency 1 (512 in, 16 out, 100 prompts), both clients, alternating who goes
    first: is a low-load TTFT difference between them systematic or noise?"""
    both_clients(
        vllm_bench,
        vllm_server,
        vllm_session,
        "ttft",
        1,
        100,
        ours_first=repeat % 2 == 0,
        name=f"ttft-1-r{repeat}",
        repeat=repeat,
    )


# Points whose difference between the clients needed a repeat to tell from run-to-run noise.
REPEATS = [("concurrency", 64, 200, r) for r in range(2)] + [("rate", 16, 200, r) for r in range(2)]


@pytest.mark.benchmark
@pytest.mark.parametrize(
    "suite, value, prompts, repeat", REPEATS, ids=[f"{point_id(s, v)}-r{r}" for s, v, _, r in REPEATS]
)
def test_point_repeat(vllm_bench, vllm_server, vllm_session, suite, value, prompts, repeat):
    """A sweep point again, twice per client, the plugin first on even repeats."""
    both_clients(
        vllm_bench,
        vllm_server,
        vllm_session,
        suite,
        value,
        prompts,
        ours_first=repeat % 2 == 0,
        name=f"{point_id(suite, value)}-r{repeat}",
        repeat=repeat,
    )


@dataclass(frozen=True)
class ListContent(Workload):
    """A RandomWorkload's prompts sent the way `vllm bench serve` sends them: the chat
    message content as a list of one text part instead of a string."""

    inner: RandomWorkload
    name: str = "random-list-content"

    @property
    def input_len(self) -> int:
        return self.inner.input_len

    @property
    def output_len(self) -> int:
        return self.inner.output_len

    @property
    def max_total_len(self) -> int:
        return self.inner.max_total_len

    def length_limit(self) -> tuple[int, str] | None:
        return self.inner.length_limit()

    def prompts(self, tokenizer):
        return [
            replace(p, messages=({"role": "user", "content": [{"type": "text", "text": p.text}]},))
            for p in self.inner.prompts(tokenizer)
        ]


@dataclass(frozen=True)
class PeerPrompts(Workload):
    """The prompts `vllm bench serve --dataset-name random --seed SEED` sends, made by vLLM's
    own RandomDataset (random token ids decoded to text), for the plugin to send."""

    tokenizer_path: str
    input_len: int
    output_len: int
    num_prompts: int
    seed: int = 42
    name: str = "vllm-random"

    @property
    def max_total_len(self) -> int:
        return self.input_len + self.output_len

    def length_limit(self) -> tuple[int, str] | None:
        return self.max_total_len, f"input {self.input_len} + output {self.output_len}"

    def prompts(self, tokenizer):
        from vllm.benchmarks.datasets import RandomDataset
        from vllm.tokenizers import get_tokenizer

        samples = RandomDataset(random_seed=self.seed).sample(
            tokenizer=get_tokenizer(self.tokenizer_path),
            num_requests=self.num_prompts,
            input_len=self.input_len,
            output_len=self.output_len,
        )
        return [Prompt(s.prompt, s.prompt_len, s.expected_output_len) for s in samples]


# Concurrency 64 (512 in, 256 out, 200 prompts) five ways, to find why the plugin's TPOT p50
# is lower there than vllm bench serve's: the plugin as is ("string"), the plugin sending the
# content as vllm bench serve does ("list"), the plugin sending vllm bench serve's prompts
# ("peer-prompts"), the plugin releasing its first wave over 16 ms on connections it opens as
# it goes, as vllm bench serve's first wave reaches the server ("spread"), and vllm bench
# serve ("peer"). Three rounds, the order rotated each round.
CAUSE_VARIANTS = ("string", "list", "peer-prompts", "spread", "peer")
CAUSE = [(r, v) for r in range(3) for v in CAUSE_VARIANTS[r:] + CAUSE_VARIANTS[:r]]


@pytest.mark.benchmark
@pytest.mark.parametrize("round_, variant", CAUSE, ids=[f"c64-{v}-r{r}" for r, v in CAUSE])
def test_concurrency_64_cause(vllm_bench, vllm_server, vllm_session, round_, variant):
    workload = RandomWorkload(512, 256, 200, seed=42)
    tokenizer = os.environ.get("PEER_TOKENIZER", str(vllm_server.spec.model))
    if variant == "peer":
        out_dir = vllm_session.results_dir / "peer"
        out_dir.mkdir(parents=True, exist_ok=True)
        run_peer(vllm_server, "concurrency", 64, 200, out_dir, tokenizer, name=f"c64-peer-r{round_}")
        return
    if variant == "peer-prompts":
        workload = PeerPrompts(tokenizer, 512, 256, 200, seed=42)
    if variant == "spread":  # constant 4000 req/s: request k of the first wave is due at k / 4000 s
        plan = Schedule(rate=4000, burstiness=INF, max_concurrency=64, seed=42)
    else:
        plan = schedule("concurrency", 64)
    vllm_bench.settings = replace(vllm_bench.settings, processes=1)  # as at the sweep point (rate 4000 would mean 16)
    vllm_bench.run(
        ListContent(workload) if variant == "list" else workload,
        plan,
        suite="cause",
        params={"variant": variant, "round": round_},
    )


@pytest.mark.benchmark
def test_token_ids_cost(vllm_bench):
    """The rate-inf point again, with token ids per chunk (our default): compare with rate-inf."""
    vllm_bench.settings = replace(vllm_bench.settings, token_ids=True)
    vllm_bench.run(
        RandomWorkload(512, 256, 200, seed=42), schedule("rate", INF), suite="token-ids", params={"token_ids": True}
    )


# Part g: concurrency 64 on a small model (512 prompts, 512 in / 128 out), where vllm bench serve
# measured 15-20 % more req/s than the plugin on one hand-started server. Five ways, three rounds,
# the order rotated each round: the plugin with one client process ("one"), with three ("three"),
# sending vllm bench serve's own prompts ("peer-prompts"), asking for token ids per chunk
# ("token-ids": what that option costs the server), and vllm bench serve ("peer"). Around every run
# the server's own counters (/metrics) and the CPU time of its processes are read, so the runs can
# be compared by what the server did: engine steps, tokens per step, CPU per request.
GAP_VARIANTS = ("one", "three", "peer-prompts", "token-ids", "peer")
GAP = [(r, v) for r in range(3) for v in GAP_VARIANTS[r:] + GAP_VARIANTS[:r]]
GAP_PROMPTS = int(os.environ.get("GAP_PROMPTS", "512"))  # fewer to try the part on a CPU


COUNTERS = (
    "vllm:iteration_tokens_total_count",
    "vllm:iteration_tokens_total_sum",
    "vllm:generation_tokens_total",
    "vllm:prompt_tokens_total",
    "vllm:num_preemptions_total",
    "vllm:request_success_total",
)


def server_counters(server, pid: int | None = None) -> dict:
    """What the server has done so far: engine steps and tokens from /metrics, and the CPU seconds
    of each process of its tree (the API server, the engine core...), from ``pid`` or the
    process the plugin launched."""
    from prometheus_client.parser import text_string_to_metric_families

    counters: dict = {}
    for family in text_string_to_metric_families(server.client.get("/metrics").text):
        for sample in family.samples:
            if sample.name in COUNTERS:
                counters[sample.name] = counters.get(sample.name, 0.0) + sample.value
    cpu = {}
    root = psutil.Process(pid if pid is not None else server.process.popen.pid)
    for proc in [root, *root.children(recursive=True)]:
        try:
            times = proc.cpu_times()
            cpu[f"{proc.pid}:{proc.name()}"] = times.user + times.system
        except psutil.Error:
            continue
    counters["cpu"] = cpu
    return counters


def counter_delta(before: dict, after: dict) -> dict:
    delta = {key: after[key] - before.get(key, 0.0) for key in after if key != "cpu"}
    delta["cpu"] = {name: round(after["cpu"][name] - before["cpu"].get(name, 0.0), 3) for name in after["cpu"]}
    return delta


@pytest.mark.benchmark
@pytest.mark.parametrize("round_, variant", GAP, ids=[f"gap-{v}-r{r}" for r, v in GAP])
def test_gap_c64(vllm_bench, vllm_server, vllm_session, round_, variant):
    out_dir = vllm_session.results_dir / "peer"
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = os.environ.get("PEER_TOKENIZER", str(vllm_server.spec.model))
    before = server_counters(vllm_server)
    if variant == "peer":
        run_peer(vllm_server, "gap", 64, GAP_PROMPTS, out_dir, tokenizer, name=f"gap-peer-r{round_}")
    else:
        workload = RandomWorkload(512, 128, GAP_PROMPTS, seed=42)
        if variant == "peer-prompts":
            workload = PeerPrompts(tokenizer, 512, 128, GAP_PROMPTS, seed=42)
        vllm_bench.settings = replace(
            vllm_bench.settings, processes=3 if variant == "three" else 1, token_ids=variant == "token-ids"
        )
        vllm_bench.run(workload, schedule("concurrency", 64), suite="gap", params={"variant": variant, "round": round_})
    after = server_counters(vllm_server)
    server_dir = vllm_session.results_dir / "server"
    server_dir.mkdir(parents=True, exist_ok=True)
    (server_dir / f"gap-{variant}-r{round_}.json").write_text(json.dumps(counter_delta(before, after), indent=1))
