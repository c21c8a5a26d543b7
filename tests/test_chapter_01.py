"""Chapter 01 (data) in the smoke profile: the recorded statistics are plausible and the structure check passes."""
from __future__ import annotations

import pytest


@pytest.mark.notebook
def test_chapter_01(smoke_book):
    r = smoke_book.run("01")["01_data"]
    # smoke generates 400 users / 150 items; 5-core keeps most of them
    assert 300 <= r["n_users"] <= 400
    assert 100 <= r["n_items"] <= 150
    assert 3_000 <= r["n_interactions"] <= 8_000
    assert r["density"] == pytest.approx(r["n_interactions"] / (r["n_users"] * r["n_items"]))
    assert 5 <= r["mean_seq_len"] <= 30
    # only the generator's planted exact duplicates are skipped from the synthetic files
    assert 0 < r["rows_skipped"] < 0.02 * r["rows_read"]
    assert set(r["skipped_by_reason"]) <= {"duplicate_row", "unknown_item"}
    assert r["cache_second_call"] == "hit"
    assert r["valid_rows"] == r["test_rows"] == r["n_users"]  # leave-last-out: one of each per user
    assert r["timestamp_valid_rows"] > 0 and r["timestamp_test_rows"] > 0
    # sequential structure: Markov > popularity > chance, and order matters
    assert r["hr10_popularity"] > r["hr10_chance"]
    assert r["hr10_markov"] > 1.5 * r["hr10_popularity"]
    assert r["hr10_markov"] > r["hr10_markov_reversed"]
    assert r["markov_lift_over_popularity"] > 1.5
    # the bad-input demonstration saw every planted problem
    assert {"malformed_json", "not_an_object", "bad_type", "missing_field", "rating_out_of_range",
            "duplicate_row", "unknown_item", "duplicate_item"} <= set(r["demo_skipped_by_reason"])
    assert r["demo_file_errors"] == ["Corrupt.jsonl (strict=True)", "Empty.jsonl", "Missing.jsonl",
                                     "Truncated.jsonl.gz"]
