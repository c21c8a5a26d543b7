# %% [markdown]
# # 07 · Hypotheses: H1–H4, C1 and C2 decided by criteria written before the numbers
#
# **Question.** The method's authors reported four hypotheses "100% supported" without a computed test, and a
# headline in two claims. Which of them do this book's own measurements support, contradict, or leave open?
#
# The criteria are data in `lab.hypotheses.CRITERIA`, committed before any run that decides them (issue 15): for each
# claim the statistic, the test, the threshold, the direction and the family Holm's correction runs within. This
# chapter trains nothing: it reads the saved artefacts of chapters 02, 03 and 05 (`02_architectures.parquet`,
# `importance.parquet`, `distill_per_user.parquet`, `results.json`) of every seed of the profile and computes every
# verdict from them.
#
# **Pooling.** Test users are nested in training seeds: a per-user paired test inside one seed treats the training
# run as fixed and ignores how much a result moves when data, initialisation and training are redrawn. Each statistic
# is therefore one effect per seed (a paired mean over that seed's users, or a summary over its layers), and the seeds'
# effects are pooled with a t interval and t-test across seeds (df = seeds − 1; Spearman's ρ on Fisher's z). A mixed
# model (users within seeds) would take its seed variance from the same few seeds; with 2–3 of them the t interval
# across seeds is the honest and simpler choice, and its width says how little a few seeds can decide.

# %% tags=["parameters"]
PROFILE = "smoke"  # smoke | default | full | ml100k | llm | ml100k-llm (lab.profiles)
SEED = 0  # the run whose results.json receives this chapter's records
ARTEFACTS = ""  # artefact root; empty means <repo>/artefacts
SEEDS = None  # training seeds pooled; None: the profile's (lab.hypotheses.default_seeds: smoke [0, 1], else [0, 1, 2])
ALPHA = None  # family-wise error rate within each Holm family; None: lab.hypotheses.ALPHA (0.05)
ALSO = None  # other profiles (teachers) whose verdicts are shown beside; None: lab.hypotheses.companions (default: llm)
N_NULL = 2000  # simulated studies with no effect behind each claim's error rate (lab.hypotheses.null_rates; ~20 s)

# %%
import pandas as pd
from IPython.display import display

import lab
from lab import hypotheses as H
from lab import viz as V
from lab.chapters.c07_hypotheses import hypotheses_record, seeds_message

P = lab.setup(SEED, PROFILE, ARTEFACTS or None, chapter="07_hypotheses")
seeds = [int(s) for s in lab.resolve(SEEDS, H.default_seeds(PROFILE))]
alpha = lab.resolve(ALPHA, H.ALPHA)
inputs, missing = H.load_seeds(PROFILE, seeds, ARTEFACTS or None)
if not inputs:
    raise FileNotFoundError(f"no seed of {seeds} has chapters 01-05's artefacts: " + "; ".join(missing))
found = [s["seed"] for s in inputs]
print(seeds_message(PROFILE, seeds, found, missing, P.root.parent))

# %% [markdown]
# ## The criteria, as committed

# %%
criteria = pd.DataFrame([vars(c) for c in H.CRITERIA])[["id", "claim", "statistic", "test", "threshold", "direction",
                                                         "family", "rule"]]
with pd.option_context("display.max_colwidth", None):  # every criterion in full: they are the point of the chapter
    display(V.text_left(criteria.set_index("id")))

# %% [markdown]
# ## One effect per seed
# A row per criterion and seed: the per-seed effect, or why it could not be measured (the profile's chapter 05 grid
# may train no random students or no uniform weighting; a profile without an H4 depth trains no rival architectures).

# %%
rows = H.per_seed(inputs)
display(V.text_left(rows.drop(columns=[c for c in ("profile",) if c in rows])))

# %% [markdown]
# ## The verdicts
# Estimate and 95% CI across seeds, p of the t-test across seeds against the row's null, Holm-adjusted within each
# claim, and the verdict of the criterion's rule (`lab.hypotheses.decide`). A row of a claim that needs every row
# ("all") is supported on its own p: the claim needs all of them, an intersection-union test that pays no
# multiplicity. One contradicted row is enough to contradict such a claim, so a contradiction uses the Holm-adjusted
# p. A claim that one row suffices for ("any") uses the Holm-adjusted p both ways. C1-best is reported beside C1 and
# decides nothing: the best of ~25 students on validation is not the method.

# %%
table = H.verdict_table(rows, alpha=alpha)
cols = ["id", "claim", "n_seeds", "estimate", "ci_low", "ci_high", "p", "p_adj", "verdict"]
with pd.option_context("display.max_colwidth", None):
    display(V.text_left(table[cols].set_index("id")))
for r in table.itertuples():
    print(f"{r.id}: {r.verdict}" + (f" — {r.reason}" if isinstance(r.reason, str) else
                                     f" (estimate {V.with_interval(r.estimate, r.ci_low, r.ci_high, '{:.4g}')})"))

# %% [markdown]
# ## How often would these rules be wrong?
# The same procedure on studies simulated with no effect: the book's seed count, each row's effects drawn around its
# null with the spread its seeds show here, C2's profiles with a single peak at the noise its seeds show
# (`lab.hypotheses.null_rates`). A claim's rate is how often it comes out supported or contradicted when neither is
# true (for C2, supported: its null is a single peak).

# %%
null = H.null_rates(rows, n_sim=N_NULL, seed=SEED, alpha=alpha)
display(null[null["kind"] == "claim"].set_index("id").round(4))
print(H.null_sentence(null, alpha))

# %% [markdown]
# ## The claims
# A claim is decided from its rows (`lab.hypotheses.CLAIMS`, `CLAIM_RULE`): H2 needs both rank agreement and a
# Fisher selection that beats random, H4 needs llama above every rival; H1 (ablation or Fisher share) and H3 (depth or
# Fisher weights) are supported by either reading without the other contradicting it. KD asks whether distillation
# helps at all: the method's student against the same number of layers trained from scratch with the teacher's full
# recipe.

# %%
claims = H.claim_verdicts(table)
with pd.option_context("display.max_colwidth", None):
    display(V.text_left(claims))

# %% [markdown]
# ## Every teacher the book has, side by side
# The same criteria on the runs of the other profiles (the pretrained LLM teacher of profile `llm` beside the
# from-scratch teacher): each profile's seeds pooled as above. A claim that one run supports and another contradicts
# gets a sentence, and then one that some runs decide and others leave inconclusive.

# %%
runs = {f"{PROFILE} (seeds {', '.join(str(s['seed']) for s in inputs)})": claims}
for other in lab.resolve(ALSO, H.companions(PROFILE)):
    c, gone = H.profile_verdicts(other, ARTEFACTS or None, alpha=alpha)
    print(f"{other}: " + (f"seeds {c['seeds'].iloc[0]}" if len(c) else "no seed has chapters 01-05's artefacts")
          + (f" ({len(gone)} seed(s) missing)" if gone else ""))
    runs[f"{other} (seeds {c['seeds'].iloc[0]})" if len(c) else other] = c
both, disagree = H.side_by_side(runs)
print("\n".join(disagree) or "No claim is decided by one run and not, or otherwise, by another.")
both

# %% [markdown]
# ## Summary
# Every verdict above comes from `lab.hypotheses` applied to the recorded artefacts of the seeds named; "not measured"
# names the input the profile's runs lack. With two or three seeds a t interval across seeds is wide, so
# "inconclusive" is the expected answer for small effects: it says the book's runs cannot decide the claim, not that
# it is false.

# %%
counts = table["verdict"].value_counts()
print(", ".join(f"{counts.get(v, 0)} {v}" for v in H.VERDICTS))

# %%
lab.record_all(hypotheses_record(found, missing, alpha, table, claims, both, rows, null))
