"""A function under ``torch.compile`` that never stalls a live caller on a new input shape.

Why: with fixed shapes, torch.compile builds one graph per input shape on the first call of
that shape, and on an H200 that first call of a VGGT window shape costs 14-16 s. A live node
warms up every shape it expects at start-up, but a shape nobody expected (a new image size, a
track request over partly evicted frames) must not freeze the camera processing for 15 s with
no word. So :class:`CompiledPerShape` knows which input signatures are compiled, and what an
unseen signature does is a policy:

* ``compile`` (the default, and always during warm-up): compile it now, in the caller. Right for
  warm-up, benchmarks and offline mapping, where throughput matters and nobody waits.
* ``background``: run it eagerly now (one log line) and compile it on a background thread;
  later calls of that signature use the compiled graph once it is built.
* ``eager``: run it eagerly, always (one log line); never compile a new shape.

The signature is a conservative stand-in for dynamo's guards: shapes, strides, dtypes and
devices of every tensor argument, the structure of every module argument, the values of plain
arguments, and the grad/inference mode. A signature finer than the guards only costs an eager
call; it never hides a compile.
"""
from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Hashable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Optional, Union

import torch
from torch import Tensor, nn
from torch.utils._pytree import tree_map_only

__all__ = ["UNSEEN_SHAPE_POLICIES", "CompiledPerShape", "private_copy", "signature"]

UNSEEN_SHAPE_POLICIES = ("compile", "background", "eager")
_LOG = logging.getLogger(__name__)
_MODULE_FINGERPRINTS: "weakref.WeakKeyDictionary[nn.Module, tuple]" = weakref.WeakKeyDictionary()


def _module_fingerprint(module: nn.Module) -> tuple:
    """Class and parameter/buffer layout of a module (cached: modules do not change shape)."""
    found = _MODULE_FINGERPRINTS.get(module)
    if found is None:
        tensors = list(module.named_parameters()) + list(module.named_buffers())
        found = (type(module).__qualname__, module.training,
                 tuple((name, tuple(t.shape), t.dtype, t.device.type) for name, t in tensors))
        _MODULE_FINGERPRINTS[module] = found
    return found


def signature(value: Any, _tensors: Optional[dict[int, int]] = None) -> Hashable:
    """What a fixed-shape graph of ``value`` (an argument, or a tuple of them) depends on. A
    tensor met twice is recorded as an alias of the first: dynamo guards on aliasing too."""
    tensors = {} if _tensors is None else _tensors
    if isinstance(value, Tensor):
        if id(value) in tensors:
            return ("alias", tensors[id(value)])
        tensors[id(value)] = len(tensors)
        return ("tensor", tuple(value.shape), value.stride(), value.dtype, str(value.device),
                value.requires_grad)
    if isinstance(value, nn.Module):
        return ("module", _module_fingerprint(value))
    if isinstance(value, (list, tuple)):
        return (type(value).__qualname__, tuple(signature(v, tensors) for v in value))
    if value is None or isinstance(value, (bool, int, float, str, torch.dtype, torch.device)):
        return (type(value).__qualname__, value)
    return (type(value).__qualname__,)


def private_copy(args: Any) -> Any:
    """Copies of the tensors in ``args`` (nested), for a compile on another thread: same
    strides (a plain clone of a view can change them) and the same aliasing (a tensor passed
    twice stays one tensor), so the graph built is the one the caller's call needs."""
    copies: dict[int, Tensor] = {}

    def copy(t: Tensor) -> Tensor:
        if id(t) not in copies:
            out = torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device=t.device)
            copies[id(t)] = out.copy_(t.detach())
        return copies[id(t)]

    return tree_map_only(Tensor, copy, args)


class CompiledPerShape:
    """``fn`` under ``torch.compile(dynamic=False)``, one graph per input signature, with a
    policy for signatures not compiled yet (module docstring). ``enabled`` False: always eager.
    A compile error warns once and leaves ``fn`` eager from then on (correct before fast).
    ``log`` receives the one-line reports (unseen shape, background compile done or failed).
    """

    def __init__(self, fn: Callable, what: str, enabled: bool,
                 backend: Union[str, Callable] = "inductor",
                 log: Optional[Callable[[str], None]] = None) -> None:
        self.fn = fn
        self.what = what
        self.compiled = torch.compile(fn, dynamic=False, backend=backend) if enabled else None
        self.log = log or _LOG.warning
        self._policy = "compile"
        self._lock = threading.Lock()
        self._ready: set[Hashable] = set()
        self._pending: set[Hashable] = set()
        self._reported: set[Hashable] = set()  # unseen signatures already logged
        self._background: Optional[ThreadPoolExecutor] = None
        self.compile_s = 0.0  # seconds spent compiling (in the caller or in the background)
        self.eager_calls = 0  # calls of an uncompiled signature run eagerly by the policy

    # ----------------------------------------------------------------------------- policy
    @property
    def policy(self) -> str:
        return self._policy

    @policy.setter
    def policy(self, value: str) -> None:
        if value not in UNSEEN_SHAPE_POLICIES:
            raise ValueError(f"unseen-shape policy must be one of {UNSEEN_SHAPE_POLICIES}, "
                             f"got {value!r}")
        self._policy = value

    @property
    def enabled(self) -> bool:
        return self.compiled is not None

    def stats(self) -> dict[str, float]:
        with self._lock:
            return {"compiled_shapes": len(self._ready), "compiling": len(self._pending),
                    "eager_calls": self.eager_calls, "compile_s": self.compile_s}

    def wait_for_background(self, timeout: Optional[float] = None) -> bool:
        """Block until no background compile is pending (tests, benchmarks); False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                if not self._pending:
                    return True
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(0.01)

    def disable(self, why: str) -> None:
        """Run ``fn`` eagerly from now on (no-op when already eager); logs ``why``."""
        if self.compiled is not None:
            self.compiled = None
            self.log(f"{self.what}: compiled code disabled, running eagerly from now on: {why}")

    def close(self) -> None:
        """Stop the background compiler (waits for the compile in progress, drops the queue)."""
        if self._background is not None:
            self._background.shutdown(wait=True, cancel_futures=True)
            self._background = None
        with self._lock:
            self._pending.clear()

    # ----------------------------------------------------------------------------- calls
    def __call__(self, *args: Any) -> Any:
        if self.compiled is None:
            return self.fn(*args)
        key = (signature(args), torch.is_grad_enabled(), torch.is_inference_mode_enabled())
        with self._lock:
            ready = key in self._ready
            pending = key in self._pending
        if ready or self._policy == "compile" and not pending:
            return self._compiled_call(key, args)
        self._run_eagerly_for_now(key, args, pending)
        return self.fn(*args)

    def _compiled_call(self, key: Hashable, args: tuple) -> Any:
        with self._lock:
            new = key not in self._ready
            if new:
                self._raise_recompile_limit(len(self._ready) + len(self._pending) + 1)
        start = time.perf_counter()
        try:
            out = self.compiled(*args)
        except torch.cuda.OutOfMemoryError:
            raise  # the input is too big, not the compiler broken: the caller handles it
        except Exception as err:  # inductor/triton errors have many types
            self.log(f"torch.compile of the {self.what} failed ({type(err).__name__}: {err}); "
                     f"running it eagerly from now on")
            self.compiled = None
            return self.fn(*args)
        if new:
            with self._lock:
                self._ready.add(key)
                self.compile_s += time.perf_counter() - start
        return out

    def _run_eagerly_for_now(self, key: Hashable, args: tuple, pending: bool) -> None:
        """Count the eager call; the first time, say why; under ``background`` queue the
        compile of this signature."""
        with self._lock:
            self.eager_calls += 1
            first = key not in self._reported
            self._reported.add(key)
            queue = self._policy == "background" and not pending
            if queue:
                self._pending.add(key)
        if first:
            shapes = [tuple(a.shape) for a in args if isinstance(a, Tensor)]
            plan = ("compiling it in the background; calls of this shape use it when done"
                    if queue else "it stays eager (unseen_shapes=eager)")
            self.log(f"{self.what}: input shape {shapes} was not warmed up: running it eagerly "
                     f"now, {plan}")
        if queue:
            copies = private_copy(args)
            modes = (torch.is_grad_enabled(), torch.is_inference_mode_enabled())
            if self._background is None:
                self._background = ThreadPoolExecutor(1, thread_name_prefix="vggt_compile")
            self._background.submit(self._compile_in_background, key, copies, modes)

    def _compile_in_background(self, key: Hashable, args: tuple,
                               modes: tuple[bool, bool]) -> None:
        grad, inference = modes
        start = time.perf_counter()
        try:
            with torch.inference_mode(inference), torch.set_grad_enabled(grad):
                with self._lock:
                    self._raise_recompile_limit(len(self._ready) + len(self._pending))
                if self.compiled is not None:
                    self.compiled(*args)
        except Exception as err:  # noqa: BLE001 - a failed background compile leaves it eager
            with self._lock:
                self._pending.discard(key)
            self.log(f"background compile of the {self.what} failed ({type(err).__name__}: "
                     f"{err}); that shape stays eager")
            return
        seconds = time.perf_counter() - start
        with self._lock:
            self._pending.discard(key)
            self._ready.add(key)
            self.compile_s += seconds
        self.log(f"{self.what}: compiled a new input shape in the background in {seconds:.1f} s")

    @staticmethod
    def _raise_recompile_limit(graphs: int) -> None:
        """Each signature is one dynamo cache entry of ``fn``'s code; the limit (default 8)
        would silently turn graph number 9 eager, so it follows the deliberate compiles."""
        config = torch._dynamo.config
        name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
        setattr(config, name, max(getattr(config, name), graphs + 8, 64))
        if hasattr(config, "accumulated_recompile_limit"):
            config.accumulated_recompile_limit = max(config.accumulated_recompile_limit,
                                                     4 * (graphs + 8))
