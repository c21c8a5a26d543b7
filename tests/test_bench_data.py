"""`python -m lab bench data` (lab.bench.data) on tiny scales: structure and counts that scale, never timings; and the
evaluator's user chunks (`lab.metrics.evaluate`'s batch_size) give the metrics of one chunk holding every user."""
from __future__ import annotations

import gzip
import json

import pytest
import torch

from lab.__main__ import main
from lab.bench import data as bd
from lab.constants import PAD
from lab.data.amazon import raw_files
from lab.metrics import evaluate


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_evaluator_chunks_match_one_chunk(dtype):
    g = torch.Generator().manual_seed(0)
    U, N, T = 53, 40, 6
    scores = torch.randn(U, N + 1, generator=g, dtype=dtype)
    scores[:, 7] = scores[:, 9]  # ties, counted against the target in every chunking
    history = torch.randint(1, N + 1, (U, T), generator=g)
    history[:, 0] = torch.arange(U)  # the row's own index (PAD for row 0), so the score function can look it up
    target = torch.randint(1, N + 1, (U,), generator=g)
    seen = torch.cat([history[:, 1:], torch.full((U, 2), PAD)], 1)
    fn = lambda h: scores[h[:, 0]]  # noqa: E731
    users = torch.arange(100, 100 + U)
    one, pu_one = evaluate(fn, history, target, seen, batch_size=U, users=users, dtype=dtype)
    for b in (1, 7, 16):
        s, pu = evaluate(fn, history, target, seen, batch_size=b, users=users, dtype=dtype)
        assert s == one
        assert pu.equals(pu_one)


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    return tmp_path_factory.mktemp("bench")


@pytest.fixture(scope="module")
def tiny(tiny_folder):
    return bd.run("smoke", scales=(0.25, 0.5), folder=tiny_folder, isolate=False, verbose=False)


def test_structure(tiny):
    assert tiny["bench"] == "data" and tiny["profile"] == "smoke" and list(tiny["scales"]) == ["0.25", "0.5"]
    json.dumps(tiny)  # the CLI prints it as the last line
    for s, res in tiny["scales"].items():
        assert list(res) == list(bd.STAGES)
        for stage, r in res.items():
            assert r["stage"] == stage and r["scale"] == float(s)
            assert {"seconds", "rss_start_mb", "peak_rss_mb"} <= set(r)  # measurements: present, never judged here
        assert res["preprocess"]["cache"] == "built" and res["evaluate"]["cache"] == "hit"
        assert res["evaluate"]["users_ranked"] == res["preprocess"]["test_rows"] == res["preprocess"]["users"]
        assert res["evaluate"]["items_ranked"] == res["preprocess"]["items"]
        assert 0 <= res["evaluate"]["ndcg@10"] <= res["evaluate"]["hr@10"] <= 1


def _lines(path) -> int:
    """Non-blank lines of a (gzipped) JSON-lines file: the rows a reader sees."""
    with (gzip.open if str(path).endswith(".gz") else open)(path, "rt") as fh:
        return sum(1 for line in fh if line.strip())


def test_read_counts_the_generated_files(tiny, tiny_folder):
    """The generate and read stages' counts against the files they left: bytes on disk, lines in each file."""
    for s, res in tiny["scales"].items():
        rev, meta = raw_files(bd.scaled_data("smoke", float(s)).category, tiny_folder / f"x{s}" / "raw")
        assert res["generate"]["review_bytes"] == rev.stat().st_size
        assert res["generate"]["meta_bytes"] == meta.stat().st_size
        assert res["read"]["reviews"] == _lines(rev)  # the generator writes no bad row: every line is a review
        assert res["read"]["rows_read"] == _lines(rev) + _lines(meta)
        assert res["read"]["meta_items"] == _lines(meta)


def test_counts_scale(tiny):
    a, b = tiny["scales"]["0.25"], tiny["scales"]["0.5"]
    assert bd.scaled_data("smoke", 0.5).n_users == 2 * bd.scaled_data("smoke", 0.25).n_users == 200
    for stage, key in (("read", "rows_read"), ("preprocess", "interactions"), ("evaluate", "users_ranked")):
        assert 1.5 < b[stage][key] / a[stage][key] < 2.5, (stage, key)
    assert [r["read"]["meta_items"] for r in (a, b)] == [bd.scaled_data("smoke", s).n_items for s in (0.25, 0.5)]
    assert b["generate"]["review_bytes"] > 1.5 * a["generate"]["review_bytes"]


def test_stage_in_fresh_process(tmp_path):
    r = bd._stage_in_subprocess("generate", "smoke", 0.25, tmp_path, 0)
    rev, meta = raw_files(bd.scaled_data("smoke", 0.25).category, tmp_path / "raw")
    assert r["stage"] == "generate"
    assert r["review_bytes"] == rev.stat().st_size and r["meta_bytes"] == meta.stat().st_size


def test_cli_passes_scales(monkeypatch, capsys):
    seen = {}
    monkeypatch.setattr(bd, "run", lambda profile, scales, seed: seen.update(p=profile, s=scales, seed=seed) or
                        {"bench": "data"})
    assert main(["bench", "data", "--profile", "smoke", "--scales", "1", "2.5"]) == 0
    assert seen == {"p": "smoke", "s": [1, 2.5], "seed": 0}
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == {"bench": "data"}
