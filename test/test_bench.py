"""The benchmark (vggt_ros.bench): its FLOP counter, kernel families and command line, on CPU.

The counted FLOPs must equal what torch's FlopCounterMode sees when the reference runs.
"""
import json

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from vggt_ros.bench import cli
from vggt_ros.bench.flops import stage_flops
from vggt_ros.bench.models import random_inputs
from vggt_ros.bench.profile import kernel_family
from vggt_ros.bench.stages import Paths
from vggt_ros.model import VGGTConfig

S, H, W, N = 3, 42, 70, 5


@pytest.fixture(scope="module")
def reference(random_small_vggt):
    return random_small_vggt


def test_counted_flops_match_torch_flop_counter(reference, small_config):
    images, queries = random_inputs(S, H, W, N, torch.device("cpu"), seed=1)
    expected = stage_flops(small_config, S, H, W, N)

    def count(fn):
        with sdpa_kernel([SDPBackend.MATH]), FlopCounterMode(display=False) as counter:
            fn()  # grad mode on: nn.MultiheadAttention takes its countable (non-fused) path
        return counter.get_total_flops()

    # The very stages the benchmark times on the reference path.
    stages = Paths(reference, None, torch.device("cpu")).reference_stages(images, queries)
    measured = {stage: count(stages[stage]) for stage in (
        "dino", "aggregator", "camera_head", "depth_head", "point_head", "track_head")}
    assert measured == expected


def test_vggt_1b_flops_at_s8_match_the_quoted_scale():
    """The issue quotes ~24 TFLOP for the VGGT-1B backbone at S=8, 392x518."""
    flops = stage_flops(VGGTConfig(), 8, 392, 518)
    assert 20e12 < flops["aggregator"] < 28e12
    assert flops["dino"] < flops["aggregator"]


@pytest.mark.slow
def test_bench_cli_runs_end_to_end_on_cpu(tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = cli.main(["--device", "cpu", "--config", "tiny", "--height", "42", "--width", "70",
                     "--frames", "2", "--extra-frames", "3", "--warmup", "0", "--reps", "1",
                     "--queries", "4", "--window", "3", "--stride", "1",
                     "--accuracy-frames", "2", "--variants", "fp8", "--pose-queries", "16",
                     "--json", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    assert set(report["results"]) == {"reference", "fast"}
    assert report["results"]["fast"]["3"]["full"]["ms"] > 0  # end-to-end only size
    assert "track_head" in report["results"]["fast"]["2"]
    assert report["accuracy"]["pass"] is True
    assert report["window"]["cache_hits"] > 0
    fp8 = {row["frames"]: row for row in report["variants"]}
    assert "error" not in fp8[2] and fp8[2]["ms"] > 0 and fp8[2]["pose_enc_max_abs"] > 0
    # both kinds of track request are timed: from the window's tokens and with a re-run
    assert report["window"]["track_cached_ms"] > 0 and report["window"]["track_newest_ms"] > 0
    pose = report["pose_solver"]  # what the pose solver adds: its own stage
    assert pose["track_ms"] > 0 and pose["solve_ms"] > 0 and pose["queries"] == 16
    printed = capsys.readouterr().out
    assert "pose solver, S=3, 16 queries" in printed
    assert printed.rstrip().splitlines()[-1].startswith("target")  # the table comes last


@pytest.mark.parametrize("name, family", [
    ("cudnn_generated_fort_native_sdpa_sm90_flash_fprop_wgmma_f16_knob_7", "attention"),
    ("pytorch_flash::flash_fwd_kernel<Flash_fwd_kernel_traits<64, 128>>", "attention"),
    ("sm90_xmma_fprop_implicit_gemm_bf16bf16_bf16f32_f32_nhwckrsc_nhwc", "convolution"),
    ("nvjet_sm90_tst_256x128_64x4_1x2_h_bz_coopA_bias_TNT", "matmul"),
    ("void gemmSN_TN_kernel<float, 128, 16, 2, 4, 8, 9, false>", "matmul"),
    ("triton_poi_fused__scaled_dot_product_cudnn_attention_addcmul_flip_mul",
     "fused element-wise (torch.compile)"),
    ("void at::native::vectorized_layer_norm_kernel<float, float, false>",
     "other (element-wise, norms, resampling)"),
])
def test_profile_sorts_kernels_into_families(name, family):
    assert kernel_family(name) == family


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
def test_bench_cli_compares_sparse_global_attention_with_exact(tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = cli.main(["--device", "cpu", "--config", "tiny", "--height", "42", "--width", "70",
                     "--frames", "", "--extra-frames", "", "--paths", "fast", "--queries", "0",
                     "--warmup", "0", "--reps", "1", "--window", "2", "--stride", "1",
                     "--accuracy-frames", "2", "--approx", "block_size=16,max_ratio=0.25",
                     "--approx-frames", "8", "--approx-reps", "1", "--json", str(out)])
    assert code == 0
    section = json.loads(out.read_text())["approx"]
    assert section["kernel_check"]["flex_vs_dense_max_abs"] < 1e-5
    (row,) = section["rows"]
    assert row["frames"] == 8 and row["exact_ms"] > 0 and row["approx_ms"] > 0
    assert 0 < row["kept_mean"] < 1 and row["pose_enc_max_abs"] > 0  # really approximate
    assert "block-sparse global attention vs exact" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["--paths", "quick"], ["--height", "100"],
                                  ["--approx", "mass=2"], ["--approx", "ratio=0.5"]])
def test_bench_cli_rejects_bad_arguments(argv):
    with pytest.raises(SystemExit):
        cli.main(argv)


def test_tracker_bench_runs_the_selected_variants_and_always_its_reference():
    import argparse

    from vggt_ros.bench import tracker
    chosen = tracker.selected_variants(argparse.Namespace(precisions=["tf32"],
                                                          correlation=["full"]))
    assert [tracker.variant_name(v) for v in chosen] == ["fp32/full", "tf32/full"]
    every = tracker.selected_variants(argparse.Namespace(precisions=["fp32", "tf32", "bf16"],
                                                         correlation=["full", "local"]))
    assert every == tracker.VARIANTS


@pytest.mark.slow
def test_tracker_bench_times_every_switch_and_measures_its_distance_from_fp32(tmp_path, capsys):
    from vggt_ros.bench import tracker
    out = tmp_path / "tracker.json"
    assert tracker.main(["--device", "cpu", "--config", "tiny", "--frames", "2", "--width", "70",
                         "--height", "42", "--queries", "4", "--repeats", "1",
                         "--json", str(out)]) == 0
    result = json.loads(out.read_text())["random"]
    names = [f"q4.{tracker.variant_name(v)}" for v in tracker.VARIANTS]
    assert all(result["times_ms"][name][0] > 0 for name in names + ["dpt_features"])
    assert result["distance"]["q4.fp32/full"]["max_px"] == 0  # the reference itself
    assert result["distance"]["q4.fp32/local"]["max_px"] < 1e-2  # same values, other order
    assert result["distance"]["q4.bf16/full"]["max_px"] > 0  # bf16 really ran
    assert "q4.tf32/local" in capsys.readouterr().out
