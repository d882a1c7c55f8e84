# shellcheck shell=bash
# Sourced by the GPU scripts: start one vLLM server by hand and wait until it is healthy.
#
#   source benchmarks/gpu/serve.sh
#   start_server OUT_DIR MODEL_DIR PORT [server args...]    # sets SERVER_PID; stops it on exit
#
# SERVE replaces the server command before the model path (default: vLLM's CLI, `... serve`).
# The server always gets --load-format dummy and --max-model-len 8192; the args given follow.
# It runs with the PYTHONPATH the script started with (BASE_PYTHONPATH), not the plugin's tree.
start_server() {
    local out=$1 model=$2 port=$3
    shift 3
    PYTHONPATH="${BASE_PYTHONPATH:-}" ${SERVE:-${PYTHON:-python3} -m vllm.entrypoints.cli.main serve} "$model" \
        --port "$port" --load-format dummy --max-model-len 8192 "$@" > "$out/server.log" 2>&1 &
    export SERVER_PID=$!
    trap 'kill $SERVER_PID 2>/dev/null; wait $SERVER_PID 2>/dev/null' EXIT
    "${PYTHON:-python3}" - "$port" <<'PY' || { tail -30 "$out/server.log"; return 1; }
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
    echo "server healthy ($(date +%T))" | tee -a "$out/summary.txt"
}

# The plugin by name where it is only on PYTHONPATH (not pip-installed).
plugin_args() {
    "${PYTHON:-python3}" -c "import importlib.metadata as m; m.distribution('pytest-vllm-serve')" 2>/dev/null \
        || echo "-p pytest_vllm_serve.plugin"
}
