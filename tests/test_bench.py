"""Speed and memory measurement of real models, and the Fisher benchmark (lab.bench)."""
from __future__ import annotations

import math
import time

import pytest
import torch

from lab import bench
from lab import fisher as lf
from lab.profiles import get_config
from lab.models import build_model, build_student




@pytest.fixture(scope="module")
def teacher():
    torch.manual_seed(0)
    return build_model(get_config("smoke").model, 50, 8).eval()  # 8 layers, hidden 32


def _slowed(model, seconds_per_call: float):
    """`model` with a planted cost: every scoring pass sleeps `seconds_per_call` first (its `embed` is wrapped)."""
    embed = model.embed

    def slow(x):
        time.sleep(seconds_per_call)
        return embed(x)

    model.embed = slow
    return model


def test_summarize_times_against_known_quantiles():
    """Latencies 1..11 ms in a shuffled order: median 6 ms, p10 2 ms, p90 10 ms (numpy's linear interpolation lands
    on the 2nd and 10th values exactly), mean 6 ms; throughput = batch / median."""
    t = [i / 1e3 for i in (7, 3, 11, 1, 9, 5, 2, 10, 4, 8, 6)]
    r = bench.summarize_times(t, 4)
    assert (r["batch"], r["repeats"]) == (4, 11)
    assert (r["median_ms"], r["p10_ms"], r["p90_ms"]) == pytest.approx((6.0, 2.0, 10.0))
    assert r["throughput"] == pytest.approx(4 / 0.006)


def test_time_forward_and_components_measure_a_planted_cost(teacher):
    """A pass that sleeps 30 ms cannot be timed below 30 ms; the components split it: the sleep is in the embedding
    (`embed_ms` >= 30) and in the whole call, not in the backbone or the scoring."""
    x = bench.random_histories(50, 8, 4)
    slow = _slowed(build_student(teacher, list(range(8))).eval(), 0.03)
    r = bench.time_forward(slow, x, repeats=3, warmup=1)
    assert r["p10_ms"] >= 30 and r["throughput"] <= 4 / 0.03
    parts = bench.time_components(slow, x, repeats=2, warmup=1)
    assert parts["embed_ms"] >= 30 and parts["total_ms"] >= 30
    assert parts["backbone_ms"] < 30 and parts["score_ms"] < 30


def test_compare_speed_ratios_follow_planted_costs(teacher):
    """Two models whose passes sleep 60 and 15 ms: the measured speed-up of the faster one is near the planted 4
    (between 2 and 5 whatever the machine adds to each pass), and every ratio column is the ratio of the table's own
    columns (speedup = median_ref / median, speedup_p10 = p10_ref / p10, ideal = L_ref / L)."""
    models = {"slow": _slowed(build_student(teacher, list(range(8))).eval(), 0.06),
              "fast": _slowed(build_student(teacher, [0, 7]).eval(), 0.015)}
    df = bench.compare_speed(models, bench.random_histories(50, 8, 3), batch_sizes=(1, 5), repeats=3, warmup=1,
                             memory=False)
    assert len(df) == 4 and set(df["batch"]) == {1, 5}
    for b, g in df.groupby("batch"):
        ref, row = g.set_index("model").loc["slow"], g.set_index("model").loc["fast"]
        assert row["speedup"] == pytest.approx(ref["median_ms"] / row["median_ms"])
        assert row["speedup_p10"] == pytest.approx(ref["p10_ms"] / row["p10_ms"])
        assert 2.0 < row["speedup"] < 5.0, (b, row["speedup"])
        assert row["ideal"] == 4.0 and row["params_ratio"] == pytest.approx(
            sum(p.numel() for p in models["fast"].parameters()) / sum(p.numel() for p in models["slow"].parameters()))
    assert (df.loc[df.model == "fast", "weights_mb"] < df.loc[df.model == "slow", "weights_mb"].iloc[0]).all()


def test_one_timer_measures_a_planted_sleep():
    """`seconds` of a 50 ms sleep is at least 50 ms (sleep never returns early) and not wildly more; two planted
    sleeps keep their ratio. (The identity check that compact and fisher import the same timer was dropped: an
    import makes it true by construction.)"""
    cpu = torch.device("cpu")
    short, long = (bench.seconds(lambda d=d: time.sleep(d), cpu) for d in (0.02, 0.08))
    assert 0.02 <= short < 0.5 and 0.08 <= long < 0.6
    assert long / short > 1.5  # a timer that returned a constant, or the call overhead alone, gives about 1


def test_main_compact_and_fisher_dispatch(monkeypatch, tmp_path):
    monkeypatch.setattr(bench.BenchConfig, "for_profile",
                        classmethod(lambda cls, p: cls(batch_sizes=(1, 16), repeats=2, warmup=1, threads=1)))
    out = bench.main("compact", profile="smoke", seed=0, artefacts=str(tmp_path))
    assert out["threads"] == 1 and out["L"] == 8 and out["k_quarter"] == 2 and out["ideal_quarter"] == 4.0
    assert out["speedup_quarter_b16"] > 0 and set(out["ideal"]) == {"k=1", "k=2", "k=4"}
    assert "freshly built" in out["teacher"]
    monkeypatch.setattr(bench.fisher, "benchmark",
                        lambda profile, seed, artefacts: {"what": "fisher", "profile": profile})
    assert bench.main("fisher", profile="smoke") == {"what": "fisher", "profile": "smoke"}
    with pytest.raises(ValueError):
        bench.main("nothing")


def test_fisher_benchmark_reports_rates_and_agreement(tmp_path, monkeypatch):
    small = lf.FisherConfig(chunk_size=8, n_check=2, bench_fast=8, bench_loop=2, bench_rounds=1)
    monkeypatch.setattr(lf.FisherConfig, "for_profile", classmethod(lambda cls, p: small))
    out = bench.benchmark("smoke", 0, str(tmp_path))
    for k in ("vmap_samples_per_s", "loop_samples_per_s", "ratio", "max_rel_diff", "method", "profile", "n_samples"):
        assert k in out
    assert out["method"] in ("hooks", "vmap") and out["max_rel_diff"] < 1e-8
    assert out["ratio"] == pytest.approx(out["vmap_samples_per_s"] / out["loop_samples_per_s"])
    assert "freshly built" in out["model"] and "toy" in out["data"]


def test_bench_train_measures_both_steps_and_derives_the_rates(capsys):
    """Issue 16, item 1: `python -m lab bench train` times the teacher's CE step and the L/4 student's live KD step
    (smoke: 8 -> 2 layers); the rates and the epoch time are derived from the median step, as documented."""
    import json

    from lab.__main__ import main
    from lab.bench import train as bt

    assert main(["bench", "train", "--profile", "smoke"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    cfg = get_config("smoke")
    assert out["bench"] == "train" and out["teacher"]["n_layers"] == 8 and out["distill"]["n_layers"] == 2
    assert out["distill"]["variant"] == "kd+uniform"
    for r in (out["teacher"], out["distill"]):
        assert r["step_s"] > 0 and r["steps_timed"] == 10 and r["batch_size"] == cfg.train.batch_size
        assert r["samples_per_s"] == pytest.approx(r["batch_size"] * r["steps_per_s"])
        assert r["epoch_s"] == pytest.approx(math.ceil(cfg.data.n_users / r["batch_size"]) * r["step_s"])
    assert bt.throughput([3.0, 1.0, 2.0], 4, 10) == {"step_s": 2.0, "steps_per_s": 0.5, "samples_per_s": 2.0,
                                                     "epoch_s": 6.0, "batch_size": 4, "steps_timed": 3}


def test_bench_train_ratios_against_another_device(tmp_path, capsys, monkeypatch):
    """`--against FILE` (another device's saved output, last line JSON) adds epoch-time ratios: the other's epoch
    seconds over this run's, per model and per CUDA variant; the variants themselves are timed like the teacher."""
    import json

    from lab.__main__ import main
    from lab.bench import train as bt

    other = {"device": "cpu", "threads": 2, "teacher": {"epoch_s": 30.0}, "distill": {"epoch_s": 12.0}}
    mine = {"teacher": {"epoch_s": 1.5}, "distill": {"epoch_s": 0.5},
            "cuda_variants": [{"variant": "fp32", "epoch_s": 3.0}, {"variant": "bf16", "epoch_s": 1.2}]}
    assert bt.ratios_against(mine, other) == {
        "against_device": "cpu", "against_threads": 2, "teacher_epoch_speedup": 20.0, "distill_epoch_speedup": 24.0,
        "teacher_epoch_speedup_fp32": 10.0, "teacher_epoch_speedup_bf16": 25.0}
    f = tmp_path / "cpu.log"
    f.write_text("[bench train] a line of the table\n" + json.dumps(other) + "\n")
    assert main(["bench", "train", "--profile", "smoke", "--against", str(f)]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["against"]["teacher_epoch_speedup"] == pytest.approx(30.0 / out["teacher"]["epoch_s"])
    assert out["against"]["distill_epoch_speedup"] == pytest.approx(12.0 / out["distill"]["epoch_s"])
    # the CUDA variants (run here on the CPU, compile left out): one row each, at its own batch
    monkeypatch.setattr(bt, "CUDA_VARIANTS", tuple(v for v in bt.CUDA_VARIANTS if not v[3]))
    cfg = get_config("smoke")
    from lab.models import build_teacher

    t = build_teacher(cfg.model, cfg.data.n_items, cfg.data.max_len)
    rows = bt.cuda_variants(cfg, t, lambda m, x, y, r: m(x, labels=y, score="none").loss, 0, 2, 1)
    assert [r["variant"] for r in rows] == ["fp32", "bf16", "bf16_b256", "bf16_b1024"]
    assert [r["compile"] for r in rows] == [False] * 4
    assert [r["batch_size"] for r in rows] == [cfg.train.batch_size, cfg.train.batch_size, 256, 1024]
    assert all(r["steps_timed"] == 2 and r["step_s"] > 0 for r in rows)
    picked = bt.cuda_variants(cfg, t, lambda m, x, y, r: m(x, labels=y, score="none").loss, 0, 1, 0, ["bf16_b256"])
    assert [r["variant"] for r in picked] == ["bf16_b256"]
    with pytest.raises(ValueError, match="unknown CUDA variant"):
        bt.cuda_variants(cfg, t, None, 0, 1, 0, ["bf16", "fp8"])


def test_device_script_compares_with_saved_cpu_runs():
    """scripts/device_bench.sh (the GPU check prepared for a lent card) compares with the CPU JSON it names: each file
    is there, from the CPU, for its profile, and holds what `ratios_against` reads."""
    import json
    import re
    from pathlib import Path

    from lab.bench import train as bt

    root = Path(__file__).resolve().parents[1]
    script = (root / "scripts" / "device_bench.sh").read_text()
    profiles = re.search(r"for p in \$\{PROFILES:-([a-z ]+)\}; do", script).group(1).split()
    assert profiles == ["default", "full"] and "against=benchmarks/cpu-2core/train_$p.json" in script
    for p in profiles:
        saved = json.loads((root / "benchmarks" / "cpu-2core" / f"train_{p}.json").read_text())
        assert saved["device"] == "cpu" and saved["profile"] == p
        r = bt.ratios_against(saved, saved)
        assert r["teacher_epoch_speedup"] == r["distill_epoch_speedup"] == 1.0


def test_speed_is_timed_on_the_threads_the_run_was_given(monkeypatch):
    """BenchConfig.num_threads: the config's own count first, then $LAB_BENCH_THREADS, then $LAB_THREADS (a run
    sharing the machine is not timed on every core), then the machine's cores."""
    import os

    from lab.bench import BenchConfig

    for name in ("LAB_BENCH_THREADS", "LAB_THREADS"):
        monkeypatch.delenv(name, raising=False)
    assert BenchConfig().num_threads() == (os.cpu_count() or 1)
    monkeypatch.setenv("LAB_THREADS", "1")
    assert BenchConfig().num_threads() == 1
    monkeypatch.setenv("LAB_BENCH_THREADS", "3")
    assert BenchConfig().num_threads() == 3
    assert BenchConfig(threads=5).num_threads() == 5
