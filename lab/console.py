"""What a run prints while it works: progress bars only where someone watches them, and a library's alarming warning
replaced by one sentence that says what runs.

`interactive()` is the one answer to "is someone watching this run?" (a terminal, or a person in JupyterLab). A
chapter executed by the book runner (`lab.notebooks.run_chapter`, papermill) is read later as a page, where a bar is
frozen at whatever it showed last ("67% 2/3" reads as training stopped early), so the runner starts its kernels with
`BATCH_ENV`: no bars of ours (`LAB_PROGRESS=0`) and none of Hugging Face's ("Loading weights", "Writing model
shards"). Training then prints one line per epoch instead (`lab.train.fit`).

`quiet_bitsandbytes()` drops bitsandbytes' import-time warning that its fused AVX512-BF16 CPU kernel could not be
downloaded from kernels-community: the book never uses that kernel (`lab.distill.adapters` switches the repacking it
needs off), so the warning reads as a failure of QLoRA where nothing failed. `bitsandbytes_path(device)` says in words
which path runs instead.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys

__all__ = ["PROGRESS_ENV", "BATCH_ENV", "interactive", "batch_environment", "progress_bar", "BNB_CPU_LOGGER",
           "BNB_KERNEL_WARNING", "quiet_bitsandbytes", "bitsandbytes_path"]

PROGRESS_ENV = "LAB_PROGRESS"  # "0": never draw progress bars, "1": always; unset: draw when someone watches
BATCH_ENV = {PROGRESS_ENV: "0", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}  # the book runner's kernels (papermill)


def interactive() -> bool:
    """True when someone watches this process's output as it runs: `$LAB_PROGRESS` when set ("0" / "1"), else a
    Jupyter kernel (a person in JupyterLab) or a terminal on stderr."""
    chosen = os.environ.get(PROGRESS_ENV)
    if chosen in ("0", "1"):
        return chosen == "1"
    return "ipykernel" in sys.modules or sys.stderr.isatty()


@contextlib.contextmanager
def batch_environment():
    """Set `BATCH_ENV` in `os.environ` for the duration (a kernel started inside inherits it), then restore it."""
    saved = {k: os.environ.get(k) for k in BATCH_ENV}
    os.environ.update(BATCH_ENV)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def progress_bar(iterable=None, enabled: bool = True, **tqdm_kwargs):
    """A tqdm bar over `iterable`, drawn only when `enabled` and `interactive()` (else a silent pass-through with the
    same interface: `set_postfix`, `update` and `close` do nothing)."""
    from tqdm.auto import tqdm

    return tqdm(iterable, disable=not (enabled and interactive()), **tqdm_kwargs)


class _DropMessage(logging.Filter):
    """A logging filter dropping records whose message starts with `prefix`."""

    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefix)


BNB_CPU_LOGGER = "bitsandbytes.backends.cpu.ops"  # where bitsandbytes 0.50 logs the kernels-community warning
BNB_KERNEL_WARNING = "Failed to load CPU gemm_4bit_forward from kernels-community"


def quiet_bitsandbytes() -> None:
    """Drop bitsandbytes' "Failed to load CPU gemm_4bit_forward from kernels-community" warning (module docstring).
    Call it before bitsandbytes is first imported (the warning is logged at import); calling it again adds nothing."""
    logger = logging.getLogger(BNB_CPU_LOGGER)
    if not any(isinstance(f, _DropMessage) and f.prefix == BNB_KERNEL_WARNING for f in logger.filters):
        logger.addFilter(_DropMessage(BNB_KERNEL_WARNING))


def bitsandbytes_path(device) -> str:
    """One sentence naming the kernel path bitsandbytes' NF4 layers take on `device` (a torch device or its name)."""
    if str(device).startswith("cuda"):
        return "NF4 layers run bitsandbytes' CUDA 4-bit kernels."
    return ("NF4 layers run bitsandbytes' CPU path: each weight is dequantised from its 4-bit codes to float32, then "
            "multiplied in float32 (the fused AVX512-BF16 kernel is switched off on every CPU, so every machine "
            "computes the same numbers; lab.distill.adapters).")
