"""Training: it learns, it is reproducible on CPU, it resumes after an interruption, it saves and reloads."""
import pytest
import torch

from lab.recommenders import popularity_scorer
from lab.config import TrainConfig
from lab.profiles import get_config
from lab.data import rec_data_from_sequences, toy_markov_sequences
from lab.metrics import evaluate
from lab.models import build_model
from lab.evaluation import score_split
from lab.train import fit, lr_lambda, train_or_load


@pytest.fixture(scope="module")
def data():
    return rec_data_from_sequences(toy_markov_sequences(96, 30, 12, seed=3), 30, 8)


def _model(data, seed=0):
    torch.manual_seed(seed)
    return build_model(get_config("smoke").model, data.num_items, data.max_len)


CFG = TrainConfig(epochs=3, batch_size=32, lr=5e-3, patience=5, max_minutes=5)


def test_learns_beyond_popularity(data):
    m = _model(data)
    fit(m, data, CFG, progress=False)
    ours = score_split(m, data, "test")[0]["ndcg@10"]
    h, t, s = data.split("test")
    pop = evaluate(popularity_scorer(data).recommend_scores, h, t, s)[0]["ndcg@10"]
    assert ours > pop + 0.2


def test_same_seed_same_numbers(data):
    a, b = _model(data), _model(data)
    ha = fit(a, data, CFG, progress=False, seed=1)
    hb = fit(b, data, CFG, progress=False, seed=1)
    assert ha["train_loss"].tolist() == hb["train_loss"].tolist()
    x = data.test_history[:5]
    assert torch.equal(a.recommend_scores(x), b.recommend_scores(x))


def test_resume_after_interruption_matches(data, tmp_path):
    ref = _model(data)
    h_ref = fit(ref, data, CFG, progress=False, seed=2)
    m = _model(data)
    fit(m, data, CFG, ckpt_dir=tmp_path, progress=False, seed=2, stop_after_epochs=1)  # "interrupted"
    m2 = _model(data, seed=99)  # a fresh process would start from other weights
    h = fit(m2, data, CFG, ckpt_dir=tmp_path, progress=False, seed=2)
    assert len(h) == len(h_ref)
    assert h["train_loss"].tolist() == pytest.approx(h_ref["train_loss"].tolist(), rel=1e-5)
    assert torch.allclose(m2.recommend_scores(data.test_history), ref.recommend_scores(data.test_history), atol=1e-5)


def test_train_or_load_round_trip(data, tmp_path):
    m, hist, info = train_or_load(_model(data), data, CFG, tmp_path, progress=False)
    assert not info["loaded"] and (tmp_path / "config.json").exists() and not (tmp_path / "ckpt").exists()
    again, hist2, info2 = train_or_load(_model(data, seed=5), data, CFG, tmp_path, progress=False)
    assert info2["loaded"]
    assert torch.equal(again.recommend_scores(data.test_history), m.recommend_scores(data.test_history))
    changed = TrainConfig(**{**CFG.__dict__, "epochs": 1})
    _, _, info3 = train_or_load(_model(data), data, changed, tmp_path, progress=False)
    assert not info3["loaded"]  # a different config retrains


def test_schedule_warms_up_then_decays():
    f = lr_lambda(100, 10)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(55) == pytest.approx(0.5, abs=0.02) and f(100) == pytest.approx(0.0, abs=1e-6)


def test_a_config_field_added_later_at_its_default_is_the_same_run():
    """A run saved before ModelConfig had a field loads when the field holds its default, not when it differs; any
    other difference (a changed value, an unknown new field, a field the saved run had and the request lacks) retrains."""
    import dataclasses

    from lab.config import ModelConfig
    from lab.io import jsonable
    from lab.train import same_key

    key = jsonable({"model": dataclasses.asdict(ModelConfig()), "data": "h", "seed": 0})
    old = {**key, "model": {k: v for k, v in key["model"].items() if k not in ("backbone", "tuning", "title_init")}}
    assert same_key(old, key) and same_key(key, key)
    assert not same_key(old, jsonable({**key, "model": dataclasses.asdict(ModelConfig(backbone="smollm2-135m"))}))
    assert not same_key(old, {**key, "model": {**key["model"], "num_layers": 3}})
    assert not same_key(old, {**key, "model": {**key["model"], "not_a_field": 1}})
    assert not same_key(key, old) and not same_key({**old, "data": "g"}, key)


def test_gpu_settings_leave_the_cpu_path_alone(data):
    """The GPU batch applies on CUDA only; a TrainConfig field added later (cuda_batch_size, torch_compile,
    cuda_deterministic) at its default is the same saved run; on CPU the GPU switches change nothing."""
    import dataclasses

    from lab.io import jsonable
    from lab.train import same_key, train_batch_size

    gpu = TrainConfig(**{**CFG.__dict__, "cuda_batch_size": 512, "torch_compile": True, "cuda_deterministic": True})
    assert train_batch_size(gpu, torch.device("cpu")) == CFG.batch_size
    assert train_batch_size(gpu, torch.device("cuda")) == 512 and train_batch_size(CFG, torch.device("cuda")) == 32
    key = jsonable({"train": dataclasses.asdict(CFG)})
    old = {"train": {k: v for k, v in key["train"].items()
                     if k not in ("cuda_batch_size", "torch_compile", "cuda_deterministic")}}
    assert same_key(old, key) and not same_key(old, jsonable({"train": dataclasses.asdict(gpu)}))
    h1 = fit(_model(data), data, CFG, progress=False)
    h2 = fit(_model(data), data, gpu, progress=False)
    assert h1["train_loss"].tolist() == h2["train_loss"].tolist()


def test_compile_mode_names_the_modes():
    """TrainConfig.torch_compile: False is no compilation, True is torch.compile's "default", a mode passes through,
    anything else is refused naming the modes (before any CUDA run compiles)."""
    from lab.train import COMPILE_MODES, compile_mode

    assert compile_mode(False) is None and compile_mode(True) == "default"
    assert [compile_mode(m) for m in COMPILE_MODES] == list(COMPILE_MODES)
    with pytest.raises(ValueError, match="reduce-overhead"):
        compile_mode("cudagraphs")


def test_the_run_says_why_it_stopped_and_a_budget_stop_is_loud(data, tmp_path):
    """Validation or the epoch cap ends a run quietly; the wall clock only with a warning, and the result says so
    (issue 24: a loaded machine must not silently under-train a teacher)."""
    from lab.train import stop_reason

    state = {"epoch": 2, "bad_epochs": 0, "history": [{"seconds": 30.0}]}
    assert stop_reason({**state, "epoch": 3}, CFG, 0.0) == "epochs"
    assert stop_reason({**state, "bad_epochs": 5}, CFG, 0.0) == "patience"
    assert stop_reason(state, CFG, 60.0) is None  # 1 min + a 30 s epoch fits 5 min
    with pytest.warns(RuntimeWarning, match="wall-clock budget"):
        assert stop_reason(state, CFG, 4.6 * 60) == "budget"  # 4.6 min + 30 s would overrun 5 min
    _, _, info = train_or_load(_model(data), data, CFG, tmp_path / "epochs", progress=False)
    assert (info["stopped_by"], info["stopped_by_budget"], info["epochs"]) == ("epochs", False, CFG.epochs)
    assert stop_reason({**state, "history": []}, CFG, 1e6) is None  # the first epoch always runs
    tiny = TrainConfig(epochs=3, batch_size=32, lr=5e-3, patience=5, max_minutes=1e-9)  # stops after the first
    with pytest.warns(RuntimeWarning, match="NOT by validation"):
        _, _, info = train_or_load(_model(data), data, tiny, tmp_path / "budget", progress=False)
    assert (info["stopped_by"], info["stopped_by_budget"], info["epochs"]) == ("budget", True, 1)
    assert train_or_load(_model(data), data, tiny, tmp_path / "budget", progress=False)[2]["stopped_by_budget"]
