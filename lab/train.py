"""Training a recommender: full-catalogue softmax cross-entropy, AdamW, warm-up + cosine decay, early stopping on
validation NDCG@10, a checkpoint every epoch and resume after an interruption (chapter 02).

SASRec trained with full softmax CE is the strong baseline (Klenitskiy & Vasilev 2023); BCE with one sampled negative
is not used. On CUDA the forward runs under bf16 autocast.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import os
import shutil
import time
import warnings
from dataclasses import asdict
from pathlib import Path

import pandas as pd
import torch

from .config import ModelConfig, TrainConfig
from .console import progress_bar
from .constants import IGNORE
from .data import RecData
from .evaluation import score_split
from .io import atomic_path, jsonable, read_json, write_json
from .models import SeqRecModel, count_parameters

__all__ = ["lr_lambda", "autocast", "accelerator", "is_main_process", "train_batch_size", "COMPILE_MODES",
           "compile_mode", "cuda_setup", "fit", "stop_reason", "train_or_load", "checkpoint_state", "same_key",
           "config_defaults", "load_finished", "save_finished"]


def lr_lambda(total_steps: int, warmup_steps: int):
    """Linear warm-up then cosine decay to 0, as a LambdaLR multiplier."""
    def f(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return f


def autocast(device: torch.device):
    """bf16 autocast on CUDA, a no-op context elsewhere (used by every training step)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


@functools.lru_cache(maxsize=None)
def accelerator():
    """The `accelerate.Accelerator` of a run launched with more than one process (`accelerate launch --num_processes N`;
    gloo on CPU, NCCL on GPUs), else None: one process keeps `fit`'s plain loop, bit for bit (issue 16, item 2)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    # find_unused_parameters: the backbone's own token table is never used (items enter as inputs_embeds)
    return Accelerator(cpu=not torch.cuda.is_available(),
                       kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])


def is_main_process() -> bool:
    """True on rank 0 of a distributed run and in a one-process run: the process that evaluates and writes."""
    acc = accelerator()
    return acc is None or acc.is_main_process


def train_batch_size(cfg: TrainConfig, device: torch.device) -> int:
    """Users per step on `device`: `cuda_batch_size` on a GPU when set, else `batch_size` (issue 16)."""
    return int(cfg.cuda_batch_size) if device.type == "cuda" and cfg.cuda_batch_size else int(cfg.batch_size)


COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")  # torch.compile's modes (TrainConfig.torch_compile)


def compile_mode(setting: bool | str) -> str | None:
    """torch.compile's `mode` for `TrainConfig.torch_compile` (True: "default"); ValueError naming the modes for an
    unknown one (None for False: no compilation)."""
    if setting is False or setting is None:
        return None
    mode = "default" if setting is True else setting
    if mode not in COMPILE_MODES:
        raise ValueError(f"TrainConfig.torch_compile must be True, False or one of {COMPILE_MODES}, not {setting!r}")
    return mode


def cuda_setup(cfg: TrainConfig) -> bool:
    """Deterministic CUDA kernels when `cfg.cuda_deterministic` (cuBLAS needs its workspace setting; warn-only where
    an op has no deterministic kernel); returns whether they are on. CPU runs are deterministic regardless."""
    if cfg.cuda_deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(bool(cfg.cuda_deterministic), warn_only=True)
    return bool(cfg.cuda_deterministic)


def fit(model: SeqRecModel, data: RecData, cfg: TrainConfig, ckpt_dir: str | Path | None = None, seed: int = 0,
        progress: bool = True, loss_fn=None, stop_after_epochs: int | None = None,
        trainable: list | None = None, step_losses: list | None = None) -> pd.DataFrame:
    """Train `model` on `data.train_*`; return the per-epoch history (loss, validation metrics, seconds).

    Args:
        ckpt_dir: where `last.pt` (resume state) and the best model (`best/`) are kept; resumes when `last.pt` exists.
        loss_fn: optional `loss_fn(model, input_ids, labels, rows) -> loss`, where `rows` (B,) are the batch's
            row numbers in `data.train_inputs` (distillation looks up cached teacher outputs by them); default CE.
        stop_after_epochs: stop (as if interrupted) after this many epochs in this call — used to test resume.
        trainable: parameters to optimise (default: all with requires_grad).

    The model is left holding the best validation weights.

    Under `accelerate launch --num_processes N` (`accelerator()` not None) the model is wrapped in DDP: each rank takes a
    contiguous 1/N shard of every global batch of `cfg.batch_size` rows (same permutation on every rank), its loss is
    weighted by its share of the global batch's labelled positions (rows for a custom `loss_fn`) so that DDP's gradient
    average equals the one-process gradient of the global batch, dropout draws a stream per rank, and only rank 0
    evaluates (its metrics are broadcast, so early stopping agrees) and writes checkpoints.

        step_losses: when a list, each step's (global-batch) training loss is appended to it.
    """
    acc = accelerator()
    if acc is not None:
        model.to(acc.device)
    device = next(model.parameters()).device
    # one GPU (issue 16): the training tensors resident on the device, fused AdamW, no host sync per step (losses
    # summed on the device, read once an epoch), the profile's GPU batch, optional torch.compile and determinism.
    # The CPU path is the plain loop, unchanged.
    cuda = device.type == "cuda" and acc is None
    if cuda:
        cuda_setup(cfg)
    params = trainable if trainable is not None else [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **({"fused": True} if cuda else {}))
    n = data.train_inputs.shape[0]
    batch_size = train_batch_size(cfg, device) if acc is None else cfg.batch_size
    inputs, labels = ((data.train_inputs.to(device), data.train_labels.to(device)) if cuda
                      else (data.train_inputs, data.train_labels))  # (U, T) each
    steps_per_epoch = math.ceil(n / batch_size)
    total = steps_per_epoch * cfg.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(total, int(cfg.warmup_frac * total)))
    state = {"epoch": 0, "best": -1.0, "bad_epochs": 0, "history": [], "elapsed": 0.0}
    ckpt = Path(ckpt_dir) if ckpt_dir else None
    if ckpt and (ckpt / "last.pt").exists():  # resume
        saved = torch.load(ckpt / "last.pt", map_location=device, weights_only=False)
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["opt"])
        sched.load_state_dict(saved["sched"])
        torch.set_rng_state(saved["rng"])
        state = saved["state"]
    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if ckpt and (ckpt / "best.pt").exists():
        best_state = torch.load(ckpt / "best.pt", map_location=device, weights_only=True)
    # the default CE is a mean over labelled positions; a custom loss says so by `mean_over_labels` (else: rows)
    by_tokens = loss_fn is None or bool(getattr(loss_fn, "mean_over_labels", False))
    net = model
    if acc is not None and loss_fn is None:
        net = acc.prepare_model(model)  # DDP: gradients all-reduced (averaged) in backward
    # a custom loss (distillation) may use parameters outside the module's forward (the student's `score` on its
    # hidden states), which DDP cannot track: its gradients are all-reduced after backward (`_all_reduce_grads`)
    mode = compile_mode(cfg.torch_compile)  # an unknown mode raises on any device
    step_model = torch.compile(model, mode=mode) if cuda and mode and loss_fn is None else model
    loss_fn = loss_fn or (lambda m, x, y, rows: m(x, labels=y, score="none").loss)
    epochs_this_call = 0
    t_start = time.perf_counter() - state["elapsed"]
    state["stopped_by"] = None  # why the run ended: "epochs", "patience" or "budget" (None: interrupted, or running)
    while True:
        reason = stop_reason(state, cfg, time.perf_counter() - t_start)
        if reason is not None:
            state["stopped_by"] = reason
            break
        model.train()
        torch.manual_seed(seed * 1000 + state["epoch"])  # dropout stream per epoch: same numbers twice, and on resume
        order = torch.randperm(n)
        if acc is not None:  # the same permutation on every rank; a dropout stream of its own per rank
            torch.manual_seed((seed * 1000 + state["epoch"]) * 1009 + 1 + acc.process_index)
        t0, total_loss = time.perf_counter(), 0.0
        on_device = []  # CUDA: each step's detached loss, read once after the epoch
        bar = progress_bar(range(steps_per_epoch), enabled=progress, desc=f"epoch {state['epoch'] + 1}", leave=False)
        for s in bar:
            idx = order[s * batch_size:(s + 1) * batch_size]
            if acc is not None:
                loss_item = _distributed_step(acc, net, params, opt, loss_fn, data, idx, by_tokens, cfg.grad_clip,
                                              device)
                sched.step()
                total_loss += loss_item * len(idx)
                if step_losses is not None:
                    step_losses.append(loss_item)
                bar.set_postfix(loss=f"{loss_item:.3f}")
                continue
            rows = idx.to(device)
            x, y = (inputs[rows], labels[rows]) if cuda else (inputs[idx].to(device), labels[idx].to(device))  # (B, T)
            with autocast(device):
                loss = loss_fn(step_model, x, y, rows)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            sched.step()
            if cuda:
                on_device.append(loss.detach() * len(idx))
                continue
            total_loss += loss.item() * len(idx)
            if step_losses is not None:
                step_losses.append(loss.item())
            bar.set_postfix(loss=f"{loss.item():.3f}")
        if on_device:  # one host sync for the epoch's losses
            sums = torch.stack(on_device).float().cpu()
            total_loss = float(sums.sum())
            if step_losses is not None:
                sizes = [min(batch_size, n - i * batch_size) for i in range(len(sums))]
                step_losses.extend(float(v) / b for v, b in zip(sums, sizes))
        if acc is None:
            metrics, _ = score_split(model, data, "valid", batch_size=cfg.eval_batch_size)
        else:  # rank 0 evaluates; every rank gets its metrics, so early stopping agrees
            from accelerate.utils import broadcast_object_list

            box = [score_split(model, data, "valid", batch_size=cfg.eval_batch_size)[0]
                   if acc.is_main_process else None]
            metrics = broadcast_object_list(box, from_process=0)[0]
            model.train()
        state["epoch"] += 1
        row = {"epoch": state["epoch"], "train_loss": total_loss / n, "seconds": time.perf_counter() - t0,
               **{f"valid_{k}": v for k, v in metrics.items()}}
        state["history"].append(row)
        if progress:
            print(f"epoch {row['epoch']:3d}  loss {row['train_loss']:.4f}  valid ndcg@10 {row['valid_ndcg@10']:.4f}"
                  f"  ({row['seconds']:.1f}s)")
        if metrics["ndcg@10"] > state["best"]:
            state["best"], state["bad_epochs"] = metrics["ndcg@10"], 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            if ckpt and is_main_process():
                with atomic_path(ckpt / "best.pt") as tmp:
                    torch.save(best_state, tmp)
        else:
            state["bad_epochs"] += 1
        state["elapsed"] = time.perf_counter() - t_start
        if ckpt and is_main_process():
            with atomic_path(ckpt / "last.pt") as tmp:
                torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                            "rng": torch.get_rng_state(), "state": state}, tmp)
        epochs_this_call += 1
        if stop_after_epochs is not None and epochs_this_call >= stop_after_epochs:
            break
    if state["stopped_by"] is not None and ckpt and is_main_process():  # the checkpoint says why the run ended
        with atomic_path(ckpt / "last.pt") as tmp:
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                        "rng": torch.get_rng_state(), "state": state}, tmp)
    model.load_state_dict(best_state)
    model.eval()
    if acc is not None:
        acc.wait_for_everyone()
    history = pd.DataFrame(state["history"])
    history.attrs["stopped_by"] = state["stopped_by"]
    return history


def stop_reason(state: dict, cfg: TrainConfig, elapsed_s: float) -> str | None:
    """Why `fit` stops before another epoch, or None to go on: "epochs" (the maximum reached), "patience" (early
    stopping: `cfg.patience` epochs without a better validation NDCG@10) or "budget" (another epoch would overrun
    `cfg.max_minutes` of wall time). Convergence is the validation's call, never the clock's: a budget stop is
    warned about loudly (a `RuntimeWarning` and a printed line) and `train_or_load` records it (`stopped_by_budget`),
    so a loaded machine cannot silently under-train a teacher (issue 24)."""
    if state["epoch"] >= cfg.epochs:
        return "epochs"
    if state["bad_epochs"] >= cfg.patience:
        return "patience"
    if not state["history"]:  # the first epoch always runs: a run of no epochs has no model to keep
        return None
    if (elapsed_s + state["history"][-1]["seconds"]) / 60 > cfg.max_minutes:  # another epoch would overrun
        msg = (f"training stopped by the wall-clock budget, NOT by validation: another epoch would overrun "
               f"max_minutes={cfg.max_minutes} after {state['epoch']} of {cfg.epochs} epochs (early stopping had "
               f"{state['bad_epochs']} of {cfg.patience} bad epochs); the model may be under-trained")
        print(f"WARNING: {msg}", flush=True)
        warnings.warn(msg, RuntimeWarning, stacklevel=3)
        return "budget"
    return None


def _distributed_step(acc, net, params, opt, loss_fn, data: RecData, idx: torch.Tensor, by_tokens: bool,
                      grad_clip: float, device) -> float:
    """One DDP step of `fit` on this rank's shard of the global batch `idx`; returns the global batch's loss."""
    import torch.distributed as dist

    local = idx.tensor_split(acc.num_processes)[acc.process_index]
    empty = len(local) == 0  # a last global batch smaller than the world: run one row, weighted 0
    rows = idx[:1] if empty else local
    x, y = data.train_inputs[rows].to(device), data.train_labels[rows].to(device)  # (b, T)
    units = torch.tensor([0.0 if empty else float((y != IGNORE).sum() if by_tokens else len(rows))], device=device)
    total_units = units.clone()
    dist.all_reduce(total_units)
    with autocast(device):
        loss = loss_fn(net, x, y, rows.to(device))
    # DDP averages gradients over N ranks: weight each rank's mean loss by N * its share of the global batch
    weighted = loss * (units[0] * acc.num_processes / total_units[0])
    opt.zero_grad(set_to_none=True)
    weighted.backward()
    if not isinstance(net, torch.nn.parallel.DistributedDataParallel):
        _all_reduce_grads(params, acc.num_processes)
    torch.nn.utils.clip_grad_norm_(params, grad_clip)
    opt.step()
    summed = (loss.detach() * units[0]).reshape(1)
    dist.all_reduce(summed)
    return float(summed[0] / total_units[0])


def train_or_load(model: SeqRecModel, data: RecData, cfg: TrainConfig, out_dir: str | Path, seed: int = 0,
                  progress: bool = True, key: dict | None = None) -> tuple[SeqRecModel, pd.DataFrame, dict]:
    """Train and `save_pretrained` into `out_dir`, or load it when a finished model with the same key is there.

    Returns (model, history, info) where info has `train_seconds`, `epochs`, `stopped_by` ("epochs", "patience" or
    "budget": `stop_reason`) and `stopped_by_budget` (True when the wall clock, not validation, ended it),
    `trainable_params` (what the optimiser changed: an LLM teacher's LoRA adapters and item table), `loaded` and the
    key.
    The intermediate checkpoints live in `out_dir/ckpt` until training finishes, so an interrupted run resumes.
    """
    out_dir = Path(out_dir)
    key = {"train": asdict(cfg), "seed": seed, **(key or {})}
    done = load_finished(out_dir, key, "train_info.json", type(model), next(model.parameters()).device)
    if done is not None:
        return done
    t0 = time.perf_counter()
    trainable = count_parameters(model, trainable_only=True)
    history = fit(model, data, cfg, ckpt_dir=out_dir / "ckpt", seed=seed, progress=progress)
    dev = next(model.parameters()).device
    stopped_by = history.attrs.get("stopped_by")
    info = {"key": jsonable(key), "train_seconds": time.perf_counter() - t0,
            "epochs": int(len(history)), "best_valid_ndcg@10": float(history["valid_ndcg@10"].max()),
            "stopped_by": stopped_by, "stopped_by_budget": stopped_by == "budget",  # validation or the clock
            "trainable_params": trainable, "device": str(dev), "batch_size": train_batch_size(cfg, dev),
            "deterministic": dev.type != "cuda" or bool(cfg.cuda_deterministic)}  # which kernels trained it
    state = checkpoint_state(out_dir / "ckpt")
    if state is not None:
        info["train_seconds"] = state["elapsed"]  # includes time before an interruption
    return save_finished(model, history, info, out_dir, "train_info.json")


def checkpoint_state(ckpt_dir: str | Path) -> dict | None:
    """The training state `fit` keeps in `ckpt_dir/last.pt` (epoch, best, bad_epochs, history, elapsed seconds over
    every call, interruptions included), or None when there is none (chapters 02 and 05)."""
    last = Path(ckpt_dir) / "last.pt"
    return torch.load(last, map_location="cpu", weights_only=False)["state"] if last.exists() else None


def same_key(saved, key, defaults: dict | None = None) -> bool:
    """Whether a finished run's saved `key` describes the run `key` asks for: equal, except that a `ModelConfig`
    field added to the book after the run was saved (absent from `saved`) counts as unchanged when `key` holds the
    field's default — so adding a config field does not retrain every saved model (the pretrained-teacher fields of
    issue 13 came after the default book's teachers and students were trained). `defaults` adds the fields of another
    config the key holds (`DistillConfig`'s, for students). Any other difference is a new run."""
    if defaults is None:
        defaults = config_defaults()
    if isinstance(saved, dict) and isinstance(key, dict):
        added = set(key) - set(saved)
        if set(saved) - set(key) or any(k not in defaults or key[k] != defaults[k] for k in added):
            return False
        return all(same_key(saved[k], key[k], defaults) for k in saved)
    return saved == key


def config_defaults(*classes) -> dict:
    """{field: default} of dataclass configs, ModelConfig's and TrainConfig's always included (`same_key`)."""
    return {f.name: jsonable(f.default) for c in (ModelConfig, TrainConfig, *classes) for f in dataclasses.fields(c)
            if f.default is not dataclasses.MISSING}


def load_finished(out_dir: str | Path, key: dict, info_name: str = "train_info.json", model_cls=SeqRecModel,
                  device: torch.device | str | None = None,
                  defaults: dict | None = None) -> tuple[SeqRecModel, pd.DataFrame, dict] | None:
    """(model in eval mode, history, info with loaded=True) of the finished run `save_finished` left in `out_dir`
    when it was made with the same `key`, else None: the "load it back when nothing changed" step of the teacher
    (`train_or_load`, chapter 02) and of every student (`lab.distill.distill`, chapter 05)."""
    out_dir = Path(out_dir)
    info = read_json(out_dir / info_name)
    if not info or not same_key(info.get("key"), jsonable(key), defaults) or not (out_dir / "config.json").exists():
        return None
    model = model_cls.from_pretrained(out_dir)
    model = (model.to(device) if device is not None else model).eval()
    return model, pd.read_csv(out_dir / "history.csv"), {**info, "loaded": True}


def save_finished(model, history: pd.DataFrame, info: dict, out_dir: Path, info_name: str):
    """Save a finished run (model, history.csv, info JSON), drop its resume checkpoints; return (model, history, info).
    `load_finished` reads it back."""
    model.save_pretrained(out_dir)
    with atomic_path(out_dir / "history.csv") as tmp:
        history.to_csv(tmp, index=False)
    write_json(out_dir / info_name, info)
    shutil.rmtree(out_dir / "ckpt", ignore_errors=True)
    return model, history, {**info, "loaded": False}


def _all_reduce_grads(params: list, world: int) -> None:
    """Average the gradients of `params` over the processes (one flat all-reduce; a missing gradient counts as 0 and
    stays None where it is None on every rank, as in one process)."""
    import torch.distributed as dist

    have = torch.tensor([float(p.grad is not None) for p in params])
    dist.all_reduce(have)
    live = [p for p, h in zip(params, have.tolist()) if h > 0]
    for p in live:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    if not live:
        return
    flat = torch.cat([p.grad.reshape(-1) for p in live])
    dist.all_reduce(flat)
    flat /= world
    i = 0
    for p in live:
        p.grad.copy_(flat[i:i + p.numel()].view_as(p.grad))
        i += p.numel()

