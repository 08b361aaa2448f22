"""Per-stage window timings: what counts as the network, the medians vggt_map reports, and the
end-to-end benchmark that checks issue 17's ratios."""

import json

import pytest

from vggt_ros.bench import pipeline_e2e
from vggt_ros.pipeline.timings import network_seconds, window_stage_medians


def test_the_network_is_the_window_and_track_forward_passes_only():
    timings = {"predict": 0.5, "predict.preprocess": 0.1, "predict.inference": 0.3,
               "track": 0.4, "track.inference": 0.2, "track.preprocess": 0.1, "chain": 0.05}
    assert network_seconds(timings) == pytest.approx(0.5)
    assert network_seconds({"chain": 0.1}) == 0.0  # a double has no network


def test_window_stage_medians_count_a_missing_stage_as_zero():
    windows = [{"chain": 0.010, "predict.inference": 0.1}, {"chain": 0.030},
               {"chain": 0.020, "predict.inference": 0.3}]
    medians = window_stage_medians(windows)
    assert medians["chain"] == pytest.approx(20.0)
    assert medians["predict.inference"] == pytest.approx(100.0)
    assert medians["network"] == pytest.approx(100.0)
    assert window_stage_medians([]) == {}


def test_summary_ratios_come_from_the_window_rows():
    rows = [{"predict.inference": 0.1, "track.inference": 0.1, "chain": 0.05,
             "end_to_end": 0.3}] * 3
    summary = pipeline_e2e.summarise(rows)
    assert summary["network"] == pytest.approx(200.0)
    assert summary["end_to_end / network"] == pytest.approx(1.5)
    assert summary["non-network share"] == pytest.approx(1 / 3)
    assert summary["other"] == pytest.approx(50.0)


@pytest.mark.slow
def test_pipeline_e2e_runs_a_real_predictor_on_rendered_frames(tmp_path, capsys):
    out = tmp_path / "e2e.json"
    code = pipeline_e2e.main(["--config", "tiny", "--width", "160", "--height", "120",
                              "--windows", "2", "--warmup-windows", "1",
                              "--preprocess", "host", "device", "--json", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    assert len(report["runs"]) == 2
    for run in report["runs"].values():
        assert run["windows"] == 2
        assert run["median_ms"]["network: window"] > 0
        assert run["median_ms"]["end_to_end"] >= run["median_ms"]["network"]
    assert "end_to_end / network" in capsys.readouterr().out


def test_a_windows_time_with_its_own_fusion_takes_that_fusion_from_the_next_row():
    """Each row's ``fuse.background`` is the previous window's fusion, which ran beside it."""
    rows = [{"predict.inference": 0.1, "fuse": 0.01, "fuse.background": 0.05 * i,
             "chain.pixels": 0.02, "end_to_end": 0.3} for i in range(1, 4)]
    summary = pipeline_e2e.summarise(rows)
    assert summary["end_to_end with its fusion"] == pytest.approx(1e3 * (0.29 + 0.125))
    assert summary["beside the next window: fusion"] == pytest.approx(100.0)
    assert summary["beside the track request: map points"] == pytest.approx(20.0)
    assert summary["other"] == pytest.approx(190.0)  # beside-work is not counted twice
