"""Where torch.compile keeps its artefacts between runs, so a second start does not recompile.

torch's inductor caches compiled graphs (FX graph and AOTAutograd caches) and Triton kernels on
disk, under ``TORCHINDUCTOR_CACHE_DIR``; by default that is ``/tmp/torchinductor_<user>``,
which a reboot wipes. A robot restarts its nodes often, so the node points it at a persistent
directory under the user's cache dir instead.

Stale artefacts: torch's own cache keys already include the torch version, the traced graph and
the compiler configuration. We add one more level: a sub-directory per torch build (version,
CUDA, Python) and per fingerprint of the model code that gets traced (``vggt_ros/model``), so
an upgrade or a code change starts from an empty directory instead of relying on every key
being complete, and an old directory can simply be deleted.
"""
from __future__ import annotations

import hashlib
import os
import platform
from pathlib import Path
from typing import Optional

import torch

__all__ = ["DEFAULT_SUBDIR", "cache_key", "compile_cache_dir", "use_compile_cache"]

DEFAULT_SUBDIR = Path("vggt_ros") / "torch_compile"
_MODEL_CODE = Path(__file__).resolve().parents[1] / "model"


def _user_cache_home() -> Path:
    """``$XDG_CACHE_HOME`` or ``~/.cache`` (the freedesktop rule; also what pip and torch hub
    use on Linux)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")


def code_fingerprint(folder: Path = _MODEL_CODE) -> str:
    """Short hash of the Python sources under ``folder`` (the modules torch.compile traces)."""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*.py")):
        digest.update(path.relative_to(folder).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def cache_key() -> str:
    """torch build + Python + model code, e.g. ``torch2.13.0+cu128-py3.11-code1a2b3c4d5e6f``."""
    cuda = f"+cu{torch.version.cuda.replace('.', '')}" if torch.version.cuda else ""
    version = torch.__version__.split("+")[0]
    python = ".".join(platform.python_version_tuple()[:2])
    return f"torch{version}{cuda}-py{python}-code{code_fingerprint()}"


def compile_cache_dir(base: str = "") -> Path:
    """The cache directory for this torch build and model code under ``base`` (empty: the
    user's cache dir, ``~/.cache/vggt_ros/torch_compile``)."""
    root = Path(base).expanduser() if base else _user_cache_home() / DEFAULT_SUBDIR
    return root / cache_key()


def use_compile_cache(base: str = "", environ: Optional[dict] = None) -> Path:
    """Point torch.compile's on-disk caches (inductor graphs, Triton kernels) at
    :func:`compile_cache_dir` and create it. Call before the first compile of the process: torch
    reads the variables when it compiles. Returns the directory."""
    environ = os.environ if environ is None else environ
    directory = compile_cache_dir(base)
    directory.mkdir(parents=True, exist_ok=True)
    environ["TORCHINDUCTOR_CACHE_DIR"] = str(directory)
    environ["TRITON_CACHE_DIR"] = str(directory / "triton")
    return directory
