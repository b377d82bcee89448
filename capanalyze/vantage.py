"""Two vantages of the same connections (client side, server side), also through NAT.

NAT rewrites addresses and ports but usually not sequence numbers, so connections are
matched on their initial sequence numbers (both ISNs when the handshake was seen), and
otherwise on the server port, the start time and the bytes sent. A matched pair then
shows where packets vanished: retransmissions that never reached the other side, an
answer black-holed on the way, a RST the peer never sent.
"""
from __future__ import annotations

import numpy as np
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
    by_timing = _TimingIndex(b.flows)
    rest = a.flows[~a.flows.index.isin(list(matched_a))]
    for fid, port, start, sent in zip(rest.index.tolist(), rest["server_port"].tolist(),
                                      rest["start_ts"].tolist(), rest["bytes_c2s"].tolist()):
        other = by_timing.only(port, start, sent, used)
        if other is not None:
            pairs.append((int(fid), other))
            used.add(other)
    return sorted(pairs)


class _TimingIndex:
    """b's connections by (server port, bytes sent by the client), each with its start:
    a connection without ISNs is matched to the one connection of b with the same port
    and bytes that started within START_TOLERANCE_S and is not matched yet. A lookup
    reads one bucket; filtering all of b per connection took 48 s for 45k connections."""

    def __init__(self, flows: pd.DataFrame):
        self._buckets: dict[tuple, list[tuple[int, float]]] = {}
        for fid, port, start, sent in zip(flows.index.tolist(), flows["server_port"].tolist(),
                                          flows["start_ts"].tolist(), flows["bytes_c2s"].tolist()):
            self._buckets.setdefault((port, sent), []).append((fid, start))

    def only(self, port: int, start: float, sent: int, used: set) -> int | None:
        cand = [fid for fid, t in self._buckets.get((port, sent), ())
                if abs(t - start) < START_TOLERANCE_S and fid not in used]
        return int(cand[0]) if len(cand) == 1 else None


def match_report(analyses: list) -> list[dict] | None:
    """Match the first two vantages, annotate both, and return the matched pairs."""
    if len(analyses) < 2:
        return None
    a, b = analyses[0], analyses[1]
    pairs = match_flows(a, b)
    ends_a, ends_b = _endpoints(a.flows), _endpoints(b.flows)
    out = [_pair(ends_a[fa], ends_b[fb], fa, fb) for fa, fb in pairs]
    view_a, view_b = _View(a), _View(b)
    for fa, fb in pairs:
        _cross_evidence(view_a, view_b, fa, fb)
        _cross_evidence(view_b, view_a, fb, fa)
    for x, col in ((a, 0), (b, 1)):
        x.flows["matched_flow"] = pd.Series({p[col]: p[1 - col] for p in pairs}, dtype="Int64")
    return out


def _endpoints(flows: pd.DataFrame) -> dict:
    return dict(zip(flows.index.tolist(), zip(flows["client"].tolist(), flows["server"].tolist())))


def _pair(ends_a: tuple[str, str], ends_b: tuple[str, str], fa, fb) -> dict:
    (client_a, server_a), (client_b, server_b) = ends_a, ends_b
    nat = client_a != client_b or server_a != server_b
    note = (f"{client_a} -> {server_a} in capture 0 is {client_b} -> {server_b} in capture 1"
            + (" (rewritten by NAT)" if nat else ""))
    return {"flows": [fa, fb], "nat": bool(nat), "note": note}


class _View:
    """One vantage's stalls by connection and its notable packets by (connection,
    direction), so each matched pair reads its own rows instead of filtering the tables."""

    def __init__(self, analysis):
        self.stalls = analysis.stalls
        self.stall_rows: dict[int, list] = {}
        for idx, fid in zip(self.stalls.index.tolist(), self.stalls["flow_id"].tolist()):
            self.stall_rows.setdefault(fid, []).append(idx)
        notable = analysis.notable
        key = notable["flow_id"].to_numpy().astype(np.int64) * 2 + notable["dir"].to_numpy()
        self._order = np.argsort(key, kind="stable")
        self._keys = key[self._order]
        self._seq = notable["seq"].to_numpy()

    def seqs(self, flow_id: int, direction: int) -> np.ndarray:
        """Sequence numbers of the connection's notable packets in one direction."""
        lo, hi = np.searchsorted(self._keys, [2 * flow_id + direction, 2 * flow_id + direction + 1])
        return self._seq[self._order[lo:hi]]


def _cross_evidence(here: _View, there: _View, f_here, f_there):
    """Add to here's stalls what the other vantage shows about the same connection."""
    for idx in here.stall_rows.get(f_here, ()):
        stall = here.stalls.loc[idx]
        notes, factors = [], []
        if stall["backoff"]:
            notes += _vanished(stall["backoff"], there, f_there)
        if stall["class"] == "missing_keepalive":
            black = [k for k in there.stall_rows.get(f_there, ())
                     if there.stalls.at[k, "class"] == "silent_middlebox_eviction"]
            if black:
                factors.append("answer_black_holed")
                notes.append("the other vantage shows the answer black-holed: "
                             + there.stalls.at[black[0], "evidence"][1])
        notes = [n for n in notes if n not in stall["evidence"]]   # matched again: added once
        if notes:
            here.stalls.at[idx, "evidence"] = list(stall["evidence"]) + notes
            here.stalls.at[idx, "factors"] = list(stall["factors"]) + factors
            here.stalls.at[idx, "confidence"] = round(min(0.97, float(stall["confidence"]) + 0.1), 2)


def _vanished(backoff: dict, there: _View, f_there) -> list[str]:
    sender = backoff["sender"]
    direction = 0 if sender == "client" else 1
    raw = backoff.get("seq_raw")
    arrived = int((there.seqs(f_there, direction) == raw).sum()) if raw is not None else 0
    n = backoff["retransmissions"]
    other = "server" if sender == "client" else "client"
    if arrived == 0:
        return [f"the other vantage never saw this segment: the {sender}'s {n} "
                f"retransmissions never reached the {other}"]
    return [f"the other vantage saw {arrived} of the {n + 1} transmissions arrive at the {other}"]
