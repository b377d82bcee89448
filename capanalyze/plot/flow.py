"""One connection on a time line: who sent what, when it went silent, what gave up.

Two lanes (client->server above, server->client below), x = seconds since the
connection's first packet on a broken axis (see timeaxis). On top of the packets: idle
gaps with their length, the retransmission backoff with its intervals and the
tcp_retries2 give-up time, and the middlebox timeouts that could explain the stall,
measured from where the idle started.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from . import style, timeaxis
from .style import KIND, KINDS, LANE_Y, plain, seconds

DENSE_PACKETS = 4000      # above this, common packets are counted per pixel column
RARE_MARKERS = 2000       # a rare kind with more packets than this is aggregated too
BINS = 700
LABEL_MIN_WIDTH = 0.05    # share of the axis a gap needs before its length is written in it
TOP = 1.78


@dataclass
class FlowData:
    row: pd.Series
    t0: float
    packets: pd.DataFrame
    t: np.ndarray
    kinds: np.ndarray
    gaps: pd.DataFrame
    backoffs: pd.DataFrame
    stalls: pd.DataFrame
    rsts: pd.DataFrame
    zero_windows: pd.DataFrame
    capture_end: float
    complete: bool            # every packet kept (not only the notable ones)


def flow_data(analysis, flow_id: int) -> FlowData:
    if flow_id not in analysis.flows.index:
        raise KeyError(f"no connection with flow_id {flow_id}")
    row = analysis.flows.loc[flow_id]
    table = analysis.packets if analysis.packets is not None else analysis.notable
    packets = table[table["flow_id"].to_numpy() == flow_id]
    t0 = float(row["start_ts"])

    def of(frame):
        return frame[frame["flow_id"] == flow_id] if len(frame) else frame

    end = analysis.info.last_ts if analysis.info.last_ts is not None else float(row["end_ts"])
    return FlowData(row, t0, packets, packets["ts"].to_numpy() - t0, style.packet_kinds(packets),
                    of(analysis.gaps), of(analysis.backoffs), of(analysis.stalls), of(analysis.rsts),
                    of(analysis.zero_windows), end - t0, analysis.packets is not None)


def draw_flow(ax, analysis, flow_id: int) -> dict:
    """Draw one connection into `ax`; returns {legend label: handle}."""
    d = flow_data(analysis, flow_id)
    axis = timeaxis.build(_anchor_times(d))
    ax.set_xscale("function", functions=(axis.forward, axis.inverse))
    ax.set_xlim(*axis.limits)
    ax.set_ylim(-0.5, TOP)
    handles: dict = {}
    _lanes(ax, d)
    _gaps(ax, d, axis, handles)
    _breaks(ax, axis)
    _zero_windows(ax, d, handles)
    _packets(ax, d, axis, handles)
    _backoffs(ax, d, axis, handles)
    _timeouts(ax, d, handles)
    _stall_bands(ax, d, handles)
    _forged_rsts(ax, d)
    _capture_end(ax, d, axis, handles)
    _axis_text(ax, d, analysis, axis)
    return handles


# ------------------------------------------------------------------ the time axis
def _anchor_times(d: FlowData) -> np.ndarray:
    extra = [0.0]
    if len(d.gaps):
        extra += list(d.gaps["end_ts"].astype(float) - d.t0)
    if len(d.backoffs):
        extra += [float(x) - d.t0 for x in d.backoffs["give_up_ts"] if _num(x)]
    if len(d.stalls):
        extra += list(d.stalls["end_ts"].astype(float) - d.t0)
    return np.concatenate([d.t, np.array(extra, dtype=float)])


def _breaks(ax, axis):
    """Cut marks on the x axis where time is squeezed."""
    for a, b in axis.breaks:
        for x in (a, b):
            ax.text(x, 0, "//", transform=ax.get_xaxis_transform(), ha="center", va="center",
                    fontsize=11, fontweight="bold", color="#444444", clip_on=False, zorder=6,
                    bbox=dict(boxstyle="square,pad=0.05", fc="white", ec="none"))


def _axis_text(ax, d, analysis, axis):
    ticks = axis.ticks()
    ax.set_xticks(ticks, [timeaxis.tick_label(v) for v in ticks], fontsize=8)
    ax.tick_params(axis="x", labelrotation=0)
    cut = "; axis cut (//) across long idle gaps, each part linear" if axis.breaks else ""
    ax.set_xlabel(f"seconds since the connection's first packet{cut}", fontsize=9)
    r = d.row
    ax.set_title(plain(f"flow {r['flow_id']}: {r['client']} → {r['server']}  —  {r['verdict']}"),
                 loc="left", fontsize=11, fontweight="bold",
                 color=style.CLASS_COLORS.get(str(r["verdict"]), "black"))
    start = datetime.fromtimestamp(d.t0, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    shown = "" if d.complete else ", notable packets only"
    ax.set_title(plain(f"t = 0 at {start} UTC · {Path(analysis.info.path).name} · "
                       f"{int(r['packets'])} packets{shown}"), loc="right", fontsize=8, color="#444444")


# ------------------------------------------------------------------ background
def _lanes(ax, d):
    for direction, y in LANE_Y.items():
        ax.axhspan(y - 0.4, y + 0.4, color="#f3f3f3" if direction == 0 else "#eaf0f6", zorder=0, lw=0)
    ax.set_yticks([1.0, 0.0], ["client → server", "server → client"], fontsize=9)
    ax.tick_params(axis="y", length=0)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _gaps(ax, d, axis, handles):
    in_chain = _chain_spans(d)
    for g in d.gaps.itertuples(index=False):
        a, b = float(g.start_ts) - d.t0, float(g.end_ts) - d.t0
        patch = ax.axvspan(a, b, color=style.GAP_COLOR, alpha=0.45, lw=0, zorder=0.5)
        handles.setdefault("idle gap", patch)
        if any(lo <= a < hi for lo, hi in in_chain) or axis.width(a, b) < LABEL_MIN_WIDTH:
            continue
        ka = f"{g.keepalives} keepalives" if g.keepalives else "no keepalive"
        ax.text((a + b) / 2 if not axis.breaks else _visual_mid(axis, a, b), 0.5,
                f"idle {seconds(float(g.duration_s))}\n{ka}", ha="center", va="center",
                fontsize=8.5, gid="gap-label", zorder=5,
                bbox=dict(boxstyle="round,pad=0.3", fc="white", ec="#999999", alpha=0.9))


def _visual_mid(axis, a, b):
    v = axis.forward(np.array([a, b]))
    return float(axis.inverse(np.array([(v[0] + v[1]) / 2]))[0])


def _chain_spans(d) -> list[tuple[float, float]]:
    spans = []
    for c in d.backoffs.itertuples(index=False):
        start = float(c.original_ts) if _num(c.original_ts) else None
        if start is not None:
            spans.append((start - d.t0, float(c.end_ts) - d.t0 + 1e-9))
    return spans


def _zero_windows(ax, d, handles):
    for z in d.zero_windows.itertuples(index=False):
        y = LANE_Y[0 if z.side == "client" else 1]
        a, b = float(z.start_ts) - d.t0, float(z.end_ts) - d.t0
        bar = ax.broken_barh([(a, max(b - a, 1e-6))], (y - 0.4, 0.8), facecolors="none",
                             edgecolors=KIND["zero_window"].color, hatch="//", lw=0.6, zorder=1)
        handles.setdefault("window closed (zero window)", bar)


# ------------------------------------------------------------------ packets
def _packets(ax, d, axis, handles):
    dense = len(d.packets) > DENSE_PACKETS
    counted = np.zeros(len(d.packets), dtype=bool)
    for kind in KINDS:
        mask = d.kinds == kind.name
        n = int(mask.sum())
        if n == 0:
            continue
        if dense and (kind.name in ("data", "ack") or n > RARE_MARKERS):
            counted |= mask
            continue
        handles[kind.label] = _scatter(ax, d, mask, kind)
    if counted.any():
        _aggregate(ax, d, axis, counted, handles)


def _scatter(ax, d, mask, kind):
    dirs = d.packets["dir"].to_numpy()[mask]
    y = np.where(dirs == 0, LANE_Y[0], LANE_Y[1]) + kind.row
    face = kind.color if kind.filled else "white"
    edge = kind.color
    return ax.scatter(d.t[mask], y, s=kind.size, marker=kind.marker, facecolors=face,
                      edgecolors=edge, linewidths=1.0 if kind.marker != "|" else 1.4,
                      zorder=3, label=kind.label, gid=f"kind:{kind.name}")


def _aggregate(ax, d, axis, counted, handles):
    """Packets per pixel column, as a filled step in each lane (100k markers read as mud)."""
    lo, hi = axis.knots_v[0], axis.knots_v[-1]
    edges_v = np.linspace(lo, hi, BINS + 1)
    edges_t = axis.inverse(edges_v)
    v = axis.forward(d.t[counted])
    dirs = d.packets["dir"].to_numpy()[counted]
    counts = [np.histogram(v[dirs == k], bins=edges_v)[0] for k in (0, 1)]
    top = max(1, max(int(c.max()) for c in counts))
    for k, c in enumerate(counts):
        base = LANE_Y[k] - 0.38
        art = ax.stairs(base + 0.76 * c / top, edges_t, baseline=base, fill=True, alpha=0.55,
                        color="#555555" if k == 0 else "#4a6f96", zorder=2, gid=f"density:{k}")
        handles.setdefault(f"data + ACK packets per column (max {top})", art)


# ------------------------------------------------------------------ annotations
def _backoffs(ax, d, axis, handles):
    for c in d.backoffs.itertuples(index=False):
        lane = LANE_Y[0 if c.sender == "client" else 1]
        original = float(c.original_ts) - d.t0 if _num(c.original_ts) else None
        times = [original + float(x) for x in c.times_s] if original is not None else []
        if times:
            _interval_labels(ax, axis, [original] + times, lane)
            _chain_caption(ax, c, original, times[-1])
        if _num(c.give_up_ts):
            _give_up(ax, d, c, handles)


def _interval_labels(ax, axis, times, lane):
    for prev, cur in zip(times, times[1:]):
        if axis.width(prev, cur) >= 0.03:
            ax.text(_visual_mid(axis, prev, cur), lane + 0.19, f"{cur - prev:.3g} s", ha="center",
                    va="center", fontsize=7, color=KIND["retransmission"].color, gid="interval")


def _chain_caption(ax, c, start, end):
    how = f"RTO {c.first_rto_s * 1000:.0f} ms, ×{c.growth:.2f} per retry" if _num(c.first_rto_s) else ""
    cap = ", capped at 120 s" if bool(c.capped) else ""
    ends = {"gave_up": "then silence (gave up)", "acked": "then ACKed",
            "capture_end": "still retrying at capture end"}.get(str(c.ended_by), str(c.ended_by))
    ax.annotate("", xy=(end, 1.56), xytext=(start, 1.56),
                arrowprops=dict(arrowstyle="|-|", color=KIND["retransmission"].color, lw=1))
    ax.text(start, 1.66, plain(f"{c.retransmissions} retransmissions by the {c.sender}: {how}{cap}; {ends}"),
            fontsize=8, color=KIND["retransmission"].color, va="center", ha="left", gid="backoff-caption")


def _give_up(ax, d, c, handles):
    x = float(c.give_up_ts) - d.t0
    line = ax.axvline(x, color=style.GIVE_UP_COLOR, ls="--", lw=1.3, zorder=4, gid="give-up")
    handles.setdefault("tcp_retries2 give-up", line)
    n = f"≥{c.retries2}" if bool(c.retries2_at_least) else f"={c.retries2}"
    after = " (after the capture ended)" if x > d.capture_end + 1e-6 else ""
    verb = "gave up" if c.ended_by == "gave_up" else "gives up"
    ax.text(x, 1.38, f"tcp_retries2{n} {verb}\n+{c.give_up_s:.1f} s after the original{after}",
            rotation=90, ha="right", va="top", fontsize=7.5, color=style.GIVE_UP_COLOR,
            gid="give-up-label", zorder=5)


def _timeouts(ax, d, handles):
    """Catalog timeouts that fit the stall, from where the idle (or the connection) began."""
    for _, s in d.stalls.iterrows():
        culprits = s["culprits"] if isinstance(s["culprits"], list) else []
        start = float(s["start_ts"]) - d.t0
        limit = float(s["end_ts"]) - d.t0
        what = "age" if s["class"] == "middlebox_cut" else "idle"
        by_value: dict[float, list[str]] = {}
        for c in culprits:
            by_value.setdefault(float(c["timeout_s"]), []).append(c["name"])
        for value in sorted(by_value)[:3]:
            x = start + value
            if x > limit + 1.0:
                continue
            line = ax.axvline(x, color=style.TIMEOUT_COLOR, ls=":", lw=1.4, zorder=4, gid="timeout")
            handles.setdefault("middlebox timeout (from idle start)", line)
            ax.text(x, 1.38, plain(f"{value:g} s {what}: {style.short_names(by_value[value], 1)}"),
                    rotation=90, ha="left", va="top", fontsize=7, color=style.TIMEOUT_COLOR,
                    gid="timeout-label", zorder=5)


def _stall_bands(ax, d, handles):
    for _, s in d.stalls.iterrows():
        cls = str(s["class"])
        a, b = float(s["start_ts"]) - d.t0, float(s["end_ts"]) - d.t0
        color = style.CLASS_COLORS.get(cls, "black")
        bar = ax.broken_barh([(a, max(b - a, 1e-6))], (1.45, 0.05), facecolors=color, zorder=3)
        handles.setdefault(f"stall: {cls}", bar)


def _forged_rsts(ax, d):
    for r in d.rsts.itertuples(index=False):
        if not bool(r.forged):
            continue
        y = LANE_Y[0 if r.sender == "client" else 1] + KIND["rst"].row
        why = r.forged_reasons[0].split(":")[0] if len(r.forged_reasons) else ""
        ax.annotate(plain(f"forged RST ({why})" if why else "forged RST"), (float(r.ts) - d.t0, y),
                    xytext=(-8, 8), textcoords="offset points", ha="right", fontsize=7.5,
                    color=KIND["rst"].color, gid="forged-rst")


def _capture_end(ax, d, axis, handles):
    lo, hi = axis.limits
    last = float(d.t.max()) if len(d.t) else 0.0
    if d.capture_end <= last + 1e-6 or not lo <= d.capture_end <= hi:
        return
    line = ax.axvline(d.capture_end, color="black", ls="-.", lw=1, zorder=4, gid="capture-end")
    handles.setdefault("capture ends", line)


def _num(x) -> bool:
    return x is not None and not (isinstance(x, float) and np.isnan(x)) and not pd.isna(x)
