"""Where the track request's GPU time goes (issue 12): VGGT-1B random weights, S=8, 518x392,
the window's tokens re-used; fp32 / tf32 tracker at 64 / 256 queries: wall time with and
without the CUDA graph, then a torch.profiler table of the eager request's kernels (3 requests;
its "Self CUDA time total" line / 3 is the GPU time of one request). Budget: ~1 min."""
import dataclasses, json, os, statistics, time
import torch
from torch.profiler import profile, ProfilerActivity
from vggt_ros.bench.models import build_config, random_inputs, random_model
from vggt_ros.model.fast import FastOptions, FastVGGT
dev = torch.device("cuda")
fast = FastVGGT(random_model(build_config("1b"), 0, dev), FastOptions())
head = fast.model.track_head
H, W = 392, 518
images, _ = random_inputs(8, H, W, 0, dev, seed=3)
grid = fast.model.aggregator.patch_embed.patch_grid(H, W)
sync = torch.cuda.synchronize
out = {}
with torch.inference_mode():
    tokens = fast.aggregate(fast.patch_tokens(images, None), *grid)
    fm = fast.dpt(head.feature_extractor, tokens, images)
    print("fmaps", tuple(fm.shape), fm.dtype, "iters", head.iters, flush=True)
    for prec in ("fp32", "tf32"):
        for q in (64, 256):
            g = torch.Generator().manual_seed(q)
            pts = (torch.rand(1, q, 2, generator=g) * torch.tensor([W - 1.0, H - 1.0])).to(dev)
            for graphs in (True, False):
                fast.options = dataclasses.replace(fast.options, tracker_precision=prec,
                                                   cuda_graph_tracker=graphs)
                for _ in range(3):
                    fast.track(tokens, images, pts)
                sync(); walls = []
                for _ in range(15):
                    t = time.perf_counter(); fast.track(tokens, images, pts); sync()
                    walls.append(1e3 * (time.perf_counter() - t))
                key = f"{prec}.q{q}.graph{int(graphs)}"
                out[key] = statistics.median(walls)
                print(key, "wall median ms", round(out[key], 2), flush=True)
            # profile eager (kernels visible)
            with profile(activities=[ProfilerActivity.CUDA, ProfilerActivity.CPU]) as prof:
                for _ in range(3):
                    fast.track(tokens, images, pts)
                sync()
            ka = prof.key_averages()
            kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
            total = sum(e.device_time_total for e in kernels) / 3 / 1e3
            print(f"== {prec} q{q}: {len(kernels) / 3:.0f} kernels, {total:.2f} ms GPU time per "
                  f"request", flush=True)
            print(ka.table(sort_by="self_cuda_time_total", row_limit=22, max_name_column_width=70), flush=True)
json.dump(out, open(os.path.join(os.environ.get("OUT", "/tmp"), "trackprof.json"), "w"), indent=1)
