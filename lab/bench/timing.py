"""The benchmarks' one timer: wall seconds of a call, synchronised on CUDA so queued kernels are counted."""
from __future__ import annotations

import time
from typing import Callable

import torch

__all__ = ["sync", "seconds"]


def sync(device: torch.device) -> None:
    """Wait for queued CUDA work on `device` (nothing to wait for on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds(fn: Callable[[], object], device: torch.device) -> float:
    """Wall seconds of `fn()`, with `device` synchronised before and after (`time.perf_counter`)."""
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0
