"""The persistent torch.compile cache (inference/compile_cache.py): where it is, what keys it,
and that a second process really loads the graphs the first one compiled."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vggt_ros.inference.compile_cache import (cache_key, code_fingerprint, compile_cache_dir,
                                              use_compile_cache)

REPO = Path(__file__).resolve().parents[1]


def test_default_directory_is_under_the_users_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert compile_cache_dir("") == tmp_path / "vggt_ros" / "torch_compile" / cache_key()
    assert compile_cache_dir("~/elsewhere") == Path.home() / "elsewhere" / cache_key()


def test_key_names_the_torch_build_and_changes_with_the_model_code(tmp_path):
    assert cache_key().startswith(f"torch{torch.__version__.split('+')[0]}")
    (tmp_path / "block.py").write_text("def f(x):\n    return x + 1\n")
    before = code_fingerprint(tmp_path)
    assert code_fingerprint(tmp_path) == before
    (tmp_path / "block.py").write_text("def f(x):\n    return x + 2\n")
    assert code_fingerprint(tmp_path) != before


def test_use_points_inductor_and_triton_into_the_keyed_directory(tmp_path):
    environ = {}
    directory = use_compile_cache(str(tmp_path), environ)
    assert directory.is_dir() and directory.parent == tmp_path
    assert environ == {"TORCHINDUCTOR_CACHE_DIR": str(directory),
                       "TRITON_CACHE_DIR": str(directory / "triton")}


PROBE = """
import json, sys
from vggt_ros.inference.compile_cache import use_compile_cache
use_compile_cache(sys.argv[1])
import torch
from torch._dynamo.utils import counters
torch.compile(lambda x: torch.relu(x) * 2 + 1, dynamic=False)(torch.randn(8, 8))
print(json.dumps(dict(counters["inductor"])))
"""


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_second_process_loads_the_compiled_graph_from_the_cache(tmp_path):
    """Inductor on CPU (a C++ compiler builds the kernel): the first process misses and
    fills the cache, the second hits it."""
    def run():
        out = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path)], capture_output=True,
                             text=True, timeout=240, env=dict(os.environ, PYTHONPATH=str(REPO)))
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout.strip().splitlines()[-1])

    first, second = run(), run()
    assert first.get("fxgraph_cache_miss", 0) >= 1 and first.get("fxgraph_cache_hit", 0) == 0
    assert second.get("fxgraph_cache_hit", 0) >= 1 and second.get("fxgraph_cache_miss", 0) == 0
