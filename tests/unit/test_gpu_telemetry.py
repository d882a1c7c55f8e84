"""GPU telemetry: the figures by hand, which GPUs are the server's, the reader and the scraper
process over NVML. No GPU is here: NVML is tests/support/fake_nvml (a stand-in, named as such);
the real library is read on the H200 by benchmarks/gpu/ (docs/results/h200.md)."""

from __future__ import annotations

import csv
import io
import os
import sys
import time
from pathlib import Path

import pytest

from pytest_vllm_serve.bench.server_metrics import gpu as telemetry
from pytest_vllm_serve.bench.server_metrics.gpu import GpuSample, aggregate, energy_j, gpu_figures, server_gpus
from pytest_vllm_serve.bench.server_metrics.parse import Snapshot
from pytest_vllm_serve.bench.server_metrics.recorder import ServerMetricsRecorder
from pytest_vllm_serve.bench.server_metrics.scraper import ScraperProcess
from pytest_vllm_serve.bench.server_metrics.series import series_csv
from pytest_vllm_serve.bench.sinks.results import PointRecord, summary_csv
from pytest_vllm_serve.bench.sinks.summary import points_table
from tests.support.metrics_server import serving_metrics
from tests.unit.test_server_metrics import client, fake_server, records

FAKE_NVML = Path(__file__).parent.parent / "support" / "fake_nvml"


def g(gpu: str, util: float, power: float, energy: float | None, mem: float = 1000.0) -> GpuSample:
    return GpuSample(gpu, util, mem, 1980.0, power, energy)


def test_one_moment_averages_utilization_and_clock_and_sums_memory_and_power():
    moment = aggregate([g("0", 50, 300, 0, mem=1024), g("1", 70, 100, 0, mem=2048)])
    assert moment == {
        "gpu_util_pct": 60.0,
        "gpu_mem_used_mib": 3072.0,
        "gpu_sm_clock_mhz": 1980.0,
        "gpu_power_w": 400.0,
    }
    assert aggregate([GpuSample("0", None, None, None, None, None)])["gpu_power_w"] is None


def test_energy_is_the_counters_growth_or_else_the_power_integral():
    counters = [[g("0", 0, 300, 1000.0), g("1", 0, 100, 50.0)], [g("0", 0, 300, 1600.0), g("1", 0, 100, 250.0)]]
    assert energy_j([0.0, 2.0], counters) == pytest.approx(800.0)  # 600 + 200 J
    no_counter = [[g("0", 0, 300, None)], [g("0", 0, 500, None)], [g("0", 0, 500, None)]]
    assert energy_j([0.0, 1.0, 3.0], no_counter) == pytest.approx(400 + 1000)  # trapezoids: 1 s x 400 W, 2 s x 500 W
    assert energy_j([0.0], counters[:1]) is None


def test_the_phase_figures_and_tokens_per_joule():
    series = [[g("0", 40, 200, 0.0)], [g("0", 80, 400, 300.0)]]
    figures = gpu_figures([0.0, 1.0], series, output_tokens=1500)
    assert figures["gpu_count"] == 1
    assert (figures["gpu_util_pct_mean"], figures["gpu_util_pct_max"]) == (60.0, 80.0)
    assert (figures["gpu_power_w_mean"], figures["gpu_power_w_max"]) == (300.0, 400.0)
    assert figures["gpu_energy_j"] == 300.0 and figures["output_tokens_per_joule"] == 5.0
    assert "output_tokens_per_joule" not in gpu_figures([0.0, 1.0], series, output_tokens=0)
    assert gpu_figures([], [], 10) == {}


@pytest.mark.parametrize(
    ("launcher", "ids", "url", "expected"),
    [
        ("local", {"CUDA_VISIBLE_DEVICES": "2,3"}, "http://127.0.0.1:8000", ["2", "3"]),
        ("local", {"pid": 1}, "http://127.0.0.1:8000", ["0", "1", "2", "3"]),
        ("local", {"pid": 1}, "http://127.0.0.1:8000", None),  # no CUDA_VISIBLE_DEVICES here: every GPU
        ("docker", {}, "http://127.0.0.1:8000", ["0", "1", "2", "3"]),
        ("external", {}, "http://localhost:8000", ["0", "1", "2", "3"]),
        ("external", {}, "http://[::1]:8000", ["0", "1", "2", "3"]),
        ("external", {}, "http://gpu-node-7:8000", []),  # another host's GPUs are not ours to read
        ("slurm", {"job": 12}, "http://10.0.0.5:8000", []),
    ],
)
def test_the_servers_gpus(launcher, ids, url, expected):
    visible = None if expected is None else ["0", "1", "2", "3"]
    assert server_gpus(launcher, ids, url, visible) == expected


def test_this_processs_gpus_follow_cuda_visible_devices():
    assert telemetry.visible_ids({}) is None
    assert telemetry.visible_ids({"CUDA_VISIBLE_DEVICES": "1, 3"}) == ["1", "3"]
    assert telemetry.visible_ids({"CUDA_VISIBLE_DEVICES": "-1"}) == []


def test_without_the_driver_nvml_says_why():
    if os.path.exists("/dev/nvidiactl"):
        pytest.fail("this test is for a machine without NVIDIA's driver; this one has /dev/nvidiactl")
    reader, why = telemetry.open_reader(["0"])
    assert reader is None and "NVML could not open GPUs 0" in why
    assert telemetry.open_reader([]) == (None, "no GPU of the server is on this machine")
    assert telemetry.open_reader(None)[0] is None  # every GPU: there is none to open


@pytest.fixture
def metrics_server():
    with serving_metrics() as url:
        yield url


@pytest.fixture
def fake_nvml(monkeypatch):
    """The stand-in NVML, in this process and in the scraper processes it starts."""
    monkeypatch.syspath_prepend(str(FAKE_NVML))
    monkeypatch.delitem(sys.modules, "pynvml", raising=False)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(FAKE_NVML), os.environ.get("PYTHONPATH", "")]))
    import pynvml

    assert "stand-in" in (pynvml.__doc__ or "")
    yield pynvml
    monkeypatch.delitem(sys.modules, "pynvml", raising=False)


def test_the_reader_reads_every_gpu_by_index_or_uuid(fake_nvml):
    reader, why = telemetry.open_reader(["0", "GPU-1"])
    assert why is None and reader is not None
    first, second = reader.read()
    assert (first.gpu, first.util_pct, first.mem_used_mib, first.sm_clock_mhz, first.power_w) == (
        "0",
        50,
        1024,
        1980,
        300,
    )
    assert (second.gpu, second.power_w) == ("GPU-1", 100)
    reader.close()
    assert fake_nvml._open == 0
    assert telemetry.open_reader(["7"])[0] is None and fake_nvml._open == 0  # an unknown GPU: NVML closed again
    every, _ = telemetry.open_reader(None)
    assert [gpu for gpu, _ in every.handles] == ["0", "1"]
    every.close()


def test_the_scraper_process_reads_the_gpus_beside_each_scrape(fake_nvml, metrics_server, tmp_path):
    process = ScraperProcess(metrics_server, {}, 0.1, tmp_path / "s.jsonl", gpus=["0", "1"])
    process.go()
    time.sleep(0.8)
    scraped, errors = process.stop()
    assert errors == [] and len(scraped) >= 3
    assert set(process.gpu) == {s.t for s in scraped}  # one reading per scrape, at its time
    assert [s.power_w for s in process.gpu[scraped[0].t]] == [300.0, 100.0]


def test_the_recorder_records_the_gpus_figures_and_series(fake_nvml, metrics_server, tmp_path):
    server = fake_server(metrics_server, "local", {"pid": os.getpid(), "CUDA_VISIBLE_DEVICES": "0,1"})
    recorder = ServerMetricsRecorder(server, 0.1)
    recorder.before_measure()
    time.sleep(2.0)
    recorder.after_measure()
    result = recorder.record(client(output=400), records(), tmp_path / "p.metrics.csv", tmp_path)
    figures = result["figures"]
    duration = max(recorder.phase.gpu) - min(recorder.phase.gpu)
    assert figures["gpu_count"] == 2 and figures["gpu_power_w_mean"] == 400.0
    assert figures["gpu_util_pct_mean"] == 60.0 and figures["gpu_mem_used_mib_max"] == 3072.0
    # 400 W over the phase. Each reading comes a little after its scrape's time stamp; the first's
    # and the last's lags differ by well under 0.5 s even on a busy machine (0.33 s seen under CI).
    assert duration > 1.5
    assert abs(figures["gpu_energy_j"] - 400 * duration) < 400 * 0.5
    assert figures["output_tokens_per_joule"] == pytest.approx(400 / figures["gpu_energy_j"])
    rows = list(csv.DictReader(io.StringIO((tmp_path / "p.metrics.csv").read_text())))
    assert float(rows[0]["gpu_energy_j"]) == 0 and float(rows[-1]["gpu_power_w"]) == 400
    assert float(rows[-1]["gpu_energy_j"]) == pytest.approx(figures["gpu_energy_j"], abs=0.01)


def test_a_gpu_without_an_energy_counter_integrates_power(fake_nvml, monkeypatch):
    monkeypatch.setenv("FAKE_NVML_NO_ENERGY", "1")
    reader, _ = telemetry.open_reader(["0", "1"])
    assert reader is not None
    a = reader.read()
    b = reader.read()
    assert b[1].energy_j is None
    assert energy_j([0.0, 2.0], [a, b]) == pytest.approx(800.0)  # 2 s at 400 W
    reader.close()


def test_gpu_columns_show_only_where_a_point_has_them():
    cpu = PointRecord(id="t::test[c=1]", suite="concurrency", params={}, metrics={"completed": 4.0})
    gpu = PointRecord(
        id="t::test[c=8]",
        suite="concurrency",
        params={},
        metrics={"completed": 4.0},
        server_metrics={"figures": {"gpu_power_w_mean": 412.0, "output_tokens_per_joule": 3.25}},
    )
    assert "GPU W" not in points_table([cpu])[0]
    table = points_table([cpu, gpu])
    assert "GPU W" in table[0] and "tok/J" in table[0] and "412" in table[3] and "3.25" in table[3]
    row = next(csv.DictReader(io.StringIO(summary_csv([gpu]))))
    assert row["server_output_tokens_per_joule"] == "3.25"


def test_the_series_has_gpu_columns_only_with_gpus():
    snapshots = [Snapshot(10.0, {}), Snapshot(11.0, {})]
    assert "gpu_power_w" not in series_csv(snapshots)
    text = series_csv(snapshots, {10.0: [g("0", 10, 100, 5.0)], 11.0: [g("0", 90, 300, 205.0)]})
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["gpu_energy_j"] for r in rows] == ["0.0", "200.0"] and rows[1]["gpu_util_pct"] == "90.0"


def _image(path: Path):
    import matplotlib.image

    return matplotlib.image.imread(path)


def _timeline(url: str, tmp_path: Path, gpus: str | None) -> tuple[dict, tuple]:
    """A recorded phase with its timeline: the point's server_metrics and the PNG's shape."""
    ids = {"pid": os.getpid(), **({"CUDA_VISIBLE_DEVICES": gpus} if gpus else {})}
    server = fake_server(url, "local", ids)
    recorder = ServerMetricsRecorder(server, 0.1, timeline="test[c=8] (concurrency 8)")
    recorder.before_measure()
    sent = records(8)
    for k, record in enumerate(sent):
        record.send_time = recorder.phase.start.t + 0.05 * k
    time.sleep(0.5)
    recorder.after_measure()
    result = recorder.record(client(), sent, tmp_path / "points" / "p.metrics.csv", tmp_path)
    assert result["timeline_file"] == "points/p.timeline.png"
    image = _image(tmp_path / "points" / "p.timeline.png")
    assert image.std() > 0.05  # not blank
    return result, image.shape


def test_the_timeline_has_a_gpu_panel_where_gpus_were_sampled(fake_nvml, metrics_server, tmp_path, monkeypatch):
    with_gpus, tall = _timeline(metrics_server, tmp_path / "a", "0,1")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # this process sees no GPU
    without, short = _timeline(metrics_server, tmp_path / "b", None)
    assert "gpu_count" in with_gpus["figures"] and "gpu_count" not in without["figures"]
    assert tall[0] > short[0]  # taller: the GPU panel


def test_no_timeline_with_no_plots(metrics_server, tmp_path):
    recorder = ServerMetricsRecorder(fake_server(metrics_server), 0.1)
    recorder.before_measure()
    recorder.after_measure()
    assert "timeline_file" not in recorder.record(client(), records(), tmp_path / "p.metrics.csv", tmp_path)
    assert not (tmp_path / "p.timeline.png").exists()
