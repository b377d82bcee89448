"""Segments that never got through: evictions (idle, then black-holed or reset by
a box that lost the state) and unreachable peers (backoff with no idle before it)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .. import evidence, remedy
from .model import EVICTION_MIN_IDLE_S, Stall, Tables, _frames, _int


def _unanswered_backoffs(t: Tables):
    """Chains that look like RTO backoff and were never answered. A SYN answered by a
    RST was refused, not lost; probes repeated at a fixed interval (nmap) are not a
    stack backing off."""
    b = t.backoffs
    if not len(b):
        return b.itertuples(index=False)
    first = b["intervals_s"].map(lambda iv: iv[0])
    last = b["intervals_s"].map(lambda iv: iv[-1])
    backing_off = (b["retransmissions"] <= 2) | (last >= 1.5 * first)
    refused = b["syn"] & (b["ended_by"] == "rst")
    return b[(b["ended_by"] != "acked") & backing_off & ~refused].itertuples(index=False)


def _silence_before(t: Tables, chain):
    """The idle gap a chain's original ended, and the silence a middlebox saw before it
    (keepalive probes in the gap are traffic to its idle timer)."""
    gap = t.gap_index.before(chain.flow_id, chain.original_ts, _int(chain.original_frame))
    return gap, (gap.silence_s if gap is not None else 0.0)


def evictions_by_backoff(t: Tables) -> list[Stall]:
    out = []
    for chain in _unanswered_backoffs(t):
        gap, idle = _silence_before(t, chain)
        if idle < EVICTION_MIN_IDLE_S or chain.syn:
            continue
        s = Stall(chain.flow_id, "silent_middlebox_eviction", gap.start_ts,
                  chain.end_ts or t.capture_end, idle,
                  _chain_frames(chain, gap), [], [_keepalive_factor(gap)])
        s.evidence = evidence.eviction_by_backoff(t.flow_rows[chain.flow_id], gap, chain)
        s.backoff = _backoff_dict(chain)
        s.factors += _chain_factors(chain)
        s.confidence = 0.75 + (0.15 if chain.ended_by == "gave_up" else 0.05)
        out.append(s)
    return out


def evictions_by_rst(t: Tables) -> list[Stall]:
    out = []
    for rst in t.rsts.itertuples(index=False):
        answered_idle = rst.trigger_idle_s >= EVICTION_MIN_IDLE_S
        on_idle = t.gap_index.before(rst.flow_id, rst.ts, int(rst.frame)) if rst.forged else None
        if on_idle is not None and on_idle.silence_s < EVICTION_MIN_IDLE_S:
            on_idle = None
        if not (answered_idle or on_idle is not None) or _closed_before(t, rst):
            continue
        out.append(_rst_eviction(t, rst, on_idle))
    return out


def _closed_before(t: Tables, rst) -> bool:
    """The RST's sender had closed (FIN) before the idle: its socket is gone, so a
    RST to a late packet is the stack's correct answer, not a middlebox's."""
    gap = t.gap_index.before(rst.flow_id, rst.ts, int(rst.frame))  # keepalives don't end gaps
    if gap is None and not pd.isna(rst.trigger_frame):
        gap = t.gap_index.before(rst.flow_id, rst.ts - rst.trigger_delay_s, int(rst.trigger_frame))
    return gap is not None and gap.fin_before in (rst.sender, "both")


def _rst_eviction(t: Tables, rst, on_idle) -> Stall:
    """A RST answering the first packet after a long idle, or a forged RST that ends
    an idle period by itself (a box resetting idle connections, e.g. Azure's LB with
    'TCP reset on idle')."""
    if on_idle is not None:
        gap, frames, factors = on_idle, _frames(on_idle, int(rst.frame)), ["rst_on_idle"]
    else:
        trigger = int(rst.trigger_frame)
        gap = t.gap_index.before(rst.flow_id, rst.ts - rst.trigger_delay_s, trigger)
        frames, factors = _frames(gap, trigger, int(rst.frame)), ["rst_after_idle"]
    idle = gap.silence_s if gap is not None else rst.trigger_idle_s
    start = gap.start_ts if gap is not None else rst.ts - idle
    s = Stall(rst.flow_id, "silent_middlebox_eviction", start, rst.ts, idle, frames, [], factors)
    s.evidence = evidence.eviction_by_rst(t.flow_rows[rst.flow_id], gap, rst, on_idle is not None)
    if rst.forged:
        s.factors.append("forged_rst")
    if rst.peer_kept_sending:
        s.factors.append("unanswered_rst")
    if gap is not None:
        s.factors.append(_keepalive_factor(gap))
    s.confidence = 0.9 if rst.forged else 0.6
    return s


def unreachable(t: Tables) -> list[Stall]:
    out = []
    for chain in _unanswered_backoffs(t):
        gap, idle = _silence_before(t, chain)
        if idle >= EVICTION_MIN_IDLE_S and not chain.syn:
            continue
        s = Stall(chain.flow_id, "peer_unreachable", chain.original_ts,
                  chain.end_ts or t.capture_end, idle, _chain_frames(chain, None), [])
        s.evidence = evidence.unreachable(t.flow_rows[chain.flow_id], chain, gap)
        s.backoff = _backoff_dict(chain)
        s.factors += _chain_factors(chain) + (["syn_unanswered"] if chain.syn else [])
        s.confidence = 0.8 if chain.ended_by == "gave_up" else 0.65
        s.remedy = remedy.peer_unreachable()
        out.append(s)
    return out


def _keepalive_factor(gap) -> str:
    """No probes in the idle before an eviction, or probes too far apart to keep the
    middlebox's state (the fix differs: turn keepalives on, or send them more often)."""
    return "no_keepalive" if gap.keepalives == 0 else "keepalive_too_sparse"


def _chain_factors(chain) -> list[str]:
    out = []
    if chain.ended_by == "gave_up":
        out.append("retries2_exhausted" if chain.model == "linux" else "sender_gave_up")
    if chain.ended_by == "capture_end":
        out.append("capture_ended")
    if chain.ended_by == "rst":
        out.append("rst_during_backoff")
    if chain.capped:
        out.append("rto_capped")
    return out


def _backoff_dict(chain) -> dict:
    keys = ("sender", "seq_raw", "original_frame", "frames", "times_s", "intervals_s", "retransmissions",
            "first_rto_s", "growth", "capped", "ended_by", "model", "retries2",
            "retries2_at_least", "give_up_s", "give_up_ts")
    return {k: _plain(getattr(chain, k)) for k in keys}


def _plain(v):
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating, float)):
        return None if np.isnan(v) else round(float(v), 6)
    return v


def _chain_frames(chain, gap) -> list[int]:
    start = [int(gap.start_frame)] if gap is not None else []
    orig = [] if pd.isna(chain.original_frame) else [int(chain.original_frame)]
    return start + orig + list(chain.frames)

