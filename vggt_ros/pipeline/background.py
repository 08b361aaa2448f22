"""Run one function beside the calling thread and collect its result later.

Why: on a GPU the pipeline's window is mostly the device computing while the host waits (the
forward pass, the pose solver's track request), and mostly the host computing while the device
idles (chaining, map fusion). The host work that does not need the device's answer can run
meanwhile: NumPy and torch release the GIL inside their heavy loops, so a second thread really
overlaps them. A plain daemon thread per job (not a pool) keeps nothing alive between windows
and cannot keep the interpreter from exiting.
"""
from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import Callable, TypeVar

__all__ = ["run_beside"]

T = TypeVar("T")


def run_beside(name: str, function: Callable[..., T], *args: object) -> "Future[T]":
    """Start ``function(*args)`` on a new thread named ``name``; the future holds its result
    or the exception it raised (re-raised by ``result()`` in the caller's thread)."""
    future: Future[T] = Future()

    def job() -> None:
        future.set_running_or_notify_cancel()
        try:
            future.set_result(function(*args))
        except BaseException as err:  # noqa: BLE001 - handed to the caller through the future
            future.set_exception(err)

    threading.Thread(target=job, name=name, daemon=True).start()
    return future
