"""Planted layer roles: linear probes of the depth world's planted variables in every layer (chapter 03).

The synthetic depth world (`lab.data.synthetic`) plants the intermediate variables a model must compute to predict
the next item (`lab.data.planted_variables`): the last item's cluster, the cluster an induction head retrieves, the
cluster the pointer lands on, the mode set by the last switch item. A *probe* asks where in the stack each one can be
read off linearly: a multinomial logistic regression (softmax regression with L2 weight decay, full-batch LBFGS)
from the residual stream at the last position of each layer to the variable, fitted on half of the users and scored
on the other half (a seeded permutation), beside the majority-class baseline of the same halves.

`layer_idx` names the residual stream as the Fisher tables do: -1 = the input embeddings (the input of layer 0),
l = the output of decoder layer l (0..L-1, before the final norm). So the gain of layer l, accuracy(l) -
accuracy(l - 1), is what layer l adds, and lines up with layer l's Fisher (chapter 03's `probe_record`).

- `planted_targets`: the planted variables of each history the model reads (processed ids mapped back to generated).
- `last_states`: (S, L+1, H) the last-position residual stream of every layer.
- `layer_probes`: held-out accuracy per (layer_idx, variable) and the baselines (`ProbeResult`); `probe_states`
  does the fitting and scoring on given states, `fit_probe` / `probe_predict` one probe.
- `probe_summary` (where each variable becomes decodable), `probe_gains` (per-layer gain); what chapter 03 records
  and prints of them (`probe_record`, `probe_conclusion`) is in `lab.chapters.c03_fisher`.
- `run_probes`: chapter 03's one call (None outside the depth world: real data and the shallow world plant nothing).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ..config import DataConfig
from ..profiles import profile_config
from ..data import RecData, SyntheticWorld, generated_ids, is_depth_world, planted_variables, synthetic_world
from ..io import write_parquet
from .subsets import sample_rows

VARIABLES = ("last_cluster", "induction_cluster", "pointer_cluster", "mode")  # probed by default
UNDEFINED = -1  # the planted value of a variable that does not exist for a history (no earlier occurrence, ...)
PROBE_COLUMNS = ["layer_idx", "variable", "accuracy", "majority", "n_train", "n_test", "n_undefined", "n_classes"]
PROBE_FILE = "03_probes.parquet"

__all__ = ["VARIABLES", "UNDEFINED", "PROBE_COLUMNS", "PROBE_FILE", "ProbeConfig", "ProbeResult", "planted_targets",
           "last_states", "fit_probe", "probe_predict", "layer_probes", "probe_states", "run_probes", "save_probes",
           "load_probes", "probe_summary", "probe_gains"]


@dataclass
class ProbeConfig:
    """How chapter 03 probes the teacher's layers for the depth world's planted variables."""

    n_users: int = 2000  # validation users probed (0 = all): half fit the probes, half score them
    weight_decay: float = 1e-2  # L2 penalty on the probe's weights (added to the mean cross-entropy)
    max_iter: int = 100  # LBFGS iterations per probe (one full-batch run)
    batch_size: int = 256  # histories per forward pass

    @classmethod
    def for_profile(cls, profile: str) -> "ProbeConfig":
        """The profile's `probes` section (`lab.profiles`)."""
        return profile_config(cls, profile, "probes")


@dataclass
class ProbeResult:
    """Held-out probe accuracies and their baselines (`layer_probes`)."""

    accuracy: pd.DataFrame  # index layer_idx (-1 = embeddings, l = output of layer l), one column per variable
    baseline: pd.DataFrame  # index variable: majority, n_train, n_test, n_undefined, n_classes
    n_users: int  # histories probed (both halves)
    seconds: float = float("nan")  # wall time of the forward pass and every fit

    def table(self) -> pd.DataFrame:
        """The long table saved as `03_probes.parquet`: one row per (layer_idx, variable), PROBE_COLUMNS."""
        long = self.accuracy.rename_axis("layer_idx").reset_index().melt(
            id_vars="layer_idx", var_name="variable", value_name="accuracy")
        out = long.merge(self.baseline.rename_axis("variable").reset_index(), on="variable")
        return out[PROBE_COLUMNS].astype({"layer_idx": int, "variable": str, "accuracy": float, "majority": float,
                                          "n_train": int, "n_test": int, "n_undefined": int, "n_classes": int})

    @classmethod
    def from_table(cls, table: pd.DataFrame, n_users: int | None = None) -> "ProbeResult":
        """The result back from its long table (`table`, `load_probes`); variables keep the table's order."""
        order = list(dict.fromkeys(table["variable"]))
        acc = table.pivot(index="layer_idx", columns="variable", values="accuracy")[order]
        base = table.drop_duplicates("variable").set_index("variable")[PROBE_COLUMNS[3:]].loc[order]
        n = n_users if n_users is not None else int(base[["n_train", "n_test", "n_undefined"]].sum(axis=1).max())
        return cls(acc.rename_axis(columns=None), base, n)


def planted_targets(world: SyntheticWorld, data: RecData, split: str = "valid", n_users: int | None = 0,
                    seed: int = 0) -> pd.DataFrame:
    """The planted variables of each history the model reads, one row per user of the split (chapter 03).

    The history is the split's processed window (`RecData.valid_history`: the last `max_len` items, left-padded),
    mapped back to generated ids through `RecData.item_ids` (`generated_ids`), so positions (`hop<k>_pos`,
    `switch_pos`) index the window's items and a variable whose source fell out of the window is undefined (-1).

    Args:
        n_users: a seeded subsample of the split's rows (`sample_rows`; 0 or None: all).

    Returns:
        `row` (index into the split), `user` (training-row index of the user), then `planted_variables`' columns.
    """
    history = data.split(split)[0]  # (U, T)
    rows = sample_rows(len(history), n_users, seed)
    gen = generated_ids(world, data.item_ids)[history[rows].numpy()]  # (n, T) generated ids, -1 = PAD
    out = planted_variables(world, gen)
    out.insert(0, "user", data.users(split)[rows].numpy())
    out.insert(0, "row", rows)
    return out


@torch.no_grad()
def last_states(model, history: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """The residual stream at the last position of every layer, in eval mode: [:, 0] = the input embeddings
    (layer_idx -1), [:, l + 1] = the output of decoder layer l, before the final norm (chapter 03).  # (S, L+1, H)

    Entries 0..L-1 are the model's `output_hidden_states` (the input of each layer); transformers replaces the last
    one by the final norm's output, so the last layer's own output is taken with a forward hook."""
    L = model.num_layers
    tap: dict = {}
    handle = model.layers[-1].register_forward_hook(
        lambda mod, args, out: tap.__setitem__("out", out[0] if isinstance(out, tuple) else out))
    was = model.training
    model.eval()
    dev = next(model.parameters()).device
    chunks = []
    try:
        for s in range(0, len(history), batch_size):
            x = history[s:s + batch_size].to(dev)  # (B, T)
            hs = model(x, score="none", output_hidden_states=True).hidden_states  # (L+1) x (B, T, H)
            if len(hs) != L + 1:
                raise RuntimeError(f"expected {L + 1} hidden states, got {len(hs)}")
            last = [h[:, -1] for h in hs[:L]] + [tap["out"][:, -1]]  # (L+1) x (B, H)
            chunks.append(torch.stack(last, 1).double().cpu())  # (B, L+1, H)
    finally:
        handle.remove()
        model.train(was)
    return torch.cat(chunks)  # (S, L+1, H)


def fit_probe(x: torch.Tensor, y: torch.Tensor, n_classes: int, weight_decay: float = 1e-2,
              max_iter: int = 100) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A softmax regression of `y` (n,) in 0..n_classes-1 on `x` (n, H): features standardised with their mean and
    standard deviation, loss = mean cross-entropy + weight_decay * ||W||^2, full-batch LBFGS (strong Wolfe) from zero,
    so the fit is deterministic (chapter 03). Returns (mean, std, W (H, C), b (C,))."""
    mean, std = x.mean(0), x.std(0, unbiased=False).clamp_min(1e-8)  # (H,)
    z = (x - mean) / std  # (n, H)
    W = torch.zeros(x.shape[1], n_classes, dtype=x.dtype, requires_grad=True)
    b = torch.zeros(n_classes, dtype=x.dtype, requires_grad=True)
    opt = torch.optim.LBFGS([W, b], lr=1.0, max_iter=max_iter, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(z @ W + b, y) + weight_decay * (W ** 2).sum()  # (n, C) logits
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return mean, std, W.detach(), b.detach()


def probe_predict(probe: tuple, x: torch.Tensor) -> torch.Tensor:
    """The class `fit_probe`'s probe predicts for each row of `x` (n, H).  # (n,)"""
    mean, std, W, b = probe
    return (((x - mean) / std) @ W + b).argmax(1)


def layer_probes(model, data: RecData, targets: pd.DataFrame, variables=VARIABLES, split: str = "valid",
                 weight_decay: float = 1e-2, max_iter: int = 100, seed: int = 0,
                 batch_size: int = 256) -> ProbeResult:
    """Linear probes of the planted variables at every layer of `model` (chapter 03): the histories of
    `targets["row"]` in the split run through the model (`last_states`), then `probe_states`.

    Args:
        targets: `planted_targets` of the same split (its `row` column selects the histories).
        variables: columns of `targets` to probe.

    Returns:
        `ProbeResult`: accuracy (layer_idx -1..L-1 x variable, held-out) and the baseline per variable.
    """
    t0 = time.perf_counter()
    rows = torch.tensor(targets["row"].to_numpy(), dtype=torch.long)
    states = last_states(model, data.split(split)[0][rows], batch_size)  # (S, L+1, H)
    result = probe_states(states, targets, variables, weight_decay, max_iter, seed)
    result.seconds = time.perf_counter() - t0
    return result


def probe_states(states: torch.Tensor, targets: pd.DataFrame, variables=VARIABLES, weight_decay: float = 1e-2,
                 max_iter: int = 100, seed: int = 0) -> ProbeResult:
    """Probe every variable in every layer's states (chapter 03): `states` (S, L+1, H), row i the history of
    `targets` row i, [:, j] the stream of layer_idx j - 1 (`last_states`).

    The S histories are split in two by a seeded permutation; the first half fits a probe per (layer_idx,
    variable) (`fit_probe`), the second half scores it. Per variable, histories where it is undefined (-1) are left
    out of both halves and counted; the majority baseline predicts the fitting half's most frequent value.

    Returns:
        `ProbeResult`: accuracy (layer_idx x variable, held-out; NaN when a half is empty) and the baseline per
        variable (majority accuracy on the scoring half, n_train, n_test, n_undefined, n_classes).
    """
    S, n_states = states.shape[:2]
    if len(targets) != S:
        raise ValueError(f"{S} histories' states but {len(targets)} rows of targets")
    states = states.double()
    fit = np.zeros(S, dtype=bool)
    fit[np.random.default_rng(seed).permutation(S)[: S // 2]] = True  # the fitting half
    acc, base = {}, {}
    for var in variables:
        value = targets[var].to_numpy()
        defined = value != UNDEFINED
        classes, y = np.unique(value[defined], return_inverse=True)
        y = torch.as_tensor(y, dtype=torch.long)  # (S_var,) class index of each defined history
        tr = torch.as_tensor(fit[defined])  # (S_var,) the fitting half; the rest scores
        x = states[torch.as_tensor(defined)]  # (S_var, L+1, H)
        n_tr, n_te = int(tr.sum()), int((~tr).sum())
        col, majority = np.full(n_states, np.nan), np.nan
        if n_tr and n_te:
            y_tr, y_te = y[tr], y[~tr]
            majority = float((y_te == torch.bincount(y_tr, minlength=len(classes)).argmax()).double().mean())
            for i in range(n_states):
                probe = fit_probe(x[tr, i], y_tr, len(classes), weight_decay, max_iter)
                col[i] = float((probe_predict(probe, x[~tr, i]) == y_te).double().mean())
        acc[var] = col
        base[var] = {"majority": majority, "n_train": n_tr, "n_test": n_te,
                     "n_undefined": int((~defined).sum()), "n_classes": len(classes)}
    accuracy = pd.DataFrame(acc, index=pd.Index(np.arange(n_states) - 1, name="layer_idx"))
    baseline = pd.DataFrame.from_dict(base, orient="index").rename_axis("variable")
    return ProbeResult(accuracy, baseline, S)


def run_probes(model, data: RecData, data_cfg: DataConfig, seed: int = 0, cfg: ProbeConfig | None = None,
               variables=VARIABLES, split: str = "valid") -> ProbeResult | None:
    """Chapter 03's probes: the depth world behind the data rebuilt from its seed (`lab.data.synthetic_world`), the
    planted variables of `cfg.n_users` users of the split (`planted_targets`), and `layer_probes`. None when the data
    plants nothing (real data, or the shallow world: `lab.data.is_depth_world`)."""
    if data_cfg.source != "synthetic" or not is_depth_world(data_cfg):
        return None
    cfg = cfg or ProbeConfig()
    t0 = time.perf_counter()
    targets = planted_targets(synthetic_world(data_cfg, seed), data, split, cfg.n_users, seed)
    result = layer_probes(model, data, targets, variables, split, cfg.weight_decay, cfg.max_iter, seed,
                          cfg.batch_size)
    result.seconds = time.perf_counter() - t0
    return result


def save_probes(paths, result: ProbeResult | None) -> None:
    """Write `03_probes.parquet` (`ProbeResult.table`), atomically; without a result remove an earlier run's file,
    so that no table outlives the probes that made it (chapter 03)."""
    if result is not None:
        write_parquet(paths.file(PROBE_FILE), result.table())
    else:
        paths.file(PROBE_FILE).unlink(missing_ok=True)


def load_probes(paths) -> ProbeResult:
    """Chapter 03's probe results back from `03_probes.parquet`."""
    return ProbeResult.from_table(pd.read_parquet(paths.file(PROBE_FILE)))


def probe_summary(accuracy: pd.DataFrame, majority: pd.Series, within: float = 0.02) -> pd.DataFrame:
    """Where each variable becomes decodable (chapter 03), one row per variable: majority, best (the highest
    held-out accuracy), best_layer, and decodable_at: the first layer_idx whose accuracy is within `within` of the
    best, or None when the best does not beat the majority baseline by more than `within` (never decodable)."""
    rows = {}
    for var in accuracy.columns:
        a = accuracy[var].dropna()
        best = float(a.max()) if len(a) else float("nan")
        ok = len(a) > 0 and best - float(majority[var]) > within
        rows[var] = {"majority": float(majority[var]), "best": best,
                     "best_layer": int(a.idxmax()) if len(a) else None,
                     "decodable_at": int(a.index[(a >= best - within).to_numpy()][0]) if ok else None}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("variable")


def probe_gains(accuracy: pd.DataFrame) -> pd.DataFrame:
    """What each decoder layer adds to each probe: accuracy(l) - accuracy(l - 1) for layer_idx l = 0..L-1, and
    `total`, the sum over the variables (chapter 03).  # (L, V + 1)"""
    gains = accuracy.sort_index().diff().iloc[1:]
    return gains.assign(total=gains.sum(axis=1, min_count=1))


