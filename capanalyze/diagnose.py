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

from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
import pandas as pd

from . import catalog, evidence, remedy

SEVERITY = ["silent_middlebox_eviction", "missing_keepalive", "middlebox_cut",
            "peer_unreachable", "app_slowness"]
EVICTION_MIN_IDLE_S = 15.0   # shorter quiet spells before a black hole are "unreachable"
STEADY_MAX_GAP_S = 5.0       # heartbeat cadence that counts as steady traffic
ROUND_AGE_TOL_S = 0.05     # timers firing at whole seconds land within this (+ RTTs)
HEARTBEAT_MAX_BYTES = 300  # mean server payload per packet of a heartbeat stream


@dataclass
class Options:
    idle_timeout: float | None = None   # the user's known middlebox idle timeout
    min_stall: float = 5.0              # shorter waits are not stalls


@dataclass
class Stall:
    flow_id: int
    cls: str
    start_ts: float
    end_ts: float
    idle_before_s: float | None
    frames: list[int]
    evidence: list[str]
    factors: list[str] = field(default_factory=list)
    confidence: float = 0.5
    backoff: dict | None = None
    culprits: list[dict] = field(default_factory=list)
    remedy: str = ""
    waiting: str | None = None


@dataclass
class Tables:
    flows: pd.DataFrame
    gaps: pd.DataFrame
    backoffs: pd.DataFrame
    rsts: pd.DataFrame
    notable: pd.DataFrame
    capture_end: float
    zero_windows: pd.DataFrame

    def __post_init__(self):
        self.gap_index = GapIndex(self.gaps)
        self.flow_rows = Rows(self.flows)   # flows are indexed by flow_id = position


def diagnose(t: Tables, opts: Options) -> tuple[pd.DataFrame, dict | None]:
    """All stalls in a capture (one row each) and the capture-wide eviction bracket."""
    stalls: list[Stall] = []
    for finder in (_evictions_by_backoff, _evictions_by_rst, _unreachable):
        stalls += finder(t, opts)
    bracket = eviction_bracket(t, stalls)
    timeout = opts.idle_timeout or (bracket and bracket["high_s"]) or catalog.smallest_silent_timeout()
    stalls += _missing_keepalive(t, opts, timeout, stalls)
    stalls += _slow_answers(t, opts, timeout, stalls)
    stalls += _zero_windows(t, opts)
    stalls += _cuts(t, opts)
    for s in stalls:
        _name_culprits(s, bracket)
        if s.cls in ("silent_middlebox_eviction", "missing_keepalive"):
            s.remedy = _keepalive_remedy(t, s, bracket, opts)
            if not s.culprits and not opts.idle_timeout:
                # Black-holed after an idle no known box times out at: a peer that lost
                # its state (restart, failover) fits as well as a middlebox.
                s.factors.append("no_known_timeout")
                s.confidence -= 0.25
    return _stall_frame(t.flow_rows, stalls), bracket


# ------------------------------------------------------------ eviction
class Rows:
    """Row k of a table as an object with attribute access, from numpy columns:
    microseconds per row where pandas' .loc/.iloc take a millisecond."""

    def __init__(self, table: pd.DataFrame):
        self.columns = {name: table[name].to_numpy() for name in table.columns}

    def __getitem__(self, k: int) -> SimpleNamespace:
        return SimpleNamespace(**{name: col[k] for name, col in self.columns.items()})


class GapIndex:
    """Find the idle gap that ended at a packet, without a pandas query per lookup."""

    def __init__(self, gaps: pd.DataFrame):
        self.rows = Rows(gaps)
        self.flow = gaps["flow_id"].to_numpy()
        self.end_ts = gaps["end_ts"].to_numpy()
        self.end_frame = gaps["end_frame"].fillna(0).to_numpy(dtype=np.int64)

    def before(self, flow_id: int, ts: float, frame: int | None):
        lo, hi = np.searchsorted(self.flow, [flow_id, flow_id + 1])
        ends = self.end_ts[lo:hi]
        if frame is not None:
            exact = np.flatnonzero(self.end_frame[lo:hi] == frame)
            if len(exact):
                return self.row(lo + exact[-1])
        near = np.flatnonzero((ends <= ts + 1e-6) & (ends >= ts - 1.0))
        return self.row(lo + near[-1]) if len(near) else None

    def row(self, k: int):
        return self.rows[k]


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


def _evictions_by_backoff(t: Tables, opts: Options) -> list[Stall]:
    out = []
    for chain in _unanswered_backoffs(t):
        gap = t.gap_index.before(chain.flow_id, chain.original_ts, _int(chain.original_frame))
        idle = gap.duration_s if gap is not None else 0.0
        if idle < EVICTION_MIN_IDLE_S or chain.syn:
            continue
        s = Stall(chain.flow_id, "silent_middlebox_eviction", gap.start_ts,
                  chain.end_ts or t.capture_end, idle,
                  _chain_frames(chain, gap), [], ["no_keepalive"] if gap.keepalives == 0 else [])
        s.evidence = evidence.eviction_by_backoff(t.flow_rows[chain.flow_id], gap, chain)
        s.backoff = _backoff_dict(chain)
        s.factors += _chain_factors(chain)
        s.confidence = 0.75 + (0.15 if chain.ended_by == "gave_up" else 0.05)
        out.append(s)
    return out


def _evictions_by_rst(t: Tables, opts: Options) -> list[Stall]:
    out = []
    for rst in t.rsts.itertuples(index=False):
        answered_idle = rst.trigger_idle_s >= EVICTION_MIN_IDLE_S
        on_idle = t.gap_index.before(rst.flow_id, rst.ts, int(rst.frame)) if rst.forged else None
        if on_idle is not None and on_idle.duration_s < EVICTION_MIN_IDLE_S:
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
    idle = gap.duration_s if gap is not None else rst.trigger_idle_s
    start = gap.start_ts if gap is not None else rst.ts - idle
    s = Stall(rst.flow_id, "silent_middlebox_eviction", start, rst.ts, idle, frames, [], factors)
    s.evidence = evidence.eviction_by_rst(t.flow_rows[rst.flow_id], gap, rst, on_idle is not None)
    if rst.forged:
        s.factors.append("forged_rst")
    if rst.peer_kept_sending:
        s.factors.append("unanswered_rst")
    if gap is not None and gap.keepalives == 0:
        s.factors.append("no_keepalive")
    s.confidence = 0.9 if rst.forged else 0.6
    return s


def _unreachable(t: Tables, opts: Options) -> list[Stall]:
    out = []
    for chain in _unanswered_backoffs(t):
        gap = t.gap_index.before(chain.flow_id, chain.original_ts, _int(chain.original_frame))
        idle = gap.duration_s if gap is not None else 0.0
        if idle >= EVICTION_MIN_IDLE_S and not chain.syn:
            continue
        s = Stall(chain.flow_id, "peer_unreachable", chain.original_ts,
                  chain.end_ts or t.capture_end, idle, _chain_frames(chain, None), [])
        s.evidence = evidence.unreachable(t.flow_rows[chain.flow_id], chain)
        s.backoff = _backoff_dict(chain)
        s.factors += _chain_factors(chain) + (["syn_unanswered"] if chain.syn else [])
        s.confidence = 0.8 if chain.ended_by == "gave_up" else 0.65
        s.remedy = remedy.peer_unreachable()
        out.append(s)
    return out


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


def _frames(gap, *frames) -> list[int]:
    out = [int(gap.start_frame)] if gap is not None else []
    return out + [f for f in frames if f and f > 0]


# ------------------------------------------------------------ waits
def _waiting_gaps(t: Tables, min_s: float) -> pd.DataFrame:
    """Gaps during which the client's request was ACKed and its answer owed."""
    g = t.gaps
    open_ = (g["fin_before"] == "") & ~g["rst_before"]
    return g[open_ & (g["last_data_from"] == "client") & (g["unacked_client_bytes"] == 0)
             & (g["duration_s"] >= min_s)]


def _covered(stalls: list[Stall], flow_id: int, ts: float) -> bool:
    return any(s.flow_id == flow_id and s.start_ts - 1 <= ts <= s.end_ts + 1 for s in stalls)


def _missing_keepalive(t: Tables, opts: Options, timeout: float, found) -> list[Stall]:
    out = []
    for gap in _waiting_gaps(t, timeout).itertuples(index=False):
        if gap.keepalives or _covered(found, gap.flow_id, gap.end_ts):
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


def _slow_answers(t: Tables, opts: Options, timeout: float, found) -> list[Stall]:
    """Server think time: the request was ACKed, the answer came (or a proxy gave up)."""
    out = []
    for gap in _waiting_gaps(t, opts.min_stall).itertuples(index=False):
        if _covered(found, gap.flow_id, gap.end_ts):
            continue
        answered = gap.ended_by == "data_acked" and gap.end_from == "server"
        proxy_gave_up = gap.ended_by in ("fin", "rst") and gap.end_from == "server"
        if not (answered or proxy_gave_up):
            continue
        flow = t.flow_rows[gap.flow_id]
        s = Stall(gap.flow_id, "app_slowness", gap.start_ts, gap.end_ts, gap.duration_s,
                  _frames(gap, _int(gap.end_frame)), evidence.slow_answer(flow, gap, timeout),
                  ["server_think_time"], confidence=0.75, waiting="client")
        if gap.keepalives:
            s.factors.append("keepalive_protected")
        if proxy_gave_up:
            s.factors.append("closed_while_waiting")
        s.remedy = remedy.slow_app("server", gap.duration_s)
        out.append(s)
    return out


def _int(v):
    return None if pd.isna(v) else int(v)


# ------------------------------------------------------------ zero window
def zero_window_episodes(notable: pd.DataFrame, capture_end: float) -> pd.DataFrame:
    """Runs of zero-window advertisements per direction, until the window reopens."""
    zero = notable["zero_window"].to_numpy()
    reopen = ~zero & (notable["win"].to_numpy() > 0)
    rows = notable[zero | reopen]
    order = np.lexsort((rows["frame"].to_numpy(), rows["dir"].to_numpy(), rows["flow_id"].to_numpy()))
    rows = rows.iloc[order]
    key = rows["flow_id"].to_numpy() * 2 + rows["dir"].to_numpy()
    z = rows["zero_window"].to_numpy()
    same_key_before = np.r_[False, key[1:] == key[:-1]]
    z_before = np.r_[False, z[:-1]]
    starts = np.flatnonzero(z & ~(same_key_before & z_before))
    ends = np.flatnonzero(~z & same_key_before & z_before)      # first reopen after a run
    end_at = {}
    for e in ends:
        end_at[key[e]] = end_at.get(key[e], []) + [e]
    out = []
    for i in starts:
        later = [e for e in end_at.get(key[i], []) if e > i]
        out.append(_episode(rows, i, later[0] if later else None, capture_end))
    return pd.DataFrame(out, columns=["flow_id", "side", "start_frame", "start_ts",
                                      "end_frame", "end_ts", "duration_s", "reopened"])


def _episode(rows, start, end, capture_end):
    start_ts = float(rows["ts"].iloc[start])
    end_ts = float(rows["ts"].iloc[end]) if end is not None else capture_end
    return {"flow_id": int(rows["flow_id"].iloc[start]),
            "side": ["client", "server"][int(rows["dir"].iloc[start])],
            "start_frame": int(rows["frame"].iloc[start]), "start_ts": start_ts,
            "end_frame": int(rows["frame"].iloc[end]) if end is not None else None,
            "end_ts": end_ts, "duration_s": end_ts - start_ts, "reopened": end is not None}


def _zero_windows(t: Tables, opts: Options) -> list[Stall]:
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


# ------------------------------------------------------------ proxy cuts
def _cuts(t: Tables, opts: Options) -> list[Stall]:
    out = []
    for pk in _cut_candidates(t, opts).itertuples(index=False):
        flow = t.flow_rows[pk.flow_id]
        age = pk.ts - flow.start_ts
        fits = catalog.fitting_cut(age)
        if _idle_close(t, pk) or not (fits or _heartbeats(flow)):
            continue
        kind = "rst" if pk.rst else "fin"
        side = "server" if pk.dir == 1 else "client"
        s = Stall(int(pk.flow_id), "middlebox_cut", flow.start_ts, pk.ts, None,
                  [int(flow.first_frame), int(pk.frame)],
                  evidence.cut(flow, pk, age, kind, side), ["steady_traffic", f"cut_by_{kind}"],
                  confidence=(0.85 if fits else 0.6) - (0.1 if side == "client" else 0.0),
                  waiting="client" if side == "server" else "server")
        s.culprits = [{"name": m.name, "timeout_s": m.timeout_s} for m in fits]
        s.remedy = remedy.proxy_cut(round(age), [m.name for m in fits])
        out.append(s)
    return out


def _cut_candidates(t: Tables, opts: Options) -> pd.DataFrame:
    """First FIN/RST of each connection, sent by the server side into steady traffic."""
    closes = t.notable[t.notable["fin"] | t.notable["rst"]]
    first = closes.groupby("flow_id", sort=False).head(1)
    flows = t.flows.loc[first["flow_id"].to_numpy()]
    age = first["ts"].to_numpy() - flows["start_ts"].to_numpy()
    streamed = flows["packets_s2c"].to_numpy()   # whichever side closed, the server streamed
    keep = ((flows["max_idle_s"].to_numpy() <= STEADY_MAX_GAP_S) & (streamed >= 5)
            & (age >= opts.min_stall))
    tol = np.clip(2 * flows["first_rtt_s"].to_numpy(), ROUND_AGE_TOL_S, 2 * ROUND_AGE_TOL_S)
    round_age = (np.round(age) >= 5) & (np.abs(age - np.round(age)) <= tol)
    cuts = np.array(sorted({m.timeout_s for m in catalog.middleboxes() if m.kind == "closes"}))
    near_catalog = (np.abs(age[:, None] - cuts[None, :])
                    <= np.maximum(0.5, 0.02 * age)[:, None]).any(axis=1)
    return first[keep & (round_age | near_catalog)]


def _idle_close(t: Tables, pk) -> bool:
    """A close ending a whole-second silence is an idle timer (e.g. Apache's 5 s
    KeepAliveTimeout on a connection nobody was waiting on), not a cut mid-stream."""
    gap = t.gap_index.before(pk.flow_id, pk.ts, int(pk.frame))
    if gap is None or gap.duration_s < 2:
        return False
    return abs(gap.duration_s - round(gap.duration_s)) <= 2 * ROUND_AGE_TOL_S


def _heartbeats(flow) -> bool:
    """Small, frequent server messages (SSE events, pings), not a bulk transfer that a
    user aborted: needed when the age matches no known proxy timeout."""
    return flow.packets_s2c >= 5 and flow.bytes_s2c / max(flow.packets_s2c, 1) < HEARTBEAT_MAX_BYTES


# ------------------------------------------------------------ culprits and bracket
def eviction_bracket(t: Tables, stalls: list[Stall]) -> dict | None:
    """Largest idle that survived and smallest that was evicted bracket the timeout."""
    evicted = [s.idle_before_s for s in stalls if s.cls == "silent_middlebox_eviction"]
    if not evicted:
        return None
    high = min(evicted)
    g = t.gaps
    survived = g[(g["keepalives"] == 0) & g["ended_by"].isin(["data_acked", "ack", "fin"])
                 & (g["duration_s"] < high)]
    low = float(survived["duration_s"].max()) if len(survived) else 0.0
    matches = [m.name for m in catalog.fitting_idle(high, low)]
    return {"low_s": round(low, 3), "high_s": round(high, 3), "matches": matches,
            "text": evidence.bracket_text(low, high, matches)}


def _name_culprits(s: Stall, bracket: dict | None):
    """Silent timeouts the idle fits; shortest first: with nothing to tell them apart,
    the box with the shortest timer on the path is the one that fires."""
    if s.culprits or s.cls not in ("silent_middlebox_eviction", "missing_keepalive"):
        return
    low = bracket["low_s"] if bracket else 0.0
    idle = s.idle_before_s or 0.0
    if bracket:  # every eviction in the capture is the same box: the bracket bounds it
        idle = min(idle, bracket["high_s"])
    fits = sorted(catalog.fitting_idle(idle, low), key=lambda m: m.timeout_s)
    s.culprits = [{"name": m.name, "timeout_s": m.timeout_s} for m in fits]


def _keepalive_remedy(t: Tables, s: Stall, bracket: dict | None, opts: Options) -> str:
    """Keepalive safely below every timeout that may be at work: below the longest
    idle that survived (the timeout is above it), else below the shortest culprit."""
    if opts.idle_timeout:
        timeout = opts.idle_timeout
    elif bracket and bracket["low_s"] > 0:
        timeout = bracket["low_s"]
    elif s.culprits:
        timeout = min(c["timeout_s"] for c in s.culprits)
    else:
        timeout = s.idle_before_s or catalog.smallest_silent_timeout()
    port = int(t.flow_rows[s.flow_id].server_port)
    text = remedy.keepalive(timeout, s.waiting or "client", port)
    if s.backoff:
        text += "\n" + remedy.fail_fast(s.backoff.get("give_up_s"))
    return text


def _stall_frame(flows: Rows, stalls: list[Stall]) -> pd.DataFrame:
    rows = []
    for s in sorted(stalls, key=lambda s: (s.start_ts, s.flow_id)):
        flow = flows[s.flow_id]
        rows.append({
            "flow_id": s.flow_id, "client": flow.client, "server": flow.server,
            "class": s.cls, "factors": s.factors, "confidence": round(min(s.confidence, 0.97), 2),
            "start_ts": s.start_ts, "end_ts": s.end_ts, "duration_s": s.end_ts - s.start_ts,
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
