# %% [markdown]
# # 01 · The data: Amazon Reviews 2023, and a synthetic stand-in with known structure
# **Question.** Can we read the real Amazon Reviews 2023 files robustly (streamed, bad rows skipped and counted), turn
# them into sequential-recommendation data the way the Amazon 2023 benchmark does, and does the data the book trains on
# carry *sequential* structure that a model could learn beyond item popularity?
#
# The book runs offline, so by default it trains on **synthetic data written in exactly the Amazon Reviews 2023 file
# format** (`<category>.jsonl.gz` reviews and `meta_<category>.jsonl.gz` item metadata) and read back by the same
# reader that reads the real files. Setting `DataConfig.source = "amazon"` and putting the real files in the raw folder
# is the only change needed for real data. The generator has known structure: users have tastes over item clusters,
# popularity follows a power law inside each cluster, clusters follow a Markov chain, and every item has a few
# preferred "next" items. A deeper sequence model has something to find beyond popularity only if the last items
# predict the next one, which this chapter checks with simple count baselines on the training split.
#
# Pipeline (all in `lab.data`, one entry point `load_rec_data`): generate if missing → stream the review file in
# chunks keeping only `user_id`, `parent_asin`, `timestamp`, `rating` → skip and count bad rows (`LoadReport`) → drop
# exact duplicates, de-duplicate repeated user–item pairs keeping the earliest → iterative k-core → contiguous ids
# (items 1..N, 0 = padding) → chronological sequences → titles from the metadata → cache → split (leave-last-out or
# the absolute timestamp split of the benchmark).
#
# **Real data without a download**: the `ml100k` profiles read MovieLens-100K (943 users, 1,682 movies, 100,000
# ratings with their titles, years and genres; Harper & Konstan, 2015) from the RecBole wheel that `make env` fetches
# (`lab.data.movielens`; GroupLens' terms allow research use and forbid redistribution, so the data is never
# committed). It goes through the same reader, report, pre-processing and splits as Amazon's files. What is real
# there: the ratings, their order in time, the titles. What is not: the order of ratings that share a timestamp (users
# rated in bulk; section 5 measures how much the split depends on the rule), and there is no Bayes ceiling: only the
# Markov and popularity floors are known.

# %% tags=["parameters"]
PROFILE = "smoke"  # a profile of lab.profiles: smoke | default | full | shallow | llm | ml100k
SEED = 0  # global seed
ARTEFACTS = ""  # artefact root; empty means <repo>/artefacts
WORLD = None  # synthetic world: "shallow" | "depth"; None: the profile's (shallow for the shallow profile, else depth)

# %%
import dataclasses
import json
import time

import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import display

import lab
from lab import recommenders as R
from lab import data as D
from lab import viz as V
from lab.bench import depth as DB
from lab.bench import ties as TS
from lab.chapters import c01_data as C
from lab.data.bad_input import corrupt_copy, file_level_errors
from lab.io import write_parquet

P = lab.setup(SEED, PROFILE, ARTEFACTS or None, chapter="01_data")  # seeds, determinism, theme; returns Paths
cfg = lab.get_config(PROFILE, SEED, world=WORLD)
dcfg = cfg.data
pd.DataFrame({"value": {k: str(v) for k, v in vars(dcfg).items()}})

# %% [markdown]
# ## 1 · Raw files
# With `source = "synthetic"` the generator writes the raw files when they are missing (or were written with other
# parameters or another seed; a small JSON next to them records what made them). The same seed gives byte-identical
# files. With `source = "movielens"` the two RecBole files are read from the wheel and written in the same format
# (titles "Toy Story (1995)", genres as categories). Below: the files, and one raw review and one raw metadata record
# as they appear on disk.

# %%
raw = D.raw_dir_of(dcfg, P)
t0 = time.perf_counter()
generated = D.ensure_raw(dcfg, raw, SEED, progress=True)  # synthetic: generated; movielens: from the wheel
gen_seconds = time.perf_counter() - t0
rev_path, meta_path = D.raw_files(dcfg.category, raw)  # DataError naming the folder and the files expected there
print(f"generated now: {generated} ({gen_seconds:.1f}s)")
display(pd.DataFrame([{"file": p.name, "MB": p.stat().st_size / 2**20} for p in (rev_path, meta_path) if p]))
for record in C.first_records(rev_path, meta_path):  # one raw review, one raw metadata row (when there is one)
    print(json.dumps(record, indent=1))

# %% [markdown]
# ## 2 · Read, pre-process, cache
# `prepare_data` streams the review file in chunks of `chunk_size` rows, pre-processes, attaches titles and caches the
# result under `processed/<category>/` (parquet + a JSON manifest holding the parameters' hash and the raw files'
# sizes and modification times). A second call with nothing changed reads the cache.

# %%
proc = D.prepare_data(dcfg, P, SEED, progress=True)
again = D.prepare_data(dcfg, P, SEED, progress=False)
print(f"first call: {proc.stats['cache']} in {proc.stats['seconds']:.2f}s; "
      f"second call: {again.stats['cache']} in {again.stats['seconds']:.2f}s")
report = proc.report
print(report)

# %% [markdown]
# The load report: rows read and skipped per reason (with a few examples: file, line, field), and what
# pre-processing removed on purpose. On the synthetic data the only skipped review rows are the exact duplicates the
# generator plants; repeated user–item pairs (a later review of the same item) are de-duplicated keeping the earliest,
# as the benchmark does, and counted as pre-processing, not as errors.

# %%
display(report.files_table())
display(report.table())
display(report.examples_table())
pre = pd.Series(report.preprocessing, name="count").to_frame()
pre

# %% [markdown]
# ## 3 · Bad input
# Real dumps contain damaged rows. The policy: **row-level problems are skipped and counted** (a malformed JSON line,
# a missing or mistyped field, a rating outside 1–5 or NaN, exact duplicate rows, metadata rows for items no review
# mentions); **file-level problems raise `DataError`** naming the file (truncated gzip, empty file, missing parquet
# column, file not found). `strict=True` raises on the first bad row instead. A small deliberately corrupted copy of
# the raw files shows the report a reader would see.

# %%
demo = P.root / "bad_input_demo"
bad_reviews, bad_meta = corrupt_copy(rev_path, demo)  # 300 review rows with one row of each problem; a damaged meta
demo_report = D.LoadReport()
demo_reviews = D.read_reviews(bad_reviews, chunk_size=100, report=demo_report)
D.preprocess_reviews(demo_reviews, k=1, report=demo_report, file=bad_reviews.name)
D.read_meta(bad_meta, report=demo_report, known=set(demo_reviews["parent_asin"].cat.categories))
print(f"{demo_report.rows_read} rows read, {demo_report.rows_kept} kept, {demo_report.rows_skipped} skipped")
display(demo_report.table())
display(demo_report.examples_table())

# %% [markdown]
# File-level problems stop the load with a message that names the file (and the line where the damage starts):

# %%
file_errors = file_level_errors(rev_path, bad_reviews, demo, dcfg.chunk_size)  # truncated gzip, empty, missing, strict
with pd.option_context("display.max_colwidth", 200):
    display(pd.DataFrame({"error": {f: e.replace(str(P.root), P.root.name) for f, e in file_errors.items()}}))

# %% [markdown]
# ## 4 · Statistics
# The processed data set, and the two splits of the Amazon 2023 benchmark. *Leave-last-out*: each user's last item is
# the test target, the second-last the validation target, the rest is training. *Timestamp*: interactions before
# `valid_from_ms` are training; a user's first interaction in [`valid_from_ms`, `test_from_ms`) is their validation
# target and their first one from `test_from_ms` on the test target, each with all earlier items as history (the
# cut-offs are the benchmark's, printed below). Timestamp targets need some earlier history, so fewer users have one.

# %%
rd, rep_llo, stats = D.load_rec_data(dcfg, P, SEED, progress=False)
rd_ts, _, stats_ts = D.load_rec_data(dataclasses.replace(dcfg, split="timestamp"), P, SEED, progress=False)
s = proc.stats
overview = pd.Series({
    "users": s["users"], "items": s["items"], "interactions": s["interactions"],
    "density": s["density"], "mean sequence length": s["mean_seq_len"],
    **{f"sequence length {k}": v for k, v in s["seq_len"].items()},
    "interactions of the top 1% items": s["item_pop"]["top1pct_share"], "popularity Gini": s["item_pop"]["gini"],
    "mean rating": s["rating_mean"], "first day": s["first_date"], "last day": s["last_date"],
}, name=f"{dcfg.category} ({PROFILE})").to_frame()
display(overview)
print("timestamp cut-offs:", pd.to_datetime(dcfg.valid_from_ms, unit="ms"), "/",
      pd.to_datetime(dcfg.test_from_ms, unit="ms"))
splits = pd.DataFrame({"leave-last-out": D.split_stats(rd), "timestamp": D.split_stats(rd_ts)})
splits

# %%
figs = {
    "01_popularity_tail.png": V.popularity_tail(proc.interactions),
    "01_sequence_lengths.png": V.seq_length_hist(proc.interactions),
    "01_ratings.png": V.rating_distribution(proc.interactions),
    "01_activity.png": V.activity_over_time(proc.interactions, dcfg.valid_from_ms, dcfg.test_from_ms),
}
for name, fig in figs.items():
    V.save(fig, name, P)
plt.show()
print("saved:", ", ".join(figs), "in", lab.book.shown_path(P.figures))

# %% [markdown]
# The popularity curve is a straight-ish line on log–log axes (a power law, as in real catalogues); most users have
# short histories and a few have long ones; ratings lean to 4–5 stars as Amazon's do; activity spans 2019–2023 so
# both timestamp cut-offs fall inside the data.
#
# ## 5 · Ties in time
# A user's ratings that share a timestamp have no real order between them, yet leave-last-out needs one: the last
# item is the test target. `DataConfig.tie_break` states the rule (`lab.data.preprocess.order_ties`: the file's
# order, the item id, or a seeded random order). Where ties are common, the data is rebuilt under other orders and the
# count baselines' test NDCG@10 compared per user: an order whose difference's CI excludes 0 changes what is
# measured.

# %%
tied_share = report.preprocessing["tied_interactions"] / report.preprocessing["interactions"]
seeded = f" (seed {dcfg.tie_seed})" if dcfg.tie_break == "shuffle" else ""
print(f"{tied_share:.1%} of the interactions share their timestamp with another of the same user; "
      f"ties ordered by the rule {dcfg.tie_break!r}{seeded}")
ties = TS.tie_sensitivity(dcfg, P, SEED) if tied_share > 0.01 else None
if ties is not None:
    display(ties.round(4))
print("\n".join(C.tie_lines(ties)))

# %% [markdown]
# ## 6 · Is there sequential structure to learn?
# Three count baselines, built from the **training split only** and scored on the validation targets with full
# ranking (every item ranked, the user's past items masked, ties counted against the target):
# * **popularity** — the most-interacted items;
# * **Markov** — first order: how often item *b* followed the user's last item *a* in training;
# * **Markov reversed** — the same counts read backwards (how often *b* came *before* *a*), which keeps co-occurrence
#   but throws away the order.
#
# If Markov beats popularity, the recent history predicts the next item; if it also beats its reverse, the *order*
# matters — which is what a sequence model exploits.

# %%
struct = R.sequential_structure(rd, k=10, split="valid")
struct_ts = R.sequential_structure(rd_ts, k=10, split="valid")
table = pd.DataFrame({"leave-last-out": C.baseline_table(struct), "timestamp": C.baseline_table(struct_ts)})
display(table)
V.save(V.structure_bars(struct), "01_structure", P)
plt.show()
lift = struct["hr@10_markov"] / max(struct["hr@10_popularity"], 1e-9)
print(f"Markov HR@10 = {struct['hr@10_markov']:.3f} vs popularity {struct['hr@10_popularity']:.3f} "
      f"({lift:.1f}x), reversed {struct['hr@10_markov_reversed']:.3f}, chance {struct['chance_hr']:.4f}")

# %% [markdown]
# ## 7 · The ceiling and the floors
# Does the next item need more than the last one? In the **depth world** (every profile but `shallow`;
# `lab.data.synthetic` describes its mechanisms: in-context cluster induction, a multi-hop pointer back through the
# history, a long-range mode switch) the generator's law is known exactly, so two reference predictors can be
# computed rather than trained:
# * **Bayes** — the exact next-item distribution given the user's whole history: the ceiling no model can beat in
#   expectation;
# * **last-item Bayes** — the best distribution given the last item only (and which items were seen, as the masked
#   ranking gives every scorer): what a model without attention could reach at best.
#
# Against them the floors: first-order **Markov** and **popularity** counted on the training split. All four are
# ranked on the test split exactly as the models are (`lab.metrics`: full catalogue, seen items masked, ties against
# the target). If Bayes and last-item Bayes tie, depth cannot matter on this data; their gap is what attention over
# the history can add. On real data, and in the shallow world (whose latent user taste makes the law intractable),
# only the floors are computed.
#
# **Which history the ceiling reads.** The models see *processed* histories: the 5-core filter drops rare items
# (and their users), so a user's processed history can lack items they were generated with, which moves pointer
# positions, the seen-item counts and the mode the generator used. Bayes applied to the processed history as if it
# were complete is then neither the generator's law nor a bound. So the ceiling here is the generator's law of each
# target given the user's whole *generated* history before it (`lab.data.synthetic.GeneratedPrefixes` maps each
# processed history back to it), ranked over the processed catalogue like every scorer. It is exact for the item
# that followed, and since the processed history is part of the generated one, no predictor of the processed history
# can beat it in expectation (more information never lowers the expected NDCG of the best ranking; the one thing it
# does not model is that k-core's choice of items also depends on the target's own later interactions). Below, the
# same law on the processed history is paired with it per user: the difference is what the old ceiling got wrong.

# %%
world = D.synthetic_world(dcfg, SEED) if dcfg.source == "synthetic" and D.is_depth_world(dcfg) else None
if world is None:
    print("Bayes and last-item Bayes skipped: " + (
        "real data has no known generator" if dcfg.source != "synthetic" else "the shallow world's latent user taste "
        "makes its Bayes law intractable; the depth world (every profile but `shallow`) has it"))
refs, ref_users = DB.reference_metrics(rd, world, split="test")  # per user: NDCG@10 of each predictor
write_parquet(P.file("01_reference_ndcg.parquet"), ref_users)
display(pd.Series(refs, name="test NDCG@10").to_frame())
print(C.reference_sentence(refs))

# %%
ceiling = C.ceiling_check(rd, world, ref_users, split="test", seed=SEED)  # None outside the depth world
print(C.ceiling_sentence(ceiling))

# %% [markdown]
# ## What the measurement shows
# The reader streams the Amazon-format files, skips damaged rows while naming each reason, file, line and field, and
# refuses damaged files outright; the pre-processing reproduces the benchmark's steps (de-duplication keeping the
# earliest review, iterative k-core, chronological sequences, both splits). The synthetic data has the shape of a
# real catalogue (power-law popularity, long-tailed history lengths, positive ratings) and, unlike a popularity-only
# toy, real sequential signal: in the shallow world a first-order Markov chain fitted on the training split ranks the
# validation item in the top 10 several times more often than popularity does, and more often than the same counts
# read backwards — so the order of the history carries information that a sequence model can learn, and that the
# later chapters can use to see which layers matter.
#
# A caveat for reading later numbers: the planted item-to-item pattern makes this data far more predictable than real
# Amazon categories (full-ranking SASRec reaches only about Recall@10 ≈ 0.07–0.08 on Amazon Beauty, see
# `reference.md`), so absolute metrics on the synthetic data are not comparable with published ones; comparisons
# between models and layer selections on the same data are what the book uses. `successor_strength` and
# `markov_strength` in `DataConfig` turn the signal down.
#
# In the depth world the last item is not enough by construction, and section 7 says by how much: the gap between the
# Bayes ceiling and last-item Bayes is the part of the next item only a model that reads the history can predict, and
# Bayes − Markov the gap every trained model is read against (`python -m lab bench depth`).
#
# ## Summary
# * One entry point, `lab.data.load_rec_data(cfg.data, paths, seed)` → `(RecData, LoadReport, stats)`, cached under
#   `processed/<category>/` and rebuilt when the raw files or pre-processing parameters change.
# * Bad rows are skipped and counted (table above); bad files raise `DataError` naming the file.
# * The statistics, figures (`figures/<profile>/01_*.png`) and the structure check are recorded below for the tests
#   and the later chapters; so are the test NDCG@10 of the references (Bayes and last-item Bayes only in the depth
#   world), with per-user values in `01_reference_ndcg.parquet`; in the depth world the ceiling is the generator's law
#   given each user's generated history before the target, and its difference to the same law on the processed
#   history is recorded (`bayes_minus_processed`, with its CI and how many histories the pre-processing thinned).

# %%
lab.record_all(C.data_record(dcfg, proc, again, rd, rd_ts, structure=struct, lift=lift, demo=demo_report,
                             demo_errors=file_errors, references=refs, world=world, tied_share=tied_share,
                             ties=ties, ceiling=ceiling))
