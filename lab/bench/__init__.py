"""Benchmarks: measured speed, never simulated. `python -m lab bench compact|fisher --profile P` runs `main`.

- `compact` (chapters 04-05): teacher vs compact students, timed in the same run (`compare_speed`), peak memory.
- `fisher` (chapter 03): users per second of the exact Fisher estimators against the per-user loop, with agreement.
- `train` (issue 16): training throughput of the teacher's CE step and of a distillation step (`lab.bench.train`).
- `depth` (chapter 02, issue 12): the depth sweep over seeds (`python -m lab bench depth`).
- `arch` (chapter 02, issue 15): one model per decoder architecture at one depth, H4's input.
- `data` (issue 16): the data pipeline (generate, read, pre-process, evaluate) at multiples of the profile's size.
- `timing`: the one timer they use (wall seconds of a call, synchronised on CUDA).

`bench` serves the chapters: it imports the science modules (models, selection, fisher), never the reverse.
"""
from . import compact, fisher
from .compact import (BenchConfig, activation_peak_mb, compact_students, compare_speed, random_histories,
                      summarize_times, time_components, time_forward, weights_mb)
from .fisher import bench_inputs, benchmark
from .timing import seconds, sync

BENCHMARKS = ("fisher", "compact", "train")

__all__ = [
    "BENCHMARKS", "main", "BenchConfig", "activation_peak_mb", "compact_students", "compare_speed",
    "random_histories", "summarize_times", "time_components", "time_forward", "weights_mb", "bench_inputs",
    "benchmark", "seconds", "sync",
]


def main(what: str, profile: str = "default", seed: int = 0, artefacts=None, against: dict | None = None,
         variants: list[str] | None = None) -> dict:
    """`python -m lab bench fisher|compact|train`: run a benchmark, print a table, return a JSON-able dict."""
    if what == "fisher":
        return fisher.benchmark(profile, seed, artefacts)
    if what == "compact":
        return compact.run(profile, seed, artefacts)
    if what == "train":
        from . import train

        return train.run(profile, seed, against=against, variants=variants)
    raise ValueError(f"unknown benchmark {what!r}; choose one of {BENCHMARKS}")
