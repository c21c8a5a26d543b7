"""What a run prints (lab.console): bars only where someone watches, the book runner's kernels told nobody does, and
bitsandbytes' kernels-community warning dropped while its other messages pass."""
from __future__ import annotations

import io
import logging
import os

from lab import console


def test_interactive_follows_the_environment_first(monkeypatch):
    monkeypatch.setenv(console.PROGRESS_ENV, "0")
    assert console.interactive() is False
    monkeypatch.setenv(console.PROGRESS_ENV, "1")
    assert console.interactive() is True


def test_a_bar_draws_only_when_someone_watches(monkeypatch):
    out = io.StringIO()
    monkeypatch.setenv(console.PROGRESS_ENV, "0")
    assert list(console.progress_bar(range(3), desc="epoch 1", file=out)) == [0, 1, 2]
    assert out.getvalue() == ""  # nothing drawn under the book runner
    monkeypatch.setenv(console.PROGRESS_ENV, "1")
    for _ in console.progress_bar(range(3), desc="epoch 1", file=out, enabled=False):
        pass
    assert out.getvalue() == ""  # the caller's progress=False wins
    for _ in console.progress_bar(range(3), desc="epoch 1", file=out):
        pass
    assert "epoch 1" in out.getvalue() and "3/3" in out.getvalue()


def test_batch_environment_sets_and_restores(monkeypatch):
    monkeypatch.delenv(console.PROGRESS_ENV, raising=False)
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "0")
    with console.batch_environment():
        assert os.environ[console.PROGRESS_ENV] == "0" and os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1"
    assert console.PROGRESS_ENV not in os.environ and os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "0"


def test_bitsandbytes_kernel_warning_dropped_other_messages_kept(caplog):
    console.quiet_bitsandbytes()
    console.quiet_bitsandbytes()  # twice adds one filter
    logger = logging.getLogger(console.BNB_CPU_LOGGER)
    assert sum(isinstance(f, console._DropMessage) for f in logger.filters) == 1
    with caplog.at_level(logging.WARNING, logger=console.BNB_CPU_LOGGER):
        logger.warning("Failed to load CPU gemm_4bit_forward from kernels-community: %s. Please make sure", "x")
        logger.warning("another warning")
    assert [r.getMessage() for r in caplog.records] == ["another warning"]
    assert "dequantised" in console.bitsandbytes_path("cpu") and "CUDA" in console.bitsandbytes_path("cuda:0")
