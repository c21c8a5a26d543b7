"""Distributed training and Fisher under Hugging Face accelerate (issue 16, item 2).

- `accelerate launch --num_processes 2 -m lab train` (gloo on CPU) gives the same per-step loss curve as one process
  with the same global batch: each rank takes half of every global batch and DDP averages the gradients, so only the
  float summation order differs (per-rank partial sums, the all-reduce, another thread count). Measured difference on
  the smoke teacher: ~2e-7 relative; tolerance rtol 1e-4 (a real bug — a wrong shard, weighting or lost all-reduce —
  moves the loss by >1e-2 within a step or two).
- Distillation (`lab.train.fit` with `DistillLoss`, gradients all-reduced after backward): the same check, 2 vs 1.
- The Fisher of two shards of users, merged, equals the one-process Fisher: it is a sum over users of per-user squared
  gradients (per-sample rows; the diagonal is their mean, so shards are weighted by their user counts). In one process
  (float64, 1e-10) and as 2 processes all-gathering their shards (`estimate_fisher_sharded`).

accelerate's CPU launch: `accelerate launch --cpu` without an MPI hostfile starts ONE process, so the two-process CPU
runs use `--multi_gpu` (torchrun underneath) on a machine without CUDA, where the Accelerator picks gloo on CPU.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import lab
from lab.fisher import estimate_fisher, fisher_hooks, fisher_loop, merge_shards

pytestmark = pytest.mark.distributed
ROOT = Path(lab.__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
from ddp_worker import distill_curve, fisher_case, to_arrays  # noqa: E402


def _launcher_or_skip():
    try:
        import accelerate  # noqa: F401
        import torch.distributed as dist
    except ImportError as e:  # pragma: no cover
        pytest.skip(f"accelerate's launcher is unavailable: {e}")
    if not dist.is_available() or not dist.is_gloo_available():  # pragma: no cover
        pytest.skip("torch.distributed with the gloo backend is unavailable")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "LAB_THREADS": "1", "TQDM_DISABLE": "1"}
    env.pop("WORLD_SIZE", None)
    return env


def _launch(n: int, args: list[str], timeout: int = 120) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(n),
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(_free_port()), *args]
    r = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r


def _lab(args: list[str], timeout: int = 120) -> subprocess.CompletedProcess:
    """`python -m lab ARGS` as one process (no launcher); asserts it succeeded."""
    r = subprocess.run([sys.executable, "-m", "lab", *args], cwd=ROOT, env=_env(), capture_output=True, text=True,
                       timeout=timeout)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r


def test_two_processes_same_loss_curve_as_one(tmp_path):
    _launcher_or_skip()
    common = ["train", "--profile", "smoke", "--artefacts", str(tmp_path / "art"), "--epochs", "2", "--dropout", "0"]
    _lab([*common, "--out", str(tmp_path / "one")])
    _launch(2, ["-m", "lab", *common, "--out", str(tmp_path / "two")])
    a = json.loads((tmp_path / "one" / "loss_curve.json").read_text())
    b = json.loads((tmp_path / "two" / "loss_curve.json").read_text())
    assert (a["world_size"], b["world_size"]) == (1, 2)
    assert a["global_batch"] == b["global_batch"] and a["steps"] == b["steps"] >= 4
    np.testing.assert_allclose(b["step_loss"], a["step_loss"], rtol=1e-4)
    assert (tmp_path / "two" / "config.json").exists() and (tmp_path / "two" / "history.csv").exists()


@pytest.mark.parametrize("method", ["loop", "hooks"])
def test_fisher_of_two_shards_merged_equals_whole(method):
    m, x, y = fisher_case()
    whole = fisher_loop(m, x, y) if method == "loop" else fisher_hooks(m, x, {"e": y}, chunk_size=3)["e"]
    parts = [fisher_loop(m, x[r], y[r]) if method == "loop" else fisher_hooks(m, x[r], {"e": y[r]}, chunk_size=3)["e"]
             for r in (slice(0, 3), slice(3, 8))]
    # the sum over users of per-user squared gradients: the shards' sums add up to the whole's
    np.testing.assert_allclose(parts[0].per_sample.sum(0) + parts[1].per_sample.sum(0), whole.per_sample.sum(0),
                               rtol=1e-10, atol=1e-12)
    merged = merge_shards(parts)
    np.testing.assert_allclose(merged.per_sample, whole.per_sample, rtol=1e-10, atol=1e-12)
    for k, v in whole.diag.items():  # a mean over users: shards weighted by their user counts
        np.testing.assert_allclose(merged.diag[k].numpy(), v.numpy(), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(merged.layer_values("total"), whole.layer_values("total"), rtol=1e-10)


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    """One 2-process launch of tests/ddp_worker.py: (merged sharded Fisher .npz, distillation loss curve .json)."""
    _launcher_or_skip()
    d = tmp_path_factory.mktemp("ddp")
    _launch(2, [str(Path(__file__).parent / "ddp_worker.py"), str(d / "fisher.npz"), str(d / "distill.json")])
    return np.load(d / "fisher.npz"), json.loads((d / "distill.json").read_text())


def test_fisher_two_processes_all_gathered_equals_one_process(two_processes):
    got = two_processes[0]
    assert int(got["world_size"]) == 2
    m, x, y = fisher_case()
    want = to_arrays(estimate_fisher(m, x, y, method="hooks", chunk_size=3))
    assert set(want) == set(got.files) - {"world_size"}
    for k, v in want.items():
        np.testing.assert_allclose(got[k], v, rtol=1e-10, atol=1e-14, err_msg=k)


def test_distillation_two_processes_same_loss_curve_as_one(two_processes):
    """Distillation's loss uses the student's `score` outside its forward, so `fit` all-reduces its gradients itself
    (no DDP wrapper); every term is a mean over labelled positions (positions "all"), so the shards are weighted by
    their labelled positions, exactly as the one-process mean. Same tolerance and reason as the teacher's curve."""
    got = two_processes[1]
    assert got["world_size"] == 2 and len(got["step_loss"]) == 8
    np.testing.assert_allclose(got["step_loss"], distill_curve(), rtol=1e-4)


# -- the command line: `python -m lab fisher | distill`, 1 process and 2 (lab.launch) -----------------------------
@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory):
    """A smoke teacher (`lab train`, 2 epochs), then `lab fisher` and `lab distill` on it, each as 1 process and as
    2 processes under `accelerate launch`; returns the folder holding them all."""
    _launcher_or_skip()
    d = tmp_path_factory.mktemp("cli")
    common = ["--profile", "smoke", "--artefacts", str(d / "art")]
    _lab(["train", *common, "--out", str(d / "teacher"), "--epochs", "2"])
    teacher = ["--teacher", str(d / "teacher")]
    for n in (1, 2):
        fisher = ["fisher", *common, *teacher, "--out", str(d / f"fisher{n}")]
        distill = ["distill", *common, *teacher, "--out", str(d / f"student{n}"), "--epochs", "1",
                   "--importance", str(d / "fisher1" / "fisher_layers.parquet")]
        true = ["fisher", *common, *teacher, "--out", str(d / f"fisher_true{n}"), "--estimator", "fisher_true"]
        for args in (fisher, distill, true):
            _lab(args) if n == 1 else _launch(2, ["-m", "lab", *args])
    return d


@pytest.mark.parametrize("name", ["fisher", "fisher_true"])
def test_fisher_command_two_processes_equals_one(cli_runs, name):
    """Either estimator: the true Fisher's labels are drawn over all users before the users are sharded, so its
    2-process estimate is the 1-process one too (drawn per shard, the draws would differ)."""
    one, two = (np.load(cli_runs / f"{name}{n}" / "fisher_per_sample.npz") for n in (1, 2))
    info = [json.loads((cli_runs / f"{name}{n}" / "fisher_info.json").read_text()) for n in (1, 2)]
    assert [i["world_size"] for i in info] == [1, 2]
    assert {i["estimator"] for i in info} == {"fisher_empirical" if name == "fisher" else "fisher_true"}
    np.testing.assert_array_equal(one["users"], two["users"])  # the same seeded Fisher users, in the same order
    assert one["per_sample"].shape == (len(one["users"]), len(one["keys"]))
    # float32 (the teacher's dtype); measured ~1e-7 of the largest entry: only summation order differs
    np.testing.assert_allclose(two["per_sample"], one["per_sample"], rtol=1e-4,
                               atol=1e-5 * np.abs(one["per_sample"]).max())
    import pandas as pd

    a, b = (pd.read_parquet(cli_runs / f"{name}{n}" / "fisher_layers.parquet") for n in (1, 2))
    assert list(a.columns) == ["layer_idx", "signal", "norm", "value", "ci_low", "ci_high"]
    np.testing.assert_allclose(b["value"], a["value"], rtol=1e-4)


def test_distill_command_two_processes_writes_the_same_student(cli_runs):
    """The same layers (Fisher top-k from the same table), the same teacher layers and weights; a student saved by
    rank 0 that loads. Dropout draws a stream per rank, so the weights agree in distribution only (the exact loss
    curve under 2 processes is `test_distillation_two_processes_same_loss_curve_as_one`)."""
    from lab.models import SeqRecModel

    infos = [json.loads((cli_runs / f"student{n}" / "distill_info.json").read_text()) for n in (1, 2)]
    assert infos[0]["student_layers"] == infos[1]["student_layers"] and len(infos[0]["student_layers"]) == 2
    assert infos[0]["teacher_layers"] == infos[1]["teacher_layers"] and infos[0]["weights"] == infos[1]["weights"]
    assert all(i["finished"] and i["epochs"] == 1 for i in infos)
    m = SeqRecModel.from_pretrained(cli_runs / "student2")
    assert m.num_layers == 2 and list(m.config.source_layers) == infos[1]["student_layers"]


def test_distill_command_loads_a_finished_student_unless_the_teacher_changed(cli_runs, tmp_path):
    """Run again with the same settings, teacher weights and data, `lab distill` loads the student it wrote; the
    same command on a teacher with other weights (trained 1 epoch instead of 2) in the same folder trains again."""
    import shutil

    from lab.distill import weights_fingerprint

    d = cli_runs
    teacher = tmp_path / "teacher"
    shutil.copytree(d / "teacher", teacher)
    args = ["distill", "--profile", "smoke", "--artefacts", str(d / "art"), "--teacher", str(teacher), "--out",
            str(tmp_path / "student"), "--epochs", "1", "--importance", str(d / "fisher1" / "fisher_layers.parquet")]
    first, again = (json.loads(_lab(args).stdout.strip().splitlines()[-1]) for _ in range(2))
    assert (first["loaded"], again["loaded"]) == (False, True) and first["layers"] == again["layers"]
    before = weights_fingerprint(teacher)
    _lab(["train", "--profile", "smoke", "--artefacts", str(d / "art"), "--out", str(teacher), "--epochs", "1"])
    assert weights_fingerprint(teacher) != before
    assert json.loads(_lab(args).stdout.strip().splitlines()[-1])["loaded"] is False


def test_launched_commands_name_a_missing_teacher(tmp_path):
    r = subprocess.run([sys.executable, "-m", "lab", "distill", "--profile", "smoke", "--artefacts",
                        str(tmp_path / "art"), "--out", str(tmp_path / "s"), "--teacher", str(tmp_path / "nowhere")],
                       cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "nowhere: no config.json there" in r.stderr and "lab train --out" in r.stderr


def test_importance_file_errors_name_the_file(tmp_path):
    import pandas as pd

    from lab import load_importance
    from lab.launch import fisher_run

    with pytest.raises(FileNotFoundError, match="nowhere.parquet: no such file"):
        load_importance(file=tmp_path / "nowhere.parquet")
    pd.DataFrame({"layer_idx": [0], "value": [1.0]}).to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(ValueError, match=r"bad.parquet: not an importance table, columns \['signal', 'norm'"):
        load_importance(file=tmp_path / "bad.parquet")
    with pytest.raises(ValueError, match="fisher_empirical' or 'fisher_true'"):
        fisher_run("smoke", tmp_path / "f", estimator="batchgrad_squared")
