"""vLLM's own ``/metrics`` beside every benchmark point (docs/server-metrics.md).

parse.py (Prometheus text into samples), summary.py (a phase's figures, pure), checks.py (the
server's counts against the client's), scraper.py (the sampling process), recorder.py (around
a point's measured phase: start, stop, what the point records).
"""
