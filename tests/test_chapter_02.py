"""Chapter 02 in the smoke profile: the teacher trains, beats popularity, and its results are recorded."""


def test_chapter_02(smoke_book):
    r = smoke_book.run("02")["02_teacher"]
    assert r["n_layers"] == 8
    assert r["n_params"] > 10_000
    assert 0.0 < r["popularity_ndcg10_test"] < 1.0
    assert r["teacher_ndcg10_test"] > r["popularity_ndcg10_test"]
    assert r["teacher_over_popularity"] > 1.2
    assert r["train_seconds"] < 120
