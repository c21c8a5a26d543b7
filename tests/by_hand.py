"""Independent computations the chapter tests check recorded values against, written out by hand."""
from __future__ import annotations


def holm_by_hand(p):
    """Holm step-down: sort ascending, multiply the j-th smallest by (m - j), keep it monotone, cap at 1."""
    order = sorted(range(len(p)), key=lambda i: p[i])
    out, running = [0.0] * len(p), 0.0
    for j, i in enumerate(order):
        running = max(running, (len(p) - j) * p[i])
        out[i] = min(1.0, running)
    return out
