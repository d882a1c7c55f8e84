"""``python -m pytest_vllm_serve.report``: rebuild a session's report.html, or compare two runs.

    python -m pytest_vllm_serve.report build vllm-results/latest
    python -m pytest_vllm_serve.report compare OLD NEW -o compare.html
    python -m pytest_vllm_serve.report compare OLD NEW --format md >> "$GITHUB_STEP_SUMMARY"

OLD and NEW are sessions' results directories or their summary.json files. The pages
are built by bench/sinks/report (docs/report.md).
"""
