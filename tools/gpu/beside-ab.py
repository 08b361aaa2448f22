"""Issue 17: the pipeline with its stages beside the worker (pipeline/background.py) against the
same pipeline with every stage synchronous (run_beside replaced by a call in place), one process,
one predictor (VGGT-1B random weights, fast path compiled), 640x480, window 8 / overlap 2,
pose_source refined, 4 warm-up + 12 timed windows per run; each variant twice, interleaved.
"beside+switch0.5ms" also lowers Python's thread switch interval from 5 to 0.5 ms (does the
GIL hand-over delay the network's launches?). Usage: python3 tools/gpu/beside-ab.py OUT.json"""
import sys, json, time
from concurrent.futures import Future
import torch
from vggt_ros.bench import pipeline_e2e as e2e
from vggt_ros.pipeline import pipeline as pl
from vggt_ros.pipeline.pipeline import Pipeline, PipelineConfig
from vggt_ros.synth import make_sequence
import argparse

beside = pl.run_beside
def synchronous(name, fn, *args):
    f = Future()
    try: f.set_result(fn(*args))
    except BaseException as err: f.set_exception(err)
    return f

args = argparse.Namespace(config="1b", checkpoint="", device="cuda", no_compile=False)
predictor = e2e.build(args)
count = 8 + 6 * (4 + 12 - 1)
seq = make_sequence(count, 640, 480, seed=1)
frames = [seq.frame(i) for i in range(count)]
out = {}
for name, runner, interval in [("sync", synchronous, 0.005), ("beside", beside, 0.005),
                               ("beside+switch0.5ms", beside, 0.0005), ("sync", synchronous, 0.005),
                               ("beside", beside, 0.005), ("beside+switch0.5ms", beside, 0.0005)]:
    pl.run_beside = runner
    sys.setswitchinterval(interval)
    config = PipelineConfig(window_size=8, overlap=2, keyframe_min_interval=0.0, pose_source="refined")
    rows = e2e.window_rows(Pipeline(predictor, config), frames)[4:]
    summary = e2e.summarise(rows)
    print(f"\n== {name}", flush=True)
    print(e2e.table(summary), flush=True)
    out.setdefault(name, []).append(summary)
json.dump(out, open(sys.argv[1], "w"), indent=1)
