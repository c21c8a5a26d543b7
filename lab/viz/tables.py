"""Tables as a reader wants them on a page: a configuration as field and value, a number with its interval in one
cell, and chapter 06's leaderboard with the columns its verdicts need (the full frame stays in its parquet).

Each function returns a pandas DataFrame (or, `text_left`, its Styler) for the chapter to display; none prints.
"""
from __future__ import annotations

import dataclasses

import pandas as pd

__all__ = ["config_table", "text_left", "with_interval", "LEADERBOARD_COLUMNS", "leaderboard_view"]


def config_table(cfg, name: str = "value") -> pd.DataFrame:
    """A dataclass configuration as a two-column table (field, value), in place of its one-line repr (chapters
    02-05). Values are shown as text (`_text`): a sequence as its items, a None as written."""
    rows = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    return pd.DataFrame({name: [_text(v) for v in rows.values()]}, index=pd.Index(list(rows), name=type(cfg).__name__))


def _text(v) -> str:
    """A config value as a reader reads it: 4 significant digits, a sequence as its items, anything else as str."""
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return ", ".join(map(_text, v)) if v else "(none)"
    return str(v)


def text_left(df: pd.DataFrame):
    """`df` styled for a page: text columns left-aligned (a long sentence wraps readably), numbers right-aligned
    as usual, a missing value as "—" (chapter 07's criteria and verdicts)."""
    text = [c for c in df.columns if not pd.api.types.is_numeric_dtype(df[c])]
    return df.style.set_properties(subset=text, **{"text-align": "left"}).format(precision=4, na_rep="—")


def with_interval(value, low, high, fmt: str = "{:.3f}") -> str:
    """`value (low–high)` in one cell; "—" where the value is missing, no interval where either end is."""
    if value is None or value != value:
        return "—"
    if low is None or high is None or low != low or high != high:
        return fmt.format(value)
    return f"{fmt.format(value)} ({fmt.format(low)}–{fmt.format(high)})"


LEADERBOARD_COLUMNS = ("name", "family", "test NDCG@10 (95% CI)", "kept (95% CI)", "speed-up", "method − row",
                       "Holm p", "verdict")


def leaderboard_view(board: pd.DataFrame, metric: str = "ndcg@10") -> pd.DataFrame:
    """Chapter 06's leaderboard in the columns a reader needs (`LEADERBOARD_COLUMNS`): quality and retention with
    their CIs in one cell each, the measured speed-up at the largest batch, the method's paired difference, its Holm
    p and the verdict. Detail, parameters, memory and batch-1 speed stay in `leaderboard.parquet`."""
    t, r = f"test_{metric}", f"ret_{metric}"
    return pd.DataFrame({
        "name": board["name"],
        "family": board["family"],
        "test NDCG@10 (95% CI)": [with_interval(*v) for v in zip(board[t], board[f"{t}_low"], board[f"{t}_high"])],
        "kept (95% CI)": [with_interval(*v, fmt="{:.1%}") for v in zip(board[r], board[f"{r}_low"],
                                                                          board[f"{r}_high"])],
        "speed-up": [f"{x:.2f}x" if x == x else "—" for x in board["speedup"]],
        "method − row": [f"{x:+.4f}" if x == x else "—" for x in board["diff"]],
        "Holm p": [f"{x:.2g}" if x == x else "—" for x in board["holm_p"]],
        "verdict": board["verdict"].fillna("—"),
    }).set_index("name")
