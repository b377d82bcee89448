"""Stage 5: derived tables -> stalls, each classified with evidence, culprit and fix.

A stall is a connection that stopped making progress, or was killed, while someone
needed it. The classes (exact strings, used in JSON):

silent_middlebox_eviction  idle, then a segment black-holed (backoff, never ACKed) or
                           answered by a RST the peer did not send
missing_keepalive          a side waited (request ACKed, answer owed) in silence with no
                           keepalives longer than the idle timeouts that evict, and the
                           wait never ended well
app_slowness               the transport was alive but an application was slow: server
                           think time, or a receiver not reading (zero window)
peer_unreachable           unanswered backoff with no idle period before it
middlebox_cut              closed/reset in the middle of steady traffic at an age that
                           matches a proxy/LB timeout
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .. import catalog, evidence
from ..schema import seconds_between
from . import culprits, cuts, lost, waits
from .culprits import survived_idles, survivor_durations
from .model import SEVERITY, Lookups, Options, Rows, Stall, Tables
from .waits import zero_window_episodes

__all__ = ["Options", "Stall", "Tables", "diagnose", "verdicts", "zero_window_episodes", "SEVERITY",
           "GAP_FACTS", "Lookups", "gaps_read", "survived_idles", "survivor_durations"]

# The gap columns that decide whether the diagnosis reads a gap (see gaps_read).
GAP_FACTS = ("flow_id", "end_frame", "end_ts", "duration_s", "keepalives", "ended_by", "fin_before",
             "rst_before", "last_data_from", "unacked_client_bytes")


def gaps_read(facts: pd.DataFrame, lookups: Lookups) -> np.ndarray:
    """The gaps any rule here reads: someone waiting (missing keepalive, slow answers),
    or found by a lookup at a packet (evictions, closes). The bracket needs only the
    durations of the idles that survived (survived_idles). A large capture has 10-100x
    more gaps than that, most of them think time between requests."""
    found = lookups.found(facts["flow_id"].to_numpy(), facts["end_ts"].to_numpy())
    return found | waits.waiting(facts).to_numpy()


def diagnose(t: Tables, opts: Options) -> tuple[pd.DataFrame, dict | None]:
    """All stalls in a capture (one row each) and the capture-wide eviction bracket."""
    stalls: list[Stall] = lost.evictions_by_backoff(t) + lost.evictions_by_rst(t) + lost.unreachable(t)
    bracket = culprits.eviction_bracket(t, stalls)
    learned = bracket["high_s"] if bracket and bracket["consistent"] else None
    timeout = opts.idle_timeout or learned or catalog.smallest_silent_timeout()
    stalls += waits.missing_keepalive(t, timeout, stalls)
    stalls += waits.slow_answers(t, opts, stalls)
    stalls += waits.zero_windows(t, opts)
    stalls += cuts.cuts(t, opts)
    for s in stalls:
        culprits.name_culprits(s, bracket)
        if s.cls in ("silent_middlebox_eviction", "missing_keepalive"):
            s.remedy = culprits.keepalive_remedy(t, s, bracket, opts)
            if not s.culprits and not opts.idle_timeout:
                # Black-holed after an idle no known box times out at: a peer that lost
                # its state (restart, failover) fits as well as a middlebox.
                s.factors.append("no_known_timeout")
                s.confidence -= 0.25
    return _stall_frame(t.flow_rows, stalls), bracket


def _stall_frame(flows: Rows, stalls: list[Stall]) -> pd.DataFrame:
    rows = []
    for s in sorted(stalls, key=lambda s: (s.start_ts, s.flow_id)):
        flow = flows[s.flow_id]
        rows.append({
            "flow_id": s.flow_id, "client": flow.client, "server": flow.server,
            "class": s.cls, "factors": s.factors, "confidence": round(min(s.confidence, 0.97), 2),
            "start_ts": s.start_ts, "end_ts": s.end_ts, "duration_s": seconds_between(s.start_ts, s.end_ts),
            "idle_before_s": s.idle_before_s, "frames": sorted({int(f) for f in s.frames if not pd.isna(f)}),
            "evidence": s.evidence, "backoff": s.backoff, "culprits": s.culprits,
            "remedy": s.remedy, "waiting": s.waiting,
            "wireshark_filter": evidence.wireshark_filter(flow),
        })
    return pd.DataFrame(rows, columns=STALL_COLUMNS)


STALL_COLUMNS = ["flow_id", "client", "server", "class", "factors", "confidence", "start_ts",
                 "end_ts", "duration_s", "idle_before_s", "frames", "evidence", "backoff",
                 "culprits", "remedy", "waiting", "wireshark_filter"]


def verdicts(flows: pd.DataFrame, stalls: pd.DataFrame) -> pd.Series:
    """A flow's verdict: the class of its most severe stall, else 'healthy'."""
    verdict = pd.Series("healthy", index=flows.index, dtype=object)
    if len(stalls):
        rank = stalls["class"].map({c: i for i, c in enumerate(SEVERITY)})
        worst = rank.groupby(stalls["flow_id"]).min()
        verdict.loc[worst.index] = np.asarray(SEVERITY, dtype=object)[worst.to_numpy()]
    return verdict
