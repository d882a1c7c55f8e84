#!/usr/bin/env bash
# Part n: --vllm-repeats on the GPU beside repeated `vllm bench serve` runs, on one server started
# by hand (Qwen2.5-1.5B shape, dummy weights, prefix caching off). See test_repeats_gpu.py.
#
#   bash benchmarks/gpu/run_repeats.sh OUT_DIR
#
# In order: the rate-inf point five times by the plugin (one session, --vllm-repeats 5), five
# times by vllm bench serve; the concurrency-64 point the same way, then five more times by the
# plugin with --vllm-duration 30 (about 12 min in all; REP_PARTS runs a part of it).
# report_repeats.py OUT_DIR prints the tables.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
out=${1:?usage: run_repeats.sh OUT_DIR}
python=${PYTHON:-python3}
mkdir -p "$out"
export VLLM_USE_FLASHINFER_SAMPLER=${VLLM_USE_FLASHINFER_SAMPLER:-0} REP_OUT="$out/peer"
base=${PYTHONPATH:-}
model="$out/models/qwen-1.5b"
[ -f "$model/config.json" ] || PYTHONPATH="$PWD${base:+:$base}" $python benchmarks/gpu/make_model.py --shape qwen2.5-1.5b --out "$model" >/dev/null
export PEER_TOKENIZER="$model"
port=${REP_PORT:-8124}
# shellcheck source=benchmarks/gpu/serve.sh
source benchmarks/gpu/serve.sh
BASE_PYTHONPATH="$base" SERVE=${REP_SERVE:-} start_server "$out" "$model" "$port" --no-enable-prefix-caching || exit 1
read -r -a plugin <<< "$(plugin_args)"
one() {  # name, point, test, extra pytest args...
    local name=$1 point=$2 test=$3
    shift 3
    REP_POINT=$point PYTHONPATH="$PWD:$PWD/benchmarks/gpu${base:+:$base}" $python -P -m pytest \
        -c benchmarks/gpu/pytest.ini --rootdir=. "${plugin[@]}" -p no:cacheprovider -q \
        "benchmarks/gpu/test_repeats_gpu.py::$test" "--vllm-url=http://127.0.0.1:$port" \
        "--vllm-results-dir=$out/res-$name" --vllm-no-plots --vllm-warmup=2 --vllm-reset-prefix-cache=off \
        "$@" > "$out/pytest-$name.txt" 2>&1
    echo "$name: exit $? ($(date +%T))" | tee -a "$out/summary.txt"
}
# REP_PARTS picks and orders the runs (default: all five, in this order).
for part in ${REP_PARTS:-plugin-inf peer-inf plugin-c64 peer-c64 plugin-c64-30s}; do
    case $part in
        plugin-inf) one plugin-inf inf test_rep_point --vllm-repeats=5 ;;
        peer-inf) one peer-inf inf test_rep_peer ;;
        plugin-c64) one plugin-c64 c64 test_rep_point --vllm-repeats=5 ;;
        peer-c64) one peer-c64 c64 test_rep_peer ;;
        plugin-c64-30s) one plugin-c64-30s c64 test_rep_point --vllm-repeats=5 --vllm-duration=30 ;;
    esac
done
