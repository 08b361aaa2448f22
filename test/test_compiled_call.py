"""torch.compile per input shape with a policy for shapes not compiled yet (model/compiled_call).

The graphs are built by a counting backend (dynamo traces for real, no kernels are generated),
so the tests see exactly when a compile happens and in which thread.
"""
import threading

import pytest
import torch
from torch import nn

from vggt_ros.model.compiled_call import CompiledPerShape, private_copy, signature


class CountingBackend:
    """A torch.compile backend that records each compile (and its thread) and runs the graph."""

    def __init__(self) -> None:
        self.threads: list[str] = []

    def __call__(self, graph_module, example_inputs):
        self.threads.append(threading.current_thread().name)
        return graph_module.forward


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def scale_and_shift(x, y):
    return x * 2 + y.sum()


def test_signature_follows_what_a_fixed_shape_graph_depends_on():
    x = torch.zeros(4, 6)
    assert signature(x) == signature(torch.ones(4, 6))
    assert signature(x) != signature(torch.zeros(4, 7))
    assert signature(x) != signature(torch.zeros(4, 6, dtype=torch.float64))
    assert signature(x[:, :3]) != signature(torch.zeros(4, 3))  # same shape, other strides
    assert signature(nn.Linear(3, 4)) == signature(nn.Linear(3, 4))  # structure, not identity
    assert signature(nn.Linear(3, 4)) != signature(nn.Linear(3, 5))
    assert signature((1, 2)) != signature((1, 3)) and signature(1) != signature(True)


def test_compile_policy_compiles_each_new_shape_once_in_the_caller():
    backend = CountingBackend()
    call = CompiledPerShape(scale_and_shift, "test fn", True, backend)
    for n in (3, 3, 5, 3):
        x = torch.arange(float(n))
        assert torch.equal(call(x, x), scale_and_shift(x, x))
    assert len(backend.threads) == 2 and set(backend.threads) == {"MainThread"}
    stats = call.stats()
    assert stats["compiled_shapes"] == 2 and stats["eager_calls"] == 0


def test_background_policy_answers_eagerly_at_once_and_compiles_on_a_thread():
    backend, lines = CountingBackend(), []
    call = CompiledPerShape(scale_and_shift, "test fn", True, backend, log=lines.append)
    call(torch.ones(3), torch.ones(3))  # warmed up
    call.policy = "background"
    x = torch.arange(6.0)[::2]  # a strided view: the background copy must keep its strides
    assert torch.equal(call(x, x), scale_and_shift(x, x))
    assert any("not warmed up" in line and "background" in line for line in lines), lines
    assert call.wait_for_background(timeout=60)
    assert backend.threads[0] == "MainThread" and backend.threads[1].startswith("vggt_compile")
    assert call.stats()["compiled_shapes"] == 2 and call.stats()["eager_calls"] == 1
    assert torch.equal(call(x, x), scale_and_shift(x, x))  # now compiled: no eager call, ...
    assert call.stats()["eager_calls"] == 1 and len(backend.threads) == 2  # ... no recompile
    assert any("compiled a new input shape in the background" in line for line in lines)
    call.close()


def test_eager_policy_never_compiles_a_new_shape_and_says_so_once():
    backend, lines = CountingBackend(), []
    call = CompiledPerShape(scale_and_shift, "test fn", True, backend, log=lines.append)
    call.policy = "eager"
    for _ in range(3):
        assert torch.equal(call(torch.ones(4), torch.ones(4)), torch.full((4,), 6.0))
    assert backend.threads == [] and call.stats()["eager_calls"] == 3
    assert len([line for line in lines if "unseen_shapes=eager" in line]) == 1


def test_a_failing_compiler_leaves_the_function_eager_with_a_reason():
    def broken(graph_module, example_inputs):
        raise RuntimeError("no compiler here")

    lines = []
    call = CompiledPerShape(scale_and_shift, "test fn", True, broken, log=lines.append)
    assert torch.equal(call(torch.ones(2), torch.ones(2)), torch.full((2,), 4.0))
    assert not call.enabled and "running it eagerly from now on" in lines[0]


def test_out_of_memory_in_a_compiled_call_is_not_a_compile_failure():
    call = CompiledPerShape(lambda x: x + 1, "test fn", True, CountingBackend())

    def out_of_memory(*args):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    call.compiled = out_of_memory
    with pytest.raises(torch.cuda.OutOfMemoryError):
        call(torch.ones(1))
    assert call.compiled is out_of_memory  # still compiled for the next, smaller input


def test_policy_names_are_checked():
    with pytest.raises(ValueError, match="unseen-shape policy"):
        CompiledPerShape(scale_and_shift, "test fn", False).policy = "later"


def test_signature_and_private_copy_keep_aliasing():
    x, y = torch.ones(3), torch.ones(3)
    assert signature((x, x)) != signature((x, y))
    a, b = private_copy((x, [x, y[::2]]))[1]
    assert a is not x and torch.equal(a, x) and b.stride() == (2,)
