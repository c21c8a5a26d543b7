"""The RecBole side of the cross-check `python -m lab.crosscheck.recbole` (issue 14): run by `.venv-recbole/bin/python`.

It imports RecBole 1.2.1, torch and the standard library only, never `lab`: RecBole needs numpy<2 and pandas<3, so it
lives in its own virtual environment. `lab.crosscheck.recbole` writes the atomic file and a spec (JSON), then runs

    .venv-recbole/bin/python lab/crosscheck/recbole_runner.py SPEC.json

in the artefact folder (RecBole writes `log/` and `log_tensorboard/` into the working directory). For each model of
the spec (SASRec, Pop) it builds RecBole's `Config` from the spec's common and per-model settings, loads the dataset,
splits it (`eval_args`: leave-one-out by time per user, full ranking), trains with RecBole's own trainer (early stopping
on `valid_metric`), reloads the best checkpoint and evaluates on the test split. It writes one JSON (`spec["out"]`):
per model the test metrics, the best validation metrics, epochs, seconds, training samples; and per model the split
RecBole derived (valid and test target per user token, and the test history), so that the book side can check that
RecBole's split is the book's.

RecBole 1.2.1's `Trainer.evaluate(load_best_model=True)` calls `torch.load` without `weights_only=False`, which torch
>= 2.6 refuses for its checkpoint (it pickles the Config); the best checkpoint is therefore reloaded here with
`weights_only=False` (a file this process wrote moments earlier) and evaluated with `load_best_model=False`.
"""
from __future__ import annotations

import json
import os
import sys
import time

__all__ = ["split_of", "run_model", "main"]


def _tokens(dataset, field: str, ids) -> list[str]:
    return [str(t) for t in dataset.id2token(field, ids.numpy())]


def split_of(dataset, valid_data, test_data, uid: str, iid: str, sequential: bool) -> dict:
    """{"valid": {user: item}, "test": {user: item}, "test_history": {user: [items]} (sequential models only)}, all as
    the atomic file's tokens."""
    out = {}
    for name, loader in (("valid", valid_data), ("test", test_data)):
        feat = loader._dataset.inter_feat
        users, items = _tokens(dataset, uid, feat[uid]), _tokens(dataset, iid, feat[iid])
        if len(set(users)) != len(users):
            raise RuntimeError(f"RecBole's {name} split has several rows for a user")
        out[name] = dict(zip(users, items))
        if sequential and name == "test":
            lists, lengths = feat[iid + "_list"], feat["item_length"]
            out["test_history"] = {u: _tokens(dataset, iid, lists[r, :int(lengths[r])])
                                   for r, u in enumerate(users)}
    return out


def run_model(name: str, config_dict: dict) -> dict:
    """Train and test one RecBole model; its metrics, budget and split."""
    import torch
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import ModelType, get_model, get_trainer, init_logger, init_seed

    config = Config(model=name, config_dict=config_dict)
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    t0 = time.perf_counter()
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    data_seconds = time.perf_counter() - t0
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])  # as recbole's run_recbole does
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    t0 = time.perf_counter()
    best_valid_score, best_valid = trainer.fit(train_data, valid_data, saved=True, show_progress=False)
    train_seconds = time.perf_counter() - t0
    ckpt = torch.load(trainer.saved_model_file, map_location="cpu", weights_only=False)  # see the module docstring
    model.load_state_dict(ckpt["state_dict"])
    model.load_other_parameter(ckpt.get("other_parameter"))
    t0 = time.perf_counter()
    test = trainer.evaluate(test_data, load_best_model=False, show_progress=False)
    sequential = config["MODEL_TYPE"] == ModelType.SEQUENTIAL
    extra = {}
    if hasattr(model, "item_cnt"):  # Pop: its training counts per item token ([PAD] left out)
        cnt = model.item_cnt.reshape(-1).cpu()
        extra["item_counts"] = dict(zip(_tokens(dataset, config["ITEM_ID_FIELD"], torch.arange(1, len(cnt))),
                                        map(int, cnt[1:].tolist())))
    return {**extra,
        "test": {k: float(v) for k, v in test.items()},
        "best_valid": {k: float(v) for k, v in best_valid.items()},
        "best_valid_score": float(best_valid_score),
        "epochs": len(getattr(trainer, "train_loss_dict", {}) or {}),
        "best_epoch": int(ckpt.get("epoch", -1)) + 1,
        "data_seconds": data_seconds, "train_seconds": train_seconds, "test_seconds": time.perf_counter() - t0,
        "train_samples": len(train_data._dataset),
        "num_users": int(dataset.user_num - 1), "num_items": int(dataset.item_num - 1),  # id 0 is [PAD]
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "config": {k: (v if isinstance(v, (int, float, str, bool, list, dict, type(None))) else str(v))
                   for k, v in config_dict.items()},
        "split": split_of(dataset, valid_data, test_data, config["USER_ID_FIELD"], config["ITEM_ID_FIELD"],
                          sequential),
    }


def main(spec_path: str) -> dict:
    """Run every model of the spec and write `spec["out"]`."""
    with open(spec_path) as f:
        spec = json.load(f)
    import numpy
    import pandas
    import recbole
    import torch

    torch.set_num_threads(int(spec.get("threads", 1)))
    out = {"versions": {"recbole": recbole.__version__, "torch": torch.__version__, "numpy": numpy.__version__,
                        "pandas": pandas.__version__, "python": sys.version.split()[0]},
           "threads": torch.get_num_threads(), "models": {}}
    for name, extra in spec["models"].items():
        print(f"[recbole_runner] {name}: start", flush=True)
        out["models"][name] = run_model(name, {**spec["common"], **extra})
        r = out["models"][name]
        print(f"[recbole_runner] {name}: {r['epochs']} epochs, {r['train_seconds']:.1f} s, test {r['test']}",
              flush=True)
    with open(spec["out"], "w") as f:
        json.dump(out, f, indent=1, sort_keys=True)
    return out


if __name__ == "__main__":
    # this folder holds the book's `recbole.py`, which would shadow the real package (the caller also passes -P)
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    if len(sys.argv) != 2:
        sys.exit("usage: recbole_runner.py SPEC.json")
    main(sys.argv[1])
