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
cd "$(dirname "$0")/../.."
out=${1:?usage: run_repeats.sh OUT_DIR}
python=${PYTHON:-python3}
mkdir -p "$out"
export VLLM_USE_FLASHINFER_SAMPLER=${VLLM_USE_FLASHINFER_SAMPLER:-0} REP_OUT="$out/peer"
base=${PYTHONPATH:-}
model="$out/models/qwen-1.5b"
[ -f "$model/config.json" ] || PYTHONPATH="$PWD${base:+:$base}" $python benchmarks/gpu/make_model.py --shape qwen2.5-1.5b --out "$model" >/dev/null
export PEER_TOKENIZER="$model"
port=${REP_PORT:-8124}
PYTHONPATH="$base" ${REP_SERVE:-$python -m vllm.entrypoints.cli.main serve} "$model" --port "$port" --load-format dummy \
    --max-model-len 8192 --no-enable-prefix-caching > "$out/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null' EXIT
$python - "$port" <<'PY' || { tail -30 "$out/server.log"; exit 1; }
import sys, time, urllib.request
deadline = time.time() + 400
while time.time() < deadline:
    try:
        if urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/health", timeout=2).status == 200:
            sys.exit(0)
    except OSError:
        time.sleep(1)
sys.exit(1)
PY
echo "server healthy" | tee -a "$out/summary.txt"
plugin=()
$python -c "import importlib.metadata as m; m.distribution('pytest-vllm-serve')" 2>/dev/null || plugin=(-p pytest_vllm_serve.plugin)
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
