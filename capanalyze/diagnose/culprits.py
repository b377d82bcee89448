"""Who did it and what to change: the capture-wide eviction bracket, the catalog
entries a stall fits, and the keepalive remedy below every plausible timeout."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .. import catalog, evidence, remedy
from .model import Options, Stall, Tables


def survived_idles(gaps: pd.DataFrame, rsts: pd.DataFrame) -> np.ndarray:
    """Durations (sorted) of the idles with no keepalive that the connection survived."""
    return np.sort(survivor_durations(gaps, rsts))


def survivor_durations(gaps: pd.DataFrame, rsts: pd.DataFrame) -> np.ndarray:
    """survived_idles unsorted: the traffic that ended the idle got through, and was not
    answered by a RST (a FIN after the idle that a box resets was the eviction, not a
    survivor)."""
    survived = ((gaps["keepalives"] == 0) & gaps["ended_by"].isin(["data_acked", "ack", "fin"])).to_numpy()
    triggers = np.sort(rsts["trigger_frame"].dropna().to_numpy(dtype=np.int64))
    reset = _member(gaps["end_frame"].to_numpy(dtype=np.int64, na_value=-1), triggers)
    return gaps["duration_s"].to_numpy()[survived & ~reset]


def _member(values: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """values in sorted_set, by binary search: isin sorted both (2 ms per 65k gaps)."""
    if not len(sorted_set):
        return np.zeros(len(values), dtype=bool)
    at = np.minimum(np.searchsorted(sorted_set, values), len(sorted_set) - 1)
    return sorted_set[at] == values


def eviction_bracket(t: Tables, stalls: list[Stall]) -> dict | None:
    """Largest idle that survived and smallest that was evicted bracket the timeout.
    When connections idle longer than an evicted one survived, no single idle timer
    explains the evictions, and the bracket says so instead of naming a culprit."""
    evicted = [s.idle_before_s for s in stalls if s.cls == "silent_middlebox_eviction"]
    if not evicted:
        return None
    high = min(evicted)
    survived = t.survived_idle_s
    below = np.searchsorted(survived, high, side="left")   # survived[:below] < high
    low = float(survived[below - 1]) if below else 0.0
    longest = float(survived[-1]) if len(survived) else 0.0
    consistent = bool(longest < high)
    matches = [m.name for m in catalog.fitting_idle(high, low)] if consistent else []
    text = (evidence.bracket_text(low, high, matches) if consistent else
            evidence.inconsistent_bracket_text(high, longest))
    return {"low_s": round(low, 3), "high_s": round(high, 3), "matches": matches,
            "consistent": consistent, "text": text}


def name_culprits(s: Stall, bracket: dict | None):
    """Silent timeouts the idle fits; shortest first: with nothing to tell them apart,
    the box with the shortest timer on the path is the one that fires."""
    if s.culprits or s.cls not in ("silent_middlebox_eviction", "missing_keepalive"):
        return
    low = bracket["low_s"] if bracket and bracket["consistent"] else 0.0
    idle = s.idle_before_s or 0.0
    if bracket and bracket["consistent"]:  # one box evicted them all: the bracket bounds it
        idle = min(idle, bracket["high_s"])
    fits = sorted(catalog.fitting_idle(idle, low), key=lambda m: m.timeout_s)
    s.culprits = [{"name": m.name, "timeout_s": m.timeout_s} for m in fits]


def keepalive_remedy(t: Tables, s: Stall, bracket: dict | None, opts: Options) -> str:
    """Keepalive safely below every timeout that may be at work: below the longest
    idle that survived (the timeout is above it), else below the shortest culprit."""
    if opts.idle_timeout:
        timeout = opts.idle_timeout
    elif bracket and bracket["consistent"] and bracket["low_s"] > 0:
        timeout = bracket["low_s"]
    elif s.culprits:
        timeout = min(c["timeout_s"] for c in s.culprits)
    else:
        timeout = s.idle_before_s or catalog.smallest_silent_timeout()
    port = int(t.flow_rows[s.flow_id].server_port)
    text = remedy.keepalive(timeout, s.waiting or "client", port,
                            sparse_probes_s=s.idle_before_s if "keepalive_too_sparse" in s.factors else None)
    if s.backoff:
        text += "\n" + remedy.fail_fast(s.backoff.get("give_up_s"))
    return text
