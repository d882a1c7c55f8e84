"""Command-line options and ini keys, declared once, resolved into ``Settings``.

Precedence for every setting: marker (where it applies) > command line > ini
file > built-in default. Every option has help text (``pytest --help``).
"""

from __future__ import annotations

import dataclasses
import math
import os
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pytest_vllm_serve.bench.settings import RECORDABLE, BenchSettings
from pytest_vllm_serve.errors import ConfigError
from pytest_vllm_serve.serving.launchers.docker.images import FLAVORS
from pytest_vllm_serve.serving.launchers.slurm.options import split_options
from pytest_vllm_serve.serving.launchers.slurm.topology import check_backend

#: An option's default that is its settings field's default (``Settings`` or ``BenchSettings``),
#: so the value is written once, on the dataclass.
FIELD: Any = type("FieldDefault", (), {"__repr__": lambda self: "FIELD"})()


@dataclass(frozen=True)
class Opt:
    name: str  # without the leading dashes, e.g. "vllm-model"
    help: str
    default: Any = None  # a string as on the command line, None, or FIELD
    metavar: str | None = None
    flag: bool = False  # store_true
    ini: bool = True  # also readable from [tool.pytest.ini_options]
    dash_value: bool = False  # its value usually starts with "-" (see add_options)

    @property
    def dest(self) -> str:
        return self.name.replace("-", "_")


OPTIONS: tuple[Opt, ...] = (
    # -- which server ------------------------------------------------------
    Opt(
        "vllm-model",
        "Model to serve: a Hugging Face id or a local directory. Default: the built-in "
        "tiny model, generated locally (no download). Example: --vllm-model Qwen/Qwen2.5-7B-Instruct",
        metavar="NAME_OR_PATH",
    ),
    Opt(
        "vllm-url",
        "Attach to a running OpenAI-compatible server instead of launching one. "
        "Example: --vllm-url http://10.0.0.5:8000",
        metavar="URL",
    ),
    Opt(
        "vllm-api-key",
        "API key: passed to the launched server and sent with every request. "
        "Default: $VLLM_API_KEY. Never written to logs or reports.",
        metavar="KEY",
        ini=False,
    ),
    Opt(
        "vllm-serve-args",
        "Extra arguments for `vllm serve`, as one shell-quoted string. "
        "Example: --vllm-serve-args=\"--max-model-len 8192 --enable-prefix-caching\" (with '=': the value "
        "starts with '-')",
        metavar="ARGS",
        dash_value=True,
    ),
    Opt(
        "vllm-host",
        "Address launched servers bind to. Default 127.0.0.1 (loopback only); use 0.0.0.0 to expose them.",
        default=FIELD,
        metavar="ADDR",
    ),
    Opt(
        "vllm-startup-timeout",
        "Seconds to wait for a launched server to become ready. Default 600.",
        default=FIELD,
        metavar="SECONDS",
    ),
    Opt(
        "vllm-results-dir",
        "Where logs and results go; each session writes a timestamped folder inside it. Default: ./vllm-results",
        default="vllm-results",
        metavar="DIR",
    ),
    Opt(
        "vllm-suite",
        "Add the plugin's shipped suites to this run: smoke, benchmarks or all (comma list). "
        "With no test paths on the command line only the suites run. Same as "
        "--pyargs pytest_vllm_serve.suites. Example: pytest --vllm-suite smoke --vllm-url http://gpu-box:8000",
        metavar="smoke|benchmarks|all",
    ),
    Opt(
        "vllm-cache-dir",
        "Cache for the built-in model. Default: $PYTEST_VLLM_SERVE_CACHE, else "
        "$XDG_CACHE_HOME/pytest-vllm-serve, else ~/.cache/pytest-vllm-serve",
        metavar="DIR",
    ),
    # -- parallel layout (the vllm marker overrides these) -------------------------
    Opt("vllm-tp", "Tensor-parallel size. Example: --vllm-tp 8", metavar="N"),
    Opt("vllm-pp", "Pipeline-parallel size (selects the mp backend; no DP with PP).", metavar="N"),
    Opt("vllm-dp", "Data-parallel size, or 'auto' for visible GPUs / (TP x PP).", metavar="N|auto"),
    Opt("vllm-ep", "Enable expert parallelism (EP size = TP x DP, derived by vLLM).", flag=True),
    Opt(
        "vllm-backend",
        "Distributed executor backend: mp or ray. Default: vLLM's choice (mp when PP > 1).",
        metavar="mp|ray",
    ),
    # -- Docker launcher (docs/docker.md) -------------------------------------------
    Opt(
        "vllm-docker",
        "Launch servers in Docker containers from IMAGE: an image name, a registry "
        "reference (pulled when missing), or a saved image tarball (.tar/.tar.gz, loaded unless its tag "
        "is present). Needs the docker extra and a running engine. Example: "
        "--vllm-docker pytest-vllm-serve/vllm-cpu:0.32.0",
        metavar="IMAGE",
    ),
    Opt(
        "vllm-container-mount",
        "Bind mounts for --vllm-docker containers, HOST[:CONTAINER[:ro|rw]] "
        "(CONTAINER defaults to HOST); several as one shell-quoted string. The model directory and the "
        'Hugging Face cache are mounted without it. Example: --vllm-container-mount "/fsx /data:/data:ro"',
        metavar="MOUNTS",
    ),
    Opt(
        "vllm-docker-flavor",
        "Which vLLM the --vllm-docker image holds: cpu (vllm-cpu, started with "
        "python3 -m vllm.entrypoints.openai.api_server, CPU defaults) or gpu (vllm serve, GPUs through the "
        "nvidia runtime). Default auto: the image's pytest-vllm-serve.flavor label, else gpu.",
        default=FIELD,
        metavar="auto|cpu|gpu",
    ),
    # -- SLURM (docs/slurm.md) --------------------------------------------------------------
    Opt(
        "vllm-slurm",
        "Launch each server as a SLURM job: submitted with sbatch, or as an srun step when "
        "pytest already runs inside an allocation (SLURM_JOB_ID set, e.g. under salloc).",
        flag=True,
    ),
    Opt(
        "vllm-slurm-opt",
        "sbatch options for each server's job, one shell-quoted string, passed through "
        "(inside an allocation: to srun). --nodes, --gpus-per-node (or --gres/--gpus) and --partition also "
        'size the layout. Example: --vllm-slurm-opt "--partition=gpu --time=02:00:00 --nodes=2 '
        '--gpus-per-node=8"',
        metavar="OPTS",
        dash_value=True,
    ),
    Opt(
        "vllm-slurm-dry-run",
        "Print each server's batch script and per-node commands, save the scripts "
        "in the results dir, submit nothing and stop. Implies --vllm-slurm.",
        flag=True,
    ),
    Opt(
        "vllm-slurm-pending-timeout",
        "Seconds a submitted job may stay pending before it is cancelled and "
        "its tests fail with squeue's reason. Default 600.",
        default=FIELD,
        metavar="SECONDS",
    ),
    Opt(
        "vllm-slurm-backend",
        "How the nodes of one server connect: rpc (DP ranks over RPC, the default), "
        "ray (a ray cluster, --data-parallel-backend ray) or mp (--nnodes/--node-rank; chosen when PP > 1).",
        metavar="rpc|ray|mp",
    ),
    # -- the server pool ---------------------------------------------------------------------
    Opt(
        "vllm-max-servers",
        "Servers running at once. Default 1: the previous server stops before the "
        "next spec's starts (tests are ordered so each spec starts once).",
        default=FIELD,
        metavar="N",
    ),
    Opt(
        "vllm-per-worker",
        "Under pytest-xdist, give each worker its own server (own port and GPU slice) "
        "instead of one server per spec shared by all workers.",
        flag=True,
    ),
    Opt(
        "vllm-reuse",
        "Keep servers running after the session and reattach to them in later sessions "
        "when the spec hash matches and the process is alive. Stop them with "
        "`python -m pytest_vllm_serve.tools.servers stop`.",
        flag=True,
    ),
    Opt(
        "vllm-restart-on-crash",
        "When a server dies during a test, start a new one for the next test of its "
        "spec (default: those tests fail at once, naming the crash).",
        flag=True,
    ),
    # -- profiling -------------------------------------------------------------------------
    Opt(
        "vllm-profile",
        "Start servers with the torch profiler and trace the measured phase of every "
        "benchmark point (POST /start_profile, /stop_profile); traces go to profiles/<test id>/.",
        flag=True,
    ),
    Opt(
        "vllm-profiler-config",
        "Profiler configuration JSON passed to vllm serve as is (--profiler-config); implies --vllm-profile.",
        metavar="JSON",
    ),
    Opt(
        "vllm-nsys",
        "Wrap vllm serve in `nsys profile` with the reference trace options (cuda, nvtx, osrt, "
        "cudnn, cublas; capture range cudaProfilerApi) and drive vLLM's CUDA profiler around measured phases. "
        "Reports go to profiles/nsys/.",
        flag=True,
    ),
    Opt(
        "vllm-viztracer",
        "Trace the client process (or the offline benchmark process) with VizTracer during "
        "the measured phase, into profiles/<test id>/FILE.",
        metavar="FILE",
    ),
    # -- benchmarks (tests/benchmarks and the vllm_bench fixture) -------------------------
    Opt(
        "vllm-sweep-rate",
        "Request rates of the rate sweep, comma-separated; inf = all at once. Default: 1,2,4,8,16,32,inf",
        default=FIELD,
        metavar="LIST",
    ),
    Opt(
        "vllm-sweep-concurrency",
        "Max concurrency values of the concurrency sweep. Default: 1,2,4,8,16,32,64,128",
        default=FIELD,
        metavar="LIST",
    ),
    Opt(
        "vllm-sweep-input-len",
        "Input lengths (tokens) of the input sweep (output 128). Default: 128,256,512,1024,2048,4096,8192,16384",
        default=FIELD,
        metavar="LIST",
    ),
    Opt(
        "vllm-sweep-output-len",
        "Output lengths (tokens) of the output sweep (input 512). Default: 64,128,256,512,1024,2048",
        default=FIELD,
        metavar="LIST",
    ),
    Opt(
        "vllm-num-prompts", "Requests per benchmark point (longctx uses half). Default 100.", default=FIELD, metavar="N"
    ),
    Opt("vllm-input-len", "Input tokens where a suite does not sweep them. Default 512.", default=FIELD, metavar="N"),
    Opt("vllm-output-len", "Output tokens where a suite does not sweep them. Default 256.", default=FIELD, metavar="N"),
    Opt("vllm-seed", "Seed for prompts and arrival times. Default 42.", default=FIELD, metavar="N"),
    Opt(
        "vllm-warmup",
        "Warmup requests before each measured phase, excluded from every metric: a number, or auto "
        "(enough to fill the point's concurrency once: its concurrency cap, else its prompts, at most 16). "
        "Default auto.",
        default="auto",
        metavar="N|auto",
    ),
    Opt(
        "vllm-prompts-per-concurrency",
        "A point capped at concurrency C sends at least K x C prompts (more than --vllm-num-prompts when "
        "that is too few to keep C requests in flight). 0 turns it off. Default 5.",
        default=FIELD,
        metavar="K",
    ),
    Opt(
        "vllm-duration",
        "Seconds of sending per point: prompts are sent at the point's schedule (and reused in order) until "
        "then, instead of a fixed count; the count is recorded. Default: off (a fixed count).",
        metavar="SECONDS",
    ),
    Opt(
        "vllm-repeats",
        "Measure each benchmark point N times on the same server; the point reports the median of each "
        "metric with its 95 % confidence interval and CV, and the gate tells noise from a regression. Default 1.",
        default=FIELD,
        metavar="N",
    ),
    Opt(
        "vllm-repeat-order",
        "With --vllm-repeats: interleaved (every point once, then every point again: drift spreads over all "
        "points) or grouped (a point's repeats back to back). Default interleaved.",
        default=FIELD,
        metavar="interleaved|grouped",
    ),
    Opt(
        "vllm-min-duration",
        "A point whose measured phase is shorter than this many seconds is marked unstable. Default 10.",
        default=FIELD,
        metavar="SECONDS",
    ),
    Opt(
        "vllm-max-cv",
        "A repeated point whose key metrics vary more than this (coefficient of variation, percent) between "
        "repeats is marked unstable. Default 5.",
        default=FIELD,
        metavar="PERCENT",
    ),
    Opt(
        "vllm-reset-prefix-cache",
        "POST /reset_prefix_cache before each measured phase, so no point profits from the last one's cache: "
        "on, off, or auto (on for servers the plugin launches, which then run with VLLM_SERVER_DEV_MODE=1; "
        "off for --vllm-url). Each point records whether the reset happened. Default auto.",
        default=FIELD,
        metavar="auto|on|off",
    ),
    Opt(
        "vllm-endpoint",
        "API the benchmarks drive: chat (/v1/chat/completions) or completions (/v1/completions). Default chat.",
        default=FIELD,
        metavar="chat|completions",
    ),
    Opt(
        "vllm-burstiness",
        "Arrival burstiness: 1 = Poisson, <1 burstier, >1 steadier (gamma), inf = constant rate. Default 1.",
        default=FIELD,
        metavar="X",
    ),
    Opt(
        "vllm-client-processes",
        "Client processes that share the load: a number, or auto (one per "
        "200 req/s of target rate, up to the CPU count). Default auto.",
        default="auto",
        metavar="N|auto",
    ),
    Opt(
        "vllm-percentiles",
        "Percentiles reported for every latency. Default 50,90,95,99.",
        default=FIELD,
        metavar="LIST",
    ),
    Opt(
        "vllm-goodput",
        'SLOs in ms for goodput, as vllm bench serve. Example: --vllm-goodput "ttft:500,tpot:50,e2el:2000"',
        metavar="SLOS",
    ),
    Opt(
        "vllm-request-timeout",
        "Seconds one request may take before it is counted failed. Default: none.",
        metavar="SECONDS",
    ),
    Opt(
        "vllm-stall-timeout",
        "Fail a benchmark point (keeping what it measured) when requests are in flight, no byte "
        "has arrived on any stream for this many seconds, and /health does not answer. 0 turns it off. Default 30.",
        default=FIELD,
        metavar="SECONDS",
    ),
    Opt(
        "vllm-respect-eos",
        "Stop outputs at EOS. By default benchmarks send ignore_eos so every output has exactly the asked length.",
        flag=True,
    ),
    Opt(
        "vllm-token-ids",
        "Ask the server for the token ids of every streamed chunk (return_token_ids), for "
        "an exact per-token ITL when chunks carry several tokens (speculative decoding, --stream-interval). Off "
        "by default: benchmarks send the request vllm bench serve sends, and per-token ITL counts one token per "
        "chunk. What it costs the server: docs/metrics.md.",
        flag=True,
    ),
    Opt(
        "vllm-no-token-ids",
        "No token ids per streamed chunk: the default now, kept so that older command lines "
        "still work. Cannot be combined with --vllm-token-ids.",
        flag=True,
    ),
    Opt(
        "vllm-tokenizer",
        "Local tokenizer (tokenizer.json or a model dir) to size prompts, for servers "
        "without /tokenize. Default: the server's /tokenize.",
        metavar="PATH",
    ),
    Opt(
        "vllm-dataset-path",
        "Local ShareGPT-format JSON for the sharegpt workload (nothing is downloaded).",
        metavar="FILE",
    ),
    Opt(
        "vllm-trace",
        "Mooncake-format JSONL trace that test_trace_replay replays on its own clock (timestamp in ms, input_length, "
        "output_length, hash_ids of shared 512-token prefix blocks). Default: the package's small synthetic trace.",
        metavar="FILE",
    ),
    Opt(
        "vllm-trace-speedup",
        "Replay the trace this many times faster (2: its time stamps halved). Default 1.",
        default=FIELD,
        metavar="X",
    ),
    Opt(
        "vllm-conversation-sessions",
        "test_conversation: multi-turn sessions, all started at once (N users, each waiting for an answer "
        "before the next turn). Default 16.",
        default=FIELD,
        metavar="N",
    ),
    Opt(
        "vllm-conversation-turns",
        "test_conversation: turns per session; each sends the whole history so far and a new user message of "
        "--vllm-input-len tokens (or the turns of --vllm-dataset-path's multi-turn conversations). Default 4.",
        default=FIELD,
        metavar="T",
    ),
    Opt(
        "vllm-think-time",
        "test_conversation: seconds a session waits between an answer and its next turn. Default 0.",
        default=FIELD,
        metavar="SECONDS",
    ),
    Opt(
        "vllm-prefix-len",
        "test_shared_prefix: tokens of each shared prefix; each prompt is a prefix and a distinct suffix that fills "
        "--vllm-input-len. Default 256.",
        default=FIELD,
        metavar="N",
    ),
    Opt(
        "vllm-prefix-count",
        "test_shared_prefix: distinct prefixes, each under --vllm-num-prompts / P prompts. Default 5.",
        default=FIELD,
        metavar="P",
    ),
    Opt(
        "vllm-record-metric",
        "Latency series recorded as pytest-benchmark's timing data, so "
        "--benchmark-compare-fail can gate it: ttft, tpot, itl, e2el or per_token_itl. Default ttft.",
        default=FIELD,
        metavar="NAME",
    ),
    Opt(
        "vllm-baseline",
        "Results of an earlier run (its summary.json, or a --benchmark-json file) for --vllm-fail-on.",
        metavar="FILE",
    ),
    Opt(
        "vllm-fail-on",
        "Fail a point that regresses against --vllm-baseline. Example: "
        '--vllm-fail-on "p99_ttft_ms:+10%,output_throughput:-5%"; slo_best:-10% gates test_slo_search\'s answer',
        metavar="RULES",
    ),
    Opt(
        "vllm-slo",
        "Service-level objectives for test_slo_search, which finds the highest load that meets all of them: "
        "METRIC<=VALUE or METRIC>=VALUE items (any result key, latencies in ms). Example: "
        '--vllm-slo "p99_ttft_ms<=500,p99_tpot_ms<=50"',
        metavar="BOUNDS",
    ),
    Opt(
        "vllm-slo-search",
        "What test_slo_search raises: rate (requests per second, Poisson arrivals) or concurrency "
        "(max concurrency at rate inf). Default rate.",
        default=FIELD,
        metavar="rate|concurrency",
    ),
    Opt(
        "vllm-slo-tolerance",
        "The SLO search stops when the highest passing and lowest failing values are this close, relative to "
        "the failing one: 0.1 or 10%. Default 0.1.",
        default=FIELD,
        metavar="FRACTION",
    ),
    Opt(
        "vllm-slo-max-probes",
        "The most benchmark points one SLO search measures. Default 12.",
        default=FIELD,
        metavar="N",
    ),
    Opt(
        "vllm-slo-start",
        "The SLO search's first probe: a request rate or a max concurrency; it doubles from there until a "
        "probe fails, then bisects. Default 1.",
        default=FIELD,
        metavar="X",
    ),
    Opt(
        "vllm-slo-max",
        "The SLO search never probes above this rate or concurrency. Default: no limit.",
        metavar="X",
    ),
    Opt(
        "vllm-gate-confidence",
        "With repeats on either side, --vllm-fail-on fails a point only when the change is beyond its threshold "
        "and this confidence interval of the difference excludes zero. Default 0.95.",
        default=FIELD,
        metavar="P",
    ),
    Opt(
        "vllm-fail-on-undecided",
        "Also fail a point that is too noisy to decide at its threshold (the interval of the difference is "
        "wider than the threshold); by default it is reported as undecided, with the repeats it needs.",
        flag=True,
    ),
    Opt("vllm-no-plots", "Do not draw the per-suite PNG plots at the end of the session.", flag=True),
    Opt(
        "vllm-metrics-interval",
        "Seconds between scrapes of the server's /metrics during a benchmark point's measured phase "
        "(in a process of its own; docs/server-metrics.md), with the server's GPUs read through NVML "
        "where they are on this machine. 0 turns it off. Default 1.",
        default=FIELD,
        metavar="SECONDS",
    ),
    Opt(
        "vllm-progress-interval",
        "Seconds between progress lines during a benchmark point. Default 10.",
        default=FIELD,
        metavar="SECONDS",
    ),
)

BY_DEST = {opt.dest: opt for opt in OPTIONS}
#: The options that take a value (for the command-line check in cmdline.py).
VALUE_OPTIONS = tuple(f"--{opt.name}" for opt in OPTIONS if not opt.flag)


#: What a value option holds when it was given without a value (see add_options).
NO_VALUE = "\x00no value"


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("vllm", "pytest-vllm-serve: vLLM servers as fixtures, smoke tests and benchmarks")
    for opt in OPTIONS:
        cli_help = opt.help.replace("%", "%%")  # argparse %-formats help text
        if opt.flag:
            group.addoption(f"--{opt.name}", action="store_true", default=None, dest=opt.dest, help=cli_help)
        elif opt.dash_value:  # nargs="?": "--vllm-serve-args --enforce-eager" leaves NO_VALUE, which
            # plugin.py turns into a usage error naming the '=' form (argparse alone says only
            # "expected one argument")
            group.addoption(
                f"--{opt.name}",
                action="store",
                nargs="?",
                const=NO_VALUE,
                default=None,
                dest=opt.dest,
                metavar=opt.metavar,
                help=cli_help,
            )
        else:
            group.addoption(
                f"--{opt.name}", action="store", default=None, dest=opt.dest, metavar=opt.metavar, help=cli_help
            )
        if opt.ini:
            parser.addini(opt.dest, help=opt.help, type="bool" if opt.flag else "string", default=None)


def raw(config: pytest.Config, dest: str) -> Any:
    """A setting's value by precedence: command line > ini > default."""
    opt = BY_DEST[dest]
    value = config.getoption(dest, default=None)
    if value is None and opt.ini:
        ini_value = config.getini(dest)
        if ini_value not in (None, "", []):
            value = ini_value
    return default(opt) if value is None else value


def cli_text(value: Any) -> str:
    """A settings value as it is written on the command line: 1,2,inf for a tuple."""
    if isinstance(value, (tuple, list)):
        return ",".join(cli_text(item) for item in value)
    if isinstance(value, float):
        return "inf" if math.isinf(value) else (str(int(value)) if value.is_integer() else str(value))
    return str(value)


def default(opt: Opt) -> Any:
    """An option's default; a FIELD default is read from its settings dataclass."""
    if opt.default is not FIELD:
        return opt.default
    name = opt.dest.removeprefix("vllm_")
    for settings in (Settings, BenchSettings):
        fields = {f.name: f for f in dataclasses.fields(settings)}
        if name in fields:
            return cli_text(fields[name].default)
    raise LookupError(f"--{opt.name}: no settings field {name!r} holds its default")


def _number(dest: str, value: Any, cast: Callable[[str], Any], positive: bool = True) -> Any:
    try:
        number = cast(value)
    except (TypeError, ValueError):
        raise ConfigError(f"--{BY_DEST[dest].name} must be a number, got {value!r}") from None
    if positive and number <= 0:
        raise ConfigError(f"--{BY_DEST[dest].name} must be positive, got {value!r}")
    return number


@dataclass(frozen=True)
class Settings:
    """The session's resolved options."""

    model: str | None = None
    url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    serve_args: tuple[str, ...] = ()
    host: str = "127.0.0.1"
    startup_timeout: float = 600.0
    results_root: Path = Path("vllm-results")
    cache_dir: Path | None = None
    tp: str | None = None
    pp: str | None = None
    dp: str | None = None
    ep: bool | None = None
    backend: str | None = None
    docker: str | None = None
    container_mounts: tuple[str, ...] = ()
    docker_flavor: str = "auto"
    slurm: bool = False
    slurm_opt: tuple[str, ...] = ()
    slurm_dry_run: bool = False
    slurm_pending_timeout: float = 600.0
    slurm_backend: str | None = None
    max_servers: int = 1
    per_worker: bool = False
    reuse: bool = False
    restart_on_crash: bool = False
    profile: bool = False
    profiler_config: str | None = None
    nsys: bool = False
    viztracer: str | None = None

    @classmethod
    def from_config(cls, config: pytest.Config) -> Settings:
        serve_args = raw(config, "vllm_serve_args") or ""
        try:
            args = tuple(shlex.split(serve_args))
        except ValueError as exc:
            raise ConfigError(f"--vllm-serve-args cannot be parsed as shell words: {exc}") from None
        cache = raw(config, "vllm_cache_dir")
        ep = raw(config, "vllm_ep")
        return cls(
            model=raw(config, "vllm_model"),
            url=raw(config, "vllm_url"),
            api_key=raw(config, "vllm_api_key") or os.environ.get("VLLM_API_KEY") or None,
            serve_args=args,
            host=raw(config, "vllm_host"),
            startup_timeout=_number("vllm_startup_timeout", raw(config, "vllm_startup_timeout"), float),
            results_root=Path(raw(config, "vllm_results_dir")),
            cache_dir=Path(cache) if cache else None,
            tp=raw(config, "vllm_tp"),
            pp=raw(config, "vllm_pp"),
            dp=raw(config, "vllm_dp"),
            ep=bool(ep) if ep is not None else None,
            backend=raw(config, "vllm_backend"),
            **_docker_settings(config),
            slurm=bool(raw(config, "vllm_slurm")) or bool(raw(config, "vllm_slurm_dry_run")),
            slurm_opt=split_options(raw(config, "vllm_slurm_opt") or ""),
            slurm_dry_run=bool(raw(config, "vllm_slurm_dry_run")),
            slurm_pending_timeout=_number(
                "vllm_slurm_pending_timeout", raw(config, "vllm_slurm_pending_timeout"), float
            ),
            slurm_backend=check_backend(raw(config, "vllm_slurm_backend")),
            max_servers=_number("vllm_max_servers", raw(config, "vllm_max_servers"), int),
            per_worker=bool(raw(config, "vllm_per_worker")),
            reuse=bool(raw(config, "vllm_reuse")),
            restart_on_crash=bool(raw(config, "vllm_restart_on_crash")),
            profile=bool(raw(config, "vllm_profile")) or raw(config, "vllm_profiler_config") is not None,
            profiler_config=raw(config, "vllm_profiler_config"),
            nsys=bool(raw(config, "vllm_nsys")),
            viztracer=raw(config, "vllm_viztracer"),
        )


def _docker_settings(config: pytest.Config) -> dict[str, Any]:
    try:
        mounts = tuple(shlex.split(raw(config, "vllm_container_mount") or ""))
    except ValueError as exc:
        raise ConfigError(f"--vllm-container-mount cannot be parsed as shell words: {exc}") from None
    flavor = raw(config, "vllm_docker_flavor")
    if flavor not in ("auto", *FLAVORS):
        raise ConfigError(f"--vllm-docker-flavor must be auto, cpu or gpu, got {flavor!r}")
    return {"docker": raw(config, "vllm_docker") or None, "container_mounts": mounts, "docker_flavor": flavor}


# -- benchmark settings ----------------------------------------------------------------


def _int_list(dest: str, text: str, allow_inf: bool = False) -> tuple[float, ...]:
    values = []
    name = BY_DEST[dest].name
    items = [item.strip() for item in str(text).split(",")]
    if items == [""]:
        raise ConfigError(f"--{name} is empty.\n  fix: e.g. --{name} 1,4,16")
    for position, item in enumerate(items, start=1):
        if not item:
            raise ConfigError(
                f"--{name} {text!r}: item {position} of {len(items)} is empty (two commas in a row, or a comma at "
                f"an end).\n  fix: remove the extra comma, e.g. --{name} 1,4,16"
            )
        if allow_inf and item.lower() in ("inf", "infinity"):
            values.append(math.inf)
            continue
        try:
            number = float(item) if allow_inf else int(item)
        except ValueError:
            raise ConfigError(
                f"--{BY_DEST[dest].name}: {item!r} is not a number.\n  fix: e.g. --{BY_DEST[dest].name} 1,4,16"
            ) from None
        if not number > 0:
            raise ConfigError(
                f"--{BY_DEST[dest].name}: {item!r} must be positive (zero or negative rates, concurrencies "
                f"and lengths send nothing).\n  fix: e.g. --{BY_DEST[dest].name} 1,4,16"
            )
        values.append(number)
    return tuple(values)


def bench_settings(config: pytest.Config) -> BenchSettings:
    """The benchmark options, parsed and validated before any load is sent."""
    from pytest_vllm_serve.bench.metrics import parse_goodput

    def get(dest: str) -> Any:
        return raw(config, dest)

    given = frozenset(dest for dest in BY_DEST if dest.startswith("vllm_") and _is_given(config, dest))
    endpoint = get("vllm_endpoint")
    if endpoint not in ("chat", "completions"):
        raise ConfigError(f"--vllm-endpoint {endpoint!r}: use chat or completions")
    processes = str(get("vllm_client_processes")).strip().lower()
    record = get("vllm_record_metric")
    if record not in RECORDABLE:
        raise ConfigError(f"--vllm-record-metric {record!r}: use one of {', '.join(RECORDABLE)}")
    burst = get("vllm_burstiness")
    burstiness = math.inf if str(burst).lower() in ("inf", "infinity") else _number("vllm_burstiness", burst, float)
    fail_on = get("vllm_fail_on")
    baseline = path_option(config, "vllm_baseline")
    if fail_on and not baseline:
        raise ConfigError("--vllm-fail-on needs --vllm-baseline FILE (the results of the run to compare with)")
    tokenizer, dataset = path_option(config, "vllm_tokenizer"), path_option(config, "vllm_dataset_path")
    timeout, goodput, prompts_per = (
        get("vllm_request_timeout"),
        get("vllm_goodput"),
        get("vllm_prompts_per_concurrency"),
    )
    return BenchSettings(
        **_sweeps(get),
        num_prompts=_number("vllm_num_prompts", get("vllm_num_prompts"), int),
        input_len=_number("vllm_input_len", get("vllm_input_len"), int),
        output_len=_number("vllm_output_len", get("vllm_output_len"), int),
        seed=_number("vllm_seed", get("vllm_seed"), int, positive=False),
        warmup_requests=_auto_or_number("vllm_warmup", get("vllm_warmup")),
        prompts_per_concurrency=_number("vllm_prompts_per_concurrency", prompts_per, int, positive=False),
        endpoint=endpoint,
        burstiness=burstiness,
        processes=None if processes == "auto" else _number("vllm_client_processes", processes, int),
        percentiles=_percentiles(get, fail_on),
        goodput=parse_goodput(goodput) if goodput else None,
        request_timeout=_number("vllm_request_timeout", timeout, float) if timeout else None,
        stall_timeout=_not_negative("vllm_stall_timeout", get("vllm_stall_timeout")),
        ignore_eos=not get("vllm_respect_eos"),
        token_ids=_token_ids(get("vllm_token_ids"), get("vllm_no_token_ids")),
        tokenizer=Path(tokenizer) if tokenizer else None,
        dataset_path=Path(dataset) if dataset else None,
        **_workload_settings(config),
        record_metric=record,
        baseline=Path(baseline) if baseline else None,
        **_fail_on(fail_on),
        plots=not get("vllm_no_plots"),
        given=given,
        **_intervals(get),
        **_noise_settings(get),
        **_slo_settings(get),
    )


def _percentiles(get: Callable[[str], Any], fail_on: str | None) -> tuple[float, ...]:
    """--vllm-percentiles, and those --vllm-fail-on and --vllm-slo name (p99.9_ttft_ms: 99.9)."""
    from pytest_vllm_serve.bench.gates import parse_fail_on, percentiles_needed
    from pytest_vllm_serve.bench.metrics import validate_percentiles
    from pytest_vllm_serve.bench.slo import parse_slo

    slo = get("vllm_slo")
    return validate_percentiles(
        [
            *_int_list("vllm_percentiles", get("vllm_percentiles"), allow_inf=True),
            *(percentiles_needed(parse_fail_on(fail_on)) if fail_on else ()),
            *(percentiles_needed(parse_slo(slo)[0]) if slo else ()),
        ]
    )


def _workload_settings(config: pytest.Config) -> dict[str, Any]:
    """The trace, prefix and conversation workloads' options."""
    trace = path_option(config, "vllm_trace")
    return {
        "trace_path": Path(trace) if trace else None,
        "trace_speedup": _number("vllm_trace_speedup", raw(config, "vllm_trace_speedup"), float),
        "prefix_len": _number("vllm_prefix_len", raw(config, "vllm_prefix_len"), int),
        "prefix_count": _number("vllm_prefix_count", raw(config, "vllm_prefix_count"), int),
        "conversation_sessions": _number("vllm_conversation_sessions", raw(config, "vllm_conversation_sessions"), int),
        "conversation_turns": _number("vllm_conversation_turns", raw(config, "vllm_conversation_turns"), int),
        "think_time": _not_negative("vllm_think_time", raw(config, "vllm_think_time")),
    }


def _fail_on(spec: str | None) -> dict[str, tuple]:
    """--vllm-fail-on's thresholds: those on a point's metrics, and those on the SLO search's answer."""
    from pytest_vllm_serve.bench.gates import parse_fail_on
    from pytest_vllm_serve.bench.metrics import SEARCH_DIRECTIONS

    thresholds = parse_fail_on(spec) if spec else []
    return {
        "fail_on": tuple(t for t in thresholds if t.metric not in SEARCH_DIRECTIONS),
        "slo_fail_on": tuple(t for t in thresholds if t.metric in SEARCH_DIRECTIONS),
    }


def _slo_settings(get: Callable[[str], Any]) -> dict[str, Any]:
    """--vllm-slo and the search's options."""
    from pytest_vllm_serve.bench.slo import parse_slo, parse_tolerance

    spec, variable, upper = get("vllm_slo"), str(get("vllm_slo_search")).strip().lower(), get("vllm_slo_max")
    if variable not in ("rate", "concurrency"):
        raise ConfigError(f"--vllm-slo-search must be rate or concurrency, got {variable!r}")
    bounds, warnings = parse_slo(spec) if spec else ([], [])
    return {
        "slo": tuple(bounds),
        "slo_warnings": tuple(f"vllm: warning: {line}" for line in warnings),
        "slo_search": variable,
        "slo_tolerance": parse_tolerance(get("vllm_slo_tolerance")),
        "slo_max_probes": _number("vllm_slo_max_probes", get("vllm_slo_max_probes"), int),
        "slo_start": _number("vllm_slo_start", get("vllm_slo_start"), float),
        "slo_max": _number("vllm_slo_max", upper, float) if upper else None,
    }


def _sweeps(get: Callable[[str], Any]) -> dict[str, Any]:
    """The four sweeps' grids."""
    return {
        "sweep_rate": _int_list("vllm_sweep_rate", get("vllm_sweep_rate"), allow_inf=True),
        "sweep_concurrency": tuple(int(v) for v in _int_list("vllm_sweep_concurrency", get("vllm_sweep_concurrency"))),
        "sweep_input_len": tuple(int(v) for v in _int_list("vllm_sweep_input_len", get("vllm_sweep_input_len"))),
        "sweep_output_len": tuple(int(v) for v in _int_list("vllm_sweep_output_len", get("vllm_sweep_output_len"))),
    }


def _intervals(get: Callable[[str], Any]) -> dict[str, float]:
    """How often a point says how it goes, and how often it scrapes the server's /metrics."""
    return {
        "progress_interval": _number("vllm_progress_interval", get("vllm_progress_interval"), float),
        "metrics_interval": _not_negative("vllm_metrics_interval", get("vllm_metrics_interval")),
    }


def _noise_settings(get: Callable[[str], Any]) -> dict[str, Any]:
    """The options that make numbers hold still: repeats, the noise-aware gate, stability marks,
    duration-bounded points and the prefix-cache reset."""
    order, reset = str(get("vllm_repeat_order")).lower(), str(get("vllm_reset_prefix_cache")).lower()
    if order not in ("interleaved", "grouped"):
        raise ConfigError(f"--vllm-repeat-order must be interleaved or grouped, got {order!r}")
    if reset not in ("auto", "on", "off"):
        raise ConfigError(f"--vllm-reset-prefix-cache must be auto, on or off, got {reset!r}")
    confidence = _number("vllm_gate_confidence", get("vllm_gate_confidence"), float)
    if not 0 < confidence < 1:
        raise ConfigError(f"--vllm-gate-confidence must be between 0 and 1 (e.g. 0.95), got {confidence!r}")
    max_cv = _number("vllm_max_cv", get("vllm_max_cv"), float)
    if not 0 < max_cv <= 100:
        raise ConfigError(f"--vllm-max-cv is a percentage in (0, 100], e.g. 5, got {max_cv!r}")
    duration = get("vllm_duration")
    return {
        "repeats": _number("vllm_repeats", get("vllm_repeats"), int),
        "repeat_order": order,
        "gate_confidence": confidence,
        "fail_on_undecided": bool(get("vllm_fail_on_undecided")),
        "min_duration": _not_negative("vllm_min_duration", get("vllm_min_duration")),
        "max_cv": max_cv,
        "duration": _number("vllm_duration", duration, float) if duration else None,
        "reset_prefix_cache": reset,
    }


def _auto_or_number(dest: str, value: Any) -> int | None:
    """``auto`` (None) or a number of at least 0."""
    if str(value).strip().lower() == "auto":
        return None
    try:
        return _number(dest, value, int, positive=False)
    except ConfigError:
        raise ConfigError(f"--{BY_DEST[dest].name} must be a number or auto, got {value!r}") from None


def _not_negative(dest: str, value: Any) -> float:
    number = _number(dest, value, float, positive=False)
    if number < 0:
        raise ConfigError(f"--{BY_DEST[dest].name} must be 0 (off) or positive, got {value!r}")
    return number


def _token_ids(on: Any, off: Any) -> bool:
    if on and off:
        raise ConfigError(
            "--vllm-token-ids and --vllm-no-token-ids contradict each other.\n"
            "  fix: give one of them (no token ids is the default)"
        )
    return bool(on)


def path_option(config: pytest.Config, dest: str) -> str | None:
    """A path option; one read from the ini file is relative to the ini file's folder."""
    value = config.getoption(dest, default=None)
    if value is not None:
        return value
    if BY_DEST[dest].ini:
        ini_value = config.getini(dest)
        if ini_value:
            base = config.inipath.parent if config.inipath else config.rootpath
            return str(base / ini_value)
    return default(BY_DEST[dest])


def _is_given(config: pytest.Config, dest: str) -> bool:
    if config.getoption(dest, default=None) is not None:
        return True
    return BY_DEST[dest].ini and config.getini(dest) not in (None, "", [], False)


# -- the shipped suites (--vllm-suite) ------------------------------------------------

#: ``--vllm-suite`` names and the folder of each, inside the package's suites/.
SUITES: dict[str, str] = {"smoke": "smoke", "benchmarks": "benchmarks"}
ALL = "all"


def suite_paths(value: str) -> list[Path]:
    """The folders that a ``--vllm-suite`` value names (a comma list of suite names, or ``all``).

    Raises ValueError naming the suites there are.
    """
    names = [name.strip() for name in value.split(",") if name.strip()]
    if not names:
        raise ValueError(f"--vllm-suite is empty; use one of {', '.join([*SUITES, ALL])}")
    unknown = [name for name in names if name != ALL and name not in SUITES]
    if unknown:
        raise ValueError(
            f"--vllm-suite {value!r}: no suite named {', '.join(map(repr, unknown))}. "
            f"The shipped suites are {', '.join(SUITES)} (or {ALL} for both); e.g. --vllm-suite smoke"
        )
    wanted = list(SUITES) if ALL in names else list(dict.fromkeys(names))
    here = Path(__file__).resolve().parent / "suites"
    return [here / SUITES[name] for name in wanted]
