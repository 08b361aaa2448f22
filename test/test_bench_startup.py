"""The start-up benchmark (bench/startup.py): its verdicts, and one real run on CPU."""
import json

import pytest

from vggt_ros.bench import startup


def _start(configure, first, median, worst, cache="/c"):
    return {"compile_cache": cache, "model_load_s": 1.0, "warmup_s": configure - 1.0,
            "configure_s": configure, "first_window_s": first, "steady_median_s": median,
            "median_window_s": median, "max_window_s": worst, "windows": 20,
            "compiled_after_warmup": 0, "eager_calls_after_warmup": 0,
            "compile_messages": []}


def test_verdicts_apply_the_issues_criteria():
    cold, warm = _start(100.0, 0.12, 0.1, 0.15), _start(35.0, 0.2, 0.1, 0.25)
    lines = startup.verdicts([cold, warm])
    assert lines[0] == "start 1: first window 1.20x the steady median (ok 1.5x)"
    assert lines[2] == "start 2: first window 2.00x the steady median (OVER 1.5x)"
    assert lines[3] == "start 2: worst window 2.50x the median (OVER 2x)"
    assert lines[-1] == "warm configure 35 % of cold (ok 40 %)"
    rows = startup.table([cold, warm])
    assert rows[2].startswith("1 | cold | 1.00 | 99.00 | 100.00 | 0.12")
    assert rows[3].startswith("2 | warm |")


def test_without_compilation_there_is_no_cache_verdict():
    lines = startup.verdicts([_start(5.0, 1, 1, 1, cache=""), _start(5.0, 1, 1, 1, cache="")])
    assert not any("warm configure" in line for line in lines)
    assert startup.table([_start(5.0, 1, 1, 1, cache="")])[2].startswith("1 | - |")


@pytest.mark.slow
def test_one_start_on_cpu_end_to_end(tmp_path, capsys):
    out = tmp_path / "startup.json"
    code = startup.main(["--device", "cpu", "--model", "tiny", "--camera", "96x72",
                         "--image-size", "70", "--window", "3", "--overlap", "1",
                         "--pose-source", "camera_head", "--pose-queries", "8",
                         "--windows", "3", "--flush-every", "2", "--track-every", "2",
                         "--starts", "1", "--json", str(out)])
    assert code == 0
    (start,) = json.loads(out.read_text())["starts"]
    assert start["warmup"].startswith("warm-up") and start["warmup_s"] > 0
    assert start["windows"] >= 3 and start["flushes"] >= 1 and start["track_requests"] >= 1
    assert start["compiled_after_warmup"] == 0 and start["eager_calls_after_warmup"] == 0
    assert "first window" in capsys.readouterr().out
