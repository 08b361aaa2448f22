"""The held-out sweep's summary: per-kind medians beside the no-motion baseline, and a verdict
against issue 12's bounds that says MISSED when a median is over them."""
import pytest

from vggt_ros.evaluation.sweep import main, summary_table


def _row(kind, seed, ate, rpe):
    return {"trajectory": kind, "seed": seed, "ate_percent": ate, "rpe_rot_rmse_deg": rpe,
            "rpe_rot_mean_deg": rpe / 2, "baseline_ate_percent": 15.0,
            "baseline_rpe_rot_deg": 3.0}


def test_each_kind_gets_its_median_and_a_verdict_per_bound():
    rows = [_row("turn", 1_000_101, 9.0, 0.5), _row("loop", 1_000_102, 2.0, 0.8),
            _row("loop", 1_000_101, 1.0, 1.5), _row("loop", 1_000_103, 5.0, 0.9),
            _row("turn", 1_000_102, 1.0, 0.7)]
    table = summary_table(rows)
    lines = table.splitlines()
    loop = next(line for line in lines if "loop median of 3" in line)
    assert "| 2.00 (15.0) | 0.90 (3.00) |" in loop and "ATE / RPE: met / met" in loop
    turn = next(line for line in lines if "turn median of 2" in line)
    assert "| 5.00 (15.0) | 0.60 (3.00) |" in turn and "ATE / RPE: MISSED / met" in turn
    # sequences listed by kind (loop first, as in vggt_ros.synth.TRAJECTORIES), then seed
    seeds = [line.split("|")[2].strip() for line in lines[2:5]]
    assert seeds == ["1,000,101", "1,000,102", "1,000,103"]


def test_training_seeds_are_refused():
    with pytest.raises(SystemExit):
        main(["--out", "/nonexistent", "--seeds", "7"])


def test_a_camera_turning_in_place_has_no_ate_verdict():
    table = summary_table([_row("turn", 1_000_101, float("nan"), 0.8)])
    turn = next(line for line in table.splitlines() if "turn median of 1" in line)
    assert "ATE / RPE: n/a / met" in turn
