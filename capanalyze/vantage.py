"""Two vantages of the same connections (client side, server side), also through NAT.

NAT rewrites addresses and ports but usually not sequence numbers, so connections are
matched on their initial sequence numbers (both ISNs when the handshake was seen), and
otherwise on the server port, the start time and the bytes sent. A matched pair then
shows where packets vanished: retransmissions that never reached the other side, an
answer black-holed on the way, a RST the peer never sent.
"""
from __future__ import annotations

import pandas as pd

from .schema import ACK, SYN

START_TOLERANCE_S = 2.0


def _isns(notable: pd.DataFrame) -> pd.DataFrame:
    syn = notable[(notable["tcp_flags"] & SYN) != 0]
    client = syn[(syn["tcp_flags"] & ACK) == 0].groupby("flow_id")["seq"].first()
    server = syn[(syn["tcp_flags"] & ACK) != 0].groupby("flow_id")["seq"].first()
    return pd.DataFrame({"client_isn": client, "server_isn": server})


def match_flows(a, b) -> list[tuple[int, int]]:
    """Pairs (flow in a, flow in b) that are the same connection."""
    ia, ib = _isns(a.notable), _isns(b.notable)
    pairs, used = [], set()
    by_isn = {isn: fid for fid, isn in ib["client_isn"].dropna().items()}
    for fid, isn in ia["client_isn"].dropna().items():
        other = by_isn.get(isn)
        if other is not None and other not in used:
            pairs.append((int(fid), int(other)))
            used.add(other)
    matched_a = {p[0] for p in pairs}
    for fid, flow in a.flows.iterrows():
        if fid in matched_a:
            continue
        other = _match_by_timing(flow, b.flows, used)
        if other is not None:
            pairs.append((int(fid), other))
            used.add(other)
    return sorted(pairs)


def _match_by_timing(flow, flows_b: pd.DataFrame, used: set):
    cand = flows_b[(flows_b["server_port"] == flow.server_port)
                   & ((flows_b["start_ts"] - flow.start_ts).abs() < START_TOLERANCE_S)
                   & (flows_b["bytes_c2s"] == flow.bytes_c2s)]
    cand = cand[~cand.index.isin(used)]
    return int(cand.index[0]) if len(cand) == 1 else None


def match_report(analyses: list) -> list[dict] | None:
    """Match the first two vantages, annotate both, and return the matched pairs."""
    if len(analyses) < 2:
        return None
    a, b = analyses[0], analyses[1]
    pairs = match_flows(a, b)
    out = []
    for fa, fb in pairs:
        out.append(_pair(a, b, fa, fb))
        _cross_evidence(a, b, fa, fb)
        _cross_evidence(b, a, fb, fa)
    for x, y, col in ((a, b, 0), (b, a, 1)):
        x.flows["matched_flow"] = pd.Series({p[col]: p[1 - col] for p in pairs}, dtype="Int64")
    return out


def _pair(a, b, fa, fb) -> dict:
    ra, rb = a.flows.loc[fa], b.flows.loc[fb]
    nat = ra.client != rb.client or ra.server != rb.server
    note = (f"{ra.client} -> {ra.server} in capture 0 is {rb.client} -> {rb.server} in capture 1"
            + (" (rewritten by NAT)" if nat else ""))
    return {"flows": [fa, fb], "nat": bool(nat), "note": note}


def _cross_evidence(here, there, f_here, f_there):
    """Add to here's stalls what the other vantage shows about the same connection."""
    for idx, stall in here.stalls[here.stalls["flow_id"] == f_here].iterrows():
        notes, factors = [], []
        if stall["backoff"]:
            notes += _vanished(stall["backoff"], there, f_there)
        if stall["class"] == "missing_keepalive":
            black = there.stalls[(there.stalls["flow_id"] == f_there)
                                 & (there.stalls["class"] == "silent_middlebox_eviction")]
            if len(black):
                factors.append("answer_black_holed")
                notes.append("the other vantage shows the answer black-holed: "
                             + black.iloc[0]["evidence"][1])
        if notes:
            here.stalls.at[idx, "evidence"] = list(stall["evidence"]) + notes
            here.stalls.at[idx, "factors"] = list(stall["factors"]) + factors
            here.stalls.at[idx, "confidence"] = round(min(0.97, stall["confidence"] + 0.1), 2)


def _vanished(backoff: dict, there, f_there) -> list[str]:
    sender = backoff["sender"]
    direction = 0 if sender == "client" else 1
    seen = there.notable[(there.notable["flow_id"] == f_there) & (there.notable["dir"] == direction)]
    raw = backoff.get("seq_raw")
    arrived = seen[seen["seq"] == raw] if raw is not None else seen.iloc[0:0]
    n = backoff["retransmissions"]
    other = "server" if sender == "client" else "client"
    if len(arrived) == 0:
        return [f"the other vantage never saw this segment: the {sender}'s {n} "
                f"retransmissions never reached the {other}"]
    return [f"the other vantage saw {len(arrived)} of the {n + 1} transmissions arrive at the {other}"]
