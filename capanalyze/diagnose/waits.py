"""Someone waiting: missing keepalive (silent past the timeouts that evict, and it
ended badly), app slowness (server think time, a receiver not reading)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .. import evidence, remedy
from ..schema import seconds_between
from .model import Covered, Options, Stall, Tables, _frames, _int


def waiting(g: pd.DataFrame) -> pd.Series:
    """Gaps during which the client's request was ACKed and its answer owed."""
    open_ = (g["fin_before"] == "") & ~g["rst_before"]
    return open_ & (g["last_data_from"] == "client") & (g["unacked_client_bytes"] == 0)


def _waiting_gaps(t: Tables, min_s: float) -> pd.DataFrame:
    g = t.gaps
    return g[waiting(g) & (g["duration_s"] >= min_s)]


def missing_keepalive(t: Tables, timeout: float, found) -> list[Stall]:
    out, covered = [], Covered(found)
    for gap in _waiting_gaps(t, timeout).itertuples(index=False):
        if gap.keepalives or covered(gap.flow_id, gap.end_ts):
            continue
        ended_badly = gap.ended_by == "capture_end" or (
            gap.ended_by in ("fin", "rst") and gap.end_from == "client")
        if not ended_badly:
            continue
        flow = t.flow_rows[gap.flow_id]
        s = Stall(gap.flow_id, "missing_keepalive", gap.start_ts, gap.end_ts, gap.duration_s,
                  _frames(gap, _int(gap.end_frame)), evidence.missing_keepalive(flow, gap, timeout),
                  ["no_keepalive", "capture_ended" if gap.ended_by == "capture_end" else "waiter_gave_up"],
                  confidence=0.7, waiting="client")
        out.append(s)
    return out


def slow_answers(t: Tables, opts: Options, found) -> list[Stall]:
    """Server think time: the request was ACKed, the answer came (or a proxy gave up)."""
    out, covered = [], Covered(found)
    for gap in _waiting_gaps(t, opts.min_stall).itertuples(index=False):
        if covered(gap.flow_id, gap.end_ts):
            continue
        answered = gap.ended_by == "data_acked" and gap.end_from == "server"
        proxy_gave_up = gap.ended_by in ("fin", "rst") and gap.end_from == "server"
        if not (answered or proxy_gave_up):
            continue
        flow = t.flow_rows[gap.flow_id]
        s = Stall(gap.flow_id, "app_slowness", gap.start_ts, gap.end_ts, gap.duration_s,
                  _frames(gap, _int(gap.end_frame)), evidence.slow_answer(flow, gap),
                  ["server_think_time"], confidence=0.75, waiting="client")
        if gap.keepalives:
            s.factors.append("keepalive_protected")
        if proxy_gave_up:
            s.factors.append("closed_while_waiting")
        s.remedy = remedy.slow_app("server", gap.duration_s)
        out.append(s)
    return out



def zero_window_episodes(notable: pd.DataFrame, capture_end: float) -> pd.DataFrame:
    """Runs of zero-window advertisements per direction, until the window reopens."""
    zero = notable["zero_window"].to_numpy()
    keep = np.flatnonzero(zero | (notable["win"].to_numpy() > 0))
    flow, side = notable["flow_id"].to_numpy()[keep], notable["dir"].to_numpy()[keep]
    frame, ts = notable["frame"].to_numpy()[keep], notable["ts"].to_numpy()[keep]
    order = np.lexsort((frame, side, flow))
    flow, side, frame, ts, z = flow[order], side[order], frame[order], ts[order], zero[keep][order]
    key = flow * 2 + side
    same_key_before = np.r_[False, key[1:] == key[:-1]]
    z_before = np.r_[False, z[:-1]]
    starts = np.flatnonzero(z & ~(same_key_before & z_before))
    ends = np.flatnonzero(~z & same_key_before & z_before)      # first reopen after a run
    # sorted by key: the first reopen after a start is the next end, if of the same key
    nxt = np.searchsorted(ends, starts, side="right")
    end = ends[np.minimum(nxt, len(ends) - 1)] if len(ends) else starts
    reopened = (nxt < len(ends)) & (key[end] == key[starts])
    end_ts = np.where(reopened, ts[end], capture_end)
    return pd.DataFrame({
        "flow_id": flow[starts].astype(np.int64),
        "side": np.array(["client", "server"], dtype=object)[side[starts].astype(np.int64)],
        "start_frame": frame[starts].astype(np.int64), "start_ts": ts[starts],
        "end_frame": np.array([int(f) if r else None for f, r in zip(frame[end], reopened)],
                              dtype=object),
        "end_ts": end_ts, "duration_s": seconds_between(ts[starts], end_ts), "reopened": reopened})


def zero_windows(t: Tables, opts: Options) -> list[Stall]:
    out = []
    episodes = t.zero_windows
    probes = t.notable.loc[t.notable["zero_window_probe"], "flow_id"].value_counts().to_dict()
    for ep in episodes[episodes["duration_s"] >= opts.min_stall].itertuples(index=False):
        frames = [ep.start_frame] + ([] if pd.isna(ep.end_frame) else [int(ep.end_frame)])
        s = Stall(ep.flow_id, "app_slowness", ep.start_ts, ep.end_ts, None, frames,
                  evidence.zero_window(t.flow_rows[ep.flow_id], ep, probes.get(ep.flow_id, 0)),
                  ["zero_window"], confidence=0.85, waiting="server" if ep.side == "client" else "client")
        if not ep.reopened:
            s.factors.append("capture_ended")
        s.remedy = remedy.zero_window(ep.side)
        out.append(s)
    return out
