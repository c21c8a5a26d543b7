"""Chapter 07's glue: which seeds are pooled and what is missing, said in words, and what the chapter records. The
criteria, the tests and the null simulation live in `lab.hypotheses`."""
from __future__ import annotations

import pandas as pd

from ..hypotheses import number

__all__ = ["seeds_message", "hypotheses_record"]


def seeds_message(profile: str, seeds: list[int], found: list[int], missing: list[str], root) -> str:
    """Which seeds chapter 07 pools, the command that makes each missing one, and why one seed decides nothing
    (chapter 07)."""
    lines = [f"Pooling seed(s) {found} of profile {profile}, the seeds whose chapters 01-05 have run."]
    if len(found) < len(seeds):
        lines.append(f"Seed(s) {sorted(set(seeds) - set(found))} of the {len(seeds)} this profile pools have not run:\n"
                     "  " + "\n  ".join(m.replace(str(root), "artefacts") for m in missing))
    if len(found) == 1:
        lines.append("With one seed there is no spread across seeds: no interval and no p-value, so every row is "
                     "'inconclusive' here by construction. The verdicts need every seed's run.")
    return "\n".join(lines)


def hypotheses_record(found: list[int], missing: list[str], alpha: float, table: pd.DataFrame,
                      claims: pd.DataFrame, both: pd.DataFrame, rows: pd.DataFrame, null: pd.DataFrame) -> dict:
    """What chapter 07 records: the seeds, each row's verdict, estimate, CI, p and Holm-adjusted p, each claim's
    verdict, the runs side by side, the per-seed effects (H2a on Fisher's z) and the simulated error rates."""
    ids = list(table["id"])
    return {
        "seeds": found, "missing": missing, "alpha": alpha,
        "verdict": dict(zip(ids, table["verdict"])),
        "claim_verdict": dict(zip(claims["claim"], claims["verdict"])),
        "side_by_side": {run: col.dropna().to_dict() for run, col in both.items()},
        "estimate": {i: number(x) for i, x in zip(ids, table["estimate"])},
        "ci": {i: [number(a), number(b)] for i, a, b in zip(ids, table["ci_low"], table["ci_high"])},
        "p": {i: number(x) for i, x in zip(ids, table["p"])},
        "p_adj": {i: number(x) for i, x in zip(ids, table["p_adj"])},
        "reason": {i: x for i, x in zip(ids, table["reason"]) if isinstance(x, str)},
        "per_seed": {f"{r.id}/{r.seed}": float(r.effect) for r in rows.itertuples() if r.effect == r.effect},
        "null_rate": {f"{r.kind}/{r.id}": [r.rate, r.ci_low, r.ci_high] for r in null.itertuples()},
        "null_sims": int(null["n_sim"].iloc[0]),
    }
