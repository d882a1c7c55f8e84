#!/usr/bin/env bash
# Part h: an older checkout of the plugin's client against this one, and vllm bench serve, on one
# server started by hand (Qwen2.5-1.5B shape, dummy weights, prefix caching off), concurrency 64,
# three rounds in rotated order. See test_client_ab.py.
#
#   bash benchmarks/gpu/run_ab.sh OUT_DIR OLD_TREE [NEW_TREE]
#
# OLD_TREE and NEW_TREE (default: this checkout) each hold a pytest_vllm_serve/. AB_SERVE
# replaces the server command before the model path (default: vLLM's CLI, `... serve`).
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
out=${1:?usage: run_ab.sh OUT_DIR OLD_TREE}
old=$(cd "${2:?usage: run_ab.sh OUT_DIR OLD_TREE [NEW_TREE]}" && pwd)
new=$(cd "${3:-.}" && pwd)
python=${PYTHON:-python3}
mkdir -p "$out"
export VLLM_USE_FLASHINFER_SAMPLER=${VLLM_USE_FLASHINFER_SAMPLER:-0} AB_OUT="$out/ab"
base=${PYTHONPATH:-}
model="$out/models/qwen-1.5b"
[ -f "$model/config.json" ] || PYTHONPATH="$PWD${base:+:$base}" $python benchmarks/gpu/make_model.py --shape "${AB_SHAPE:-qwen2.5-1.5b}" --out "$model" >/dev/null
export PEER_TOKENIZER="$model"
port=${AB_PORT:-8123}
# shellcheck source=benchmarks/gpu/serve.sh
source benchmarks/gpu/serve.sh
read -r -a serve_args <<< "${AB_SERVE_ARGS:-}"
BASE_PYTHONPATH="$base" SERVE=${AB_SERVE:-} start_server "$out" "$model" "$port" --no-enable-prefix-caching "${serve_args[@]}" || exit 1
# Load the plugin by name where it is only on PYTHONPATH (not pip-installed): the tree given wins.
read -r -a plugin <<< "$(plugin_args)"
one() {  # name, tree, processes, test
    local name=$1 tree=$2
    # -P: no current directory ahead of PYTHONPATH, so the tree given is the one imported.
    AB_NAME=$name AB_PROCESSES=$3 PYTHONPATH="$tree:$PWD/benchmarks/gpu${base:+:$base}" $python -P -m pytest \
        -c benchmarks/gpu/pytest.ini --rootdir=. "${plugin[@]}" -p no:cacheprovider -q \
        "benchmarks/gpu/test_client_ab.py::$4" "--vllm-url=http://127.0.0.1:$port" "--vllm-results-dir=$out/res-$name" \
        --vllm-no-plots > "$out/pytest-$name.txt" 2>&1
    echo "$name: exit $?" | tee -a "$out/summary.txt"
}
read -r -a variants <<< "${AB_VARIANTS:-old-1 new-1 old-3 peer}"
n=${#variants[@]}
for round in 0 1 2; do
    for (( i = 0; i < n; i++ )); do
        v=${variants[$(( (i + round) % n ))]}
        case $v in
            old-1) one "$v-r$round" "$old" 1 test_ab_point ;;
            old-3) one "$v-r$round" "$old" 3 test_ab_point ;;
            new-1) one "$v-r$round" "$new" 1 test_ab_point ;;
            peer) one "$v-r$round" "$new" 1 test_ab_peer ;;
        esac
    done
done
