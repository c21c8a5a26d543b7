"""The recommender: shapes, causal masking, padding, architectures, save/load, the pretrained-backbone path."""
import pytest
import torch

from lab.profiles import get_config
from lab.data import rec_data_from_sequences, toy_markov_sequences
from lab.models import SeqRecModel, build_llm_teacher, build_model, build_student, count_parameters


@pytest.fixture(scope="module")
def tiny():
    cfg = get_config("smoke").model
    torch.manual_seed(0)
    return build_model(cfg, num_items=30, max_len=10).eval()


def test_forward_shapes(tiny):
    x = torch.randint(1, 31, (4, 10))
    out = tiny(x, labels=x, output_hidden_states=True)
    assert out.logits.shape == (4, 10, 31)  # (B, T, N+1)
    assert tiny(x, score="last").logits.shape == (4, 31)  # (B, N+1)
    assert tiny(x, score="none").logits is None
    assert len(out.hidden_states) == tiny.num_layers + 1
    assert out.hidden_states[0].shape == (4, 10, tiny.config.backbone_config.hidden_size)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)


def test_no_position_attends_to_the_future(tiny):
    x = torch.randint(1, 31, (2, 10))
    y = x.clone()
    y[:, 6:] = torch.randint(1, 31, (2, 4))  # change only the future of position 5
    a = tiny(x, output_hidden_states=True).hidden_states
    b = tiny(y, output_hidden_states=True).hidden_states
    for ha, hb in zip(a, b):
        assert torch.allclose(ha[:, :6], hb[:, :6], atol=1e-6)
    assert not torch.allclose(a[-1][:, 6:], b[-1][:, 6:])


def test_left_padding_does_not_change_scores(tiny):
    short = torch.tensor([[4, 5, 6]])
    padded = torch.tensor([[0, 0, 0, 0, 4, 5, 6]])
    assert torch.allclose(tiny(short, score="last").logits, tiny(padded, score="last").logits, atol=1e-5)


def test_loss_ignores_unlabelled_positions(tiny):
    data = rec_data_from_sequences(toy_markov_sequences(8, 30, 6), 30, 10)
    out = tiny(data.train_inputs, labels=data.train_labels, score="all")
    keep = data.train_labels != -100
    ref = torch.nn.functional.cross_entropy(out.logits[keep], data.train_labels[keep])
    assert torch.allclose(out.loss, ref, atol=1e-5)


@pytest.mark.parametrize("arch", ["llama", "qwen2", "mistral", "gpt_neox"])
def test_architectures_and_round_trip(arch, tmp_path):
    cfg = get_config("smoke").model
    cfg.arch = arch
    torch.manual_seed(1)
    m = build_model(cfg, 30, 10).eval()
    x = torch.randint(1, 31, (3, 10))
    m.save_pretrained(tmp_path)
    back = SeqRecModel.from_pretrained(tmp_path).eval()
    assert back.config.backbone_config.model_type == arch
    assert count_parameters(back) == count_parameters(m)
    assert torch.equal(back(x, score="last").logits, m(x, score="last").logits)


def test_pretrained_backbone_with_lora(tmp_path):
    """A local HF checkpoint (saved here by the test) becomes the backbone; LoRA trains only adapters."""
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaModel

    torch.manual_seed(2)
    ckpt = LlamaModel(LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                  num_attention_heads=2, num_key_value_heads=2))
    ckpt.save_pretrained(tmp_path / "tiny-llama")
    m = build_llm_teacher(20, 8, backbone=str(tmp_path / "tiny-llama"), tuning="full")
    assert torch.equal(m.backbone.layers[0].self_attn.q_proj.weight, ckpt.layers[0].self_attn.q_proj.weight)
    peft_model = get_peft_model(m, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    before = {n: p.detach().clone() for n, p in peft_model.named_parameters() if "lora_" not in n}
    x = torch.randint(1, 21, (4, 8))
    loss = peft_model(input_ids=x, labels=x).loss
    loss.backward()
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    torch.optim.SGD([p for p in peft_model.parameters() if p.requires_grad], lr=0.1).step()
    after = dict(peft_model.named_parameters())
    assert all(torch.equal(before[n], after[n]) for n in before)


def test_build_student_is_really_smaller(tiny):
    s = build_student(tiny, [0, 4, 7])
    assert s.num_layers == 3 and s.config.backbone_config.num_hidden_layers == 3
    assert count_parameters(s) < count_parameters(tiny)
    assert [l.self_attn.layer_idx for l in s.layers] == [0, 1, 2]
    with pytest.raises(ValueError):
        build_student(tiny, [3, 1])


def test_text_features_are_frozen_and_saved(tmp_path):
    cfg = get_config("smoke").model
    cfg.use_text, cfg.text_dim = True, 16
    titles = [""] + [f"red shoe {i % 3}" for i in range(30)]
    m = build_model(cfg, 30, 10, item_titles=titles).eval()
    assert m.text_features.shape == (31, 16) and not m.text_features.requires_grad
    assert torch.allclose(m.text_features[1], m.text_features[4])  # same words, same features
    assert m.text_features[0].abs().sum() == 0
    m.save_pretrained(tmp_path)
    back = SeqRecModel.from_pretrained(tmp_path).eval()
    x = torch.randint(1, 31, (2, 10))
    assert torch.equal(back(x, score="last").logits, m(x, score="last").logits)


def test_fresh_init_is_scaled_for_depth():
    import dataclasses

    cfg = dataclasses.replace(get_config("smoke").model, num_layers=8, hidden_size=64, intermediate_size=128)
    torch.manual_seed(0)
    m = build_model(cfg, num_items=2000, max_len=10)
    resid = torch.cat([torch.cat([l.self_attn.o_proj.weight.flatten(), l.mlp.down_proj.weight.flatten()])
                       for l in m.layers])
    other = torch.cat([l.self_attn.q_proj.weight.flatten() for l in m.layers])
    assert resid.std().item() == pytest.approx(cfg.init_std / 4.0, rel=0.05)  # sqrt(2 * 8) = 4
    assert other.std().item() == pytest.approx(cfg.init_std, rel=0.05)
    assert m.item_emb.weight[1:].std().item() == pytest.approx(cfg.embedding_std, rel=0.05)
    assert m.item_emb.weight[0].abs().sum() == 0  # padding row
    flat = build_model(dataclasses.replace(cfg, scale_residual_init=False), num_items=2000, max_len=10)
    assert flat.layers[0].self_attn.o_proj.weight.std().item() == pytest.approx(cfg.init_std, rel=0.1)


def test_attn_implementation_takes_effect():
    torch.manual_seed(0)
    m = build_model(get_config("smoke").model, num_items=30, max_len=10, attn_implementation="eager").eval()
    assert m.layers[0].self_attn.config._attn_implementation == "eager"
    x = torch.randint(1, 31, (2, 10))
    eager = m(x).logits
    m.set_attn_implementation("sdpa")
    assert m.layers[0].self_attn.config._attn_implementation == "sdpa"
    torch.testing.assert_close(m(x).logits, eager, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_mistral_is_not_llama(attn):
    """H4's Mistral has Mistral's grouped key/value heads and a sliding window of half the history (issue 24): with one
    layer, the last position does not see items older than the window (padding on the left included), while Llama's
    last position does; fewer key/value projection weights than Llama's."""
    cfg = get_config("smoke").model
    cfg.num_layers, cfg.num_heads = 1, 4
    x = torch.randint(1, 31, (3, 10))
    y = x.clone()
    y[:, :5] = torch.randint(1, 31, (3, 5))  # outside the last position's window of 10 // 2 = 5 items
    sizes = {}
    for arch in ("mistral", "llama"):
        cfg.arch = arch
        torch.manual_seed(2)
        m = build_model(cfg, 30, 10, attn_implementation=attn).eval()
        sizes[arch] = count_parameters(m)
        same = torch.allclose(m(x, score="last").logits, m(y, score="last").logits, atol=1e-6)
        assert same == (arch == "mistral")
        bc = m.config.backbone_config
        assert (bc.num_key_value_heads, getattr(bc, "sliding_window", None)) == \
            ((1, 5) if arch == "mistral" else (4, None))
        padded = torch.cat([torch.zeros(3, 4, dtype=torch.long), x], 1)  # left padding: the window is over items
        assert torch.allclose(m(padded, score="last").logits, m(x, score="last").logits, atol=1e-5)
    assert sizes["mistral"] < sizes["llama"]
