"""Per-suite plots: which points share a line, and that a repeated point gets its own."""

from __future__ import annotations

import math

from pytest_vllm_serve.bench.sinks.plots import draw_suite_plots, split_series
from pytest_vllm_serve.bench.sinks.results import PointRecord, ResultsStore

METRICS = {
    "completed": 10.0,
    "median_ttft_ms": 5.0,
    "p99_ttft_ms": 9.0,
    "median_tpot_ms": 1.0,
    "p99_tpot_ms": 2.0,
    "median_e2el_ms": 20.0,
    "p99_e2el_ms": 30.0,
    "output_throughput": 100.0,
    "total_token_throughput": 300.0,
}


def point(rate: float, **params) -> PointRecord:
    return PointRecord(
        id=f"t[{rate}-{params}]",
        suite="rate",
        params={"request_rate": rate, **params},
        metrics=dict(METRICS),
        server={"model": "/models/llama-8b"},
    )


def test_a_plain_sweep_is_one_line_even_when_other_params_change_with_the_swept_value():
    points = [point(1, num_prompts=30), point(4, num_prompts=100), point(math.inf, num_prompts=200)]
    lines = split_series(points, "request_rate")
    assert list(lines) == [()]
    assert lines[()] == points


def test_a_point_measured_again_with_other_params_is_its_own_line():
    first = [point(1), point(4), point(math.inf)]
    again = point(math.inf, again=True)
    lines = split_series(first + [again], "request_rate")
    assert lines == {(("again", "None"),): first, (("again", "True"),): [again]}


def test_the_plot_is_drawn_with_one_line_per_series(tmp_path):
    store = ResultsStore(tmp_path)
    for p in [point(1), point(4), point(math.inf), point(math.inf, again=True)]:
        store.save_point(p, {})
    (path,) = draw_suite_plots(store)
    assert path.name == "rate.png" and path.stat().st_size > 10_000


def test_a_partial_point_gets_a_hollow_ring_and_one_legend_entry(tmp_path):
    import matplotlib

    from pytest_vllm_serve.bench.sinks.plots import PARTIAL_LABEL, _mark_partial

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cut = point(4)
    cut.partial = "the server stalled: ..."
    fig, axes = plt.subplots(1, 4)
    _mark_partial(axes, [point(1), cut], [1.0, 4.0])
    rings = [line for axis in axes for line in axis.get_lines() if line.get_label() == PARTIAL_LABEL]
    assert rings and all(r.get_markerfacecolor() == "none" and list(r.get_xdata()) == [4.0] for r in rings)
    plt.close(fig)
    store = ResultsStore(tmp_path)
    for p in [point(1), cut]:
        store.save_point(p, {})
    (path,) = draw_suite_plots(store)
    assert path.stat().st_size > 10_000


def test_repeated_points_get_error_bars_and_unstable_ones_an_orange_ring(tmp_path):
    import matplotlib

    from pytest_vllm_serve.bench.sinks.plots import UNSTABLE_LABEL, _draw_line, _mark_unstable

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steady, shaky = point(1), point(4)
    for p in (steady, shaky):
        value = p.metrics["median_ttft_ms"]
        p.repeats = {
            "n": 3,
            "metrics": {"median_ttft_ms": {"median": value, "ci_low": value - 1, "ci_high": value + 2}},
        }
    shaky.stability = {"stable": False, "reasons": ["too short"]}
    fig, axes = plt.subplots(1, 4)
    _mark_unstable(axes, [steady, shaky], [1.0, 4.0])
    rings = [line for axis in axes for line in axis.get_lines() if line.get_label() == UNSTABLE_LABEL]
    assert rings and all(list(r.get_xdata()) == [4.0] for r in rings)
    plt.close(fig)
    fig, axes = plt.subplots(1, 4)
    _draw_line(axes, (), [steady, shaky], [1.0, 4.0], {})
    bars = [c for c in axes[0].containers if isinstance(c, matplotlib.container.ErrorbarContainer)]
    assert len(bars) == 1  # TTFT p50 has intervals; p99 has none
    (segments,) = bars[0].lines[2]
    spans = [(seg[0][1], seg[1][1]) for seg in segments.get_segments()]
    assert spans == [
        (steady.metrics["median_ttft_ms"] - 1, steady.metrics["median_ttft_ms"] + 2),
        (shaky.metrics["median_ttft_ms"] - 1, shaky.metrics["median_ttft_ms"] + 2),
    ]
    plt.close(fig)
