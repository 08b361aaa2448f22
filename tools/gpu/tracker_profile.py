"""Where the track request's GPU time goes (issue 12): VGGT-1B random weights, S=8, 518x392,
the window's tokens re-used; fp32 / tf32 tracker at 64 / 256 queries: wall time with and
without the CUDA graph, then a torch.profiler table of the eager request's kernels (3 requests;
its "Self CUDA time total" line / 3 is the GPU time of one request). Budget: ~1 min.

    PYTHONPATH=$PWD python3 tools/gpu/tracker_profile.py [--device cpu --config tiny]
"""
import argparse
import dataclasses
import json
import os
import statistics

import torch
from torch.profiler import ProfilerActivity, profile

from vggt_ros.bench.models import (build_config, random_inputs, random_model,
                                    random_query_points)
from vggt_ros.bench.timing import wall_samples_ms
from vggt_ros.model.fast import FastOptions, FastVGGT

FRAMES, HEIGHT, WIDTH = 8, 392, 518
PROFILED_REQUESTS = 3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--config", default="1b")
    args = parser.parse_args()
    device = torch.device(args.device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    fast = FastVGGT(random_model(build_config(args.config), 0, device), FastOptions())
    head = fast.model.track_head
    images, _ = random_inputs(FRAMES, HEIGHT, WIDTH, 0, device, seed=3)
    grid = fast.model.aggregator.patch_embed.patch_grid(HEIGHT, WIDTH)
    walls = {}
    with torch.inference_mode():
        tokens = fast.aggregate(fast.patch_tokens(images, None), *grid)
        for precision in ("fp32", "tf32"):
            for queries in (64, 256):
                points = random_query_points(queries, WIDTH, HEIGHT, device, queries)
                request = lambda: fast.track(tokens, images, points)  # noqa: E731
                for graphed in (True, False):
                    fast.options = dataclasses.replace(fast.options, tracker_precision=precision,
                                                       cuda_graph_tracker=graphed)
                    key = f"{precision}.q{queries}.graph{int(graphed)}"
                    walls[key] = statistics.median(wall_samples_ms(request, 15, sync, 3))
                    print(key, "wall median ms", round(walls[key], 2), flush=True)
                # the last options are eager launches: the profiler sees every kernel
                with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                    for _ in range(PROFILED_REQUESTS):
                        request()
                    sync()
                kernels = [e for e in prof.events()
                           if e.device_type == torch.autograd.DeviceType.CUDA]
                gpu_ms = sum(e.device_time_total for e in kernels) / PROFILED_REQUESTS / 1e3
                print(f"== {precision} q{queries}: {len(kernels) / PROFILED_REQUESTS:.0f} "
                      f"kernels, {gpu_ms:.2f} ms GPU time per request", flush=True)
                print(prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=22,
                                                max_name_column_width=70), flush=True)
    out = os.path.join(os.environ.get("OUT", "/tmp"), "trackprof.json")
    with open(out, "w") as file:
        json.dump(walls, file, indent=1)


if __name__ == "__main__":
    main()
