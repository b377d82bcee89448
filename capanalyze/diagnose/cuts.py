"""Middlebox cuts: a connection closed or reset mid-stream at a fixed age, by
something that terminates TCP on the path (proxy, load balancer)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .. import catalog, evidence, remedy
from .model import (HEARTBEAT_MAX_BYTES, ROUND_AGE_TOL_S,
                    STEADY_MAX_GAP_S, Options, Stall, Tables)

CATALOG_AGE_TOL_S = 0.1   # s, plus two RTTs: how far from a known timeout a cut may land
HEARTBEAT_MAX_CV = 0.5    # spread of the server's data intervals around their mean


def _continuous(flow) -> bool:
    """At a known proxy timeout, any steady stream counts, heartbeats or a transfer."""
    return _steady(flow) or flow.server_data_interval_s <= 0.05


def cuts(t: Tables, opts: Options) -> list[Stall]:
    out = []
    candidates = _cut_candidates(t, opts)
    ages = candidates["ts"].to_numpy() - t.flows.loc[candidates["flow_id"].to_numpy(), "start_ts"].to_numpy()
    for pk, age_k in zip(candidates.itertuples(index=False), ages):
        shared = int((abs(ages - age_k) <= 2 * ROUND_AGE_TOL_S).sum()) - 1
        flow = t.flow_rows[pk.flow_id]
        age = pk.ts - flow.start_ts
        fits = catalog.fitting_cut(age, _catalog_tol(flow.first_rtt_s))
        if _idle_close(t, pk) or not (_heartbeats(flow) or (fits and _continuous(flow))):
            continue
        kind = "rst" if pk.rst else "fin"
        side = "server" if pk.dir == 1 else "client"
        s = Stall(int(pk.flow_id), "middlebox_cut", flow.start_ts, pk.ts, None,
                  [int(flow.first_frame), int(pk.frame)],
                  evidence.cut(flow, pk, age, kind, side), ["steady_traffic", f"cut_by_{kind}"],
                  confidence=(0.85 if fits else 0.7 if shared else 0.45) - (0.1 if side == "client" else 0.0),
                  waiting="client" if side == "server" else "server")
        s.culprits = [{"name": m.name, "timeout_s": m.timeout_s} for m in fits]
        s.remedy = remedy.proxy_cut(round(age), [m.name for m in fits])
        out.append(s)
    return out


def _cut_candidates(t: Tables, opts: Options) -> pd.DataFrame:
    """First FIN/RST of each connection, sent by the server side into steady traffic.
    Judged on columns: selecting the closing rows of the tables whole copied every
    column of ~90k notable and flow rows (60 MB at 20M packets) to keep a handful."""
    notable, flow = t.notable, t.flow_rows.column
    closing = np.flatnonzero((notable["fin"] | notable["rst"]).to_numpy())
    ids = notable["flow_id"].to_numpy()[closing]
    first = closing[np.sort(np.unique(ids, return_index=True)[1])]
    ids = notable["flow_id"].to_numpy()[first]
    age = notable["ts"].to_numpy()[first] - flow("start_ts")[ids]
    streamed = flow("packets_s2c")[ids]   # whichever side closed, the server streamed
    rtt = flow("first_rtt_s")[ids]
    keep = (flow("max_idle_s")[ids] <= STEADY_MAX_GAP_S) & (streamed >= 5) & (age >= opts.min_stall)
    tol = np.minimum(ROUND_AGE_TOL_S + 2 * rtt, 0.1)
    round_age = (np.round(age) >= 5) & (np.abs(age - np.round(age)) <= tol)
    cuts = np.array(sorted({m.timeout_s for m in catalog.middleboxes() if m.kind == "closes"}))
    near_catalog = (np.abs(age[:, None] - cuts[None, :]) <= _catalog_tol(rtt)[:, None]).any(axis=1)
    return notable.iloc[first[keep & (round_age | near_catalog)]]


def _catalog_tol(rtt):
    """A proxy's timer fires on time; the age seen here is off by about a round trip
    (the request left one RTT after the SYN)."""
    return np.minimum(CATALOG_AGE_TOL_S + 2 * rtt, 0.5)


def _idle_close(t: Tables, pk) -> bool:
    """A close ending a whole-second silence is an idle timer (e.g. Apache's 5 s
    KeepAliveTimeout on a connection nobody was waiting on), not a cut mid-stream."""
    gap = t.gap_index.before(pk.flow_id, pk.ts, int(pk.frame))
    if gap is None or gap.duration_s < 2:
        return False
    return abs(gap.duration_s - round(gap.duration_s)) <= 2 * ROUND_AGE_TOL_S


def _heartbeats(flow) -> bool:
    """Small server messages at a steady pace (SSE events, pings): what a proxy cuts
    mid-stream. A bulk transfer or bursty request/response traffic does not qualify."""
    return (flow.packets_s2c >= 5
            and flow.bytes_s2c / max(flow.packets_s2c, 1) < HEARTBEAT_MAX_BYTES
            and _steady(flow))


def _steady(flow) -> bool:
    cv, mean = flow.server_data_cv, flow.server_data_interval_s
    return bool(cv == cv and cv <= HEARTBEAT_MAX_CV and mean <= STEADY_MAX_GAP_S)


