"""One connection on a time line: who sent what, when it went silent, what gave up.

Two lanes (client->server above, server->client below), x = seconds since the
connection's first packet on a broken axis (see timeaxis). On top of the packets: idle
gaps with their length, the retransmission backoff with its intervals and the
tcp_retries2 give-up time, and the middlebox timeouts that could explain the stall,
measured from where the idle started.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..evidence import counted, utc_text
from . import annotate, style, timeaxis
from .style import KIND, KINDS, LANE_Y, plain, present, seconds

DENSE_PACKETS = 4000      # above this, common packets are counted per pixel column
RARE_MARKERS = 2000       # a rare kind with more packets than this is aggregated too
BINS = 700
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
    closed: bool = False
    lines: list = None        # x of the vertical lines drawn, for placing labels

    def __post_init__(self):
        self.lines = []


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
    gaps = of(analysis.gaps)
    closed = bool(row.get("rst_from")) or row.get("fin_from") == "both"
    if closed and len(gaps):
        # after both FINs (or a RST) the silence until the capture ends is not a wait
        gaps = gaps[gaps["start_ts"] < float(row["end_ts"]) - 1e-9]
    return FlowData(row, t0, packets, packets["ts"].to_numpy() - t0, style.packet_kinds(packets),
                    gaps, of(analysis.backoffs), of(analysis.stalls), of(analysis.rsts),
                    of(analysis.zero_windows), end - t0, analysis.packets is not None, closed)


def draw_flow(ax, analysis, flow_id: int) -> dict:
    """Draw one connection into `ax`; returns {legend label: handle}."""
    d = flow_data(analysis, flow_id)
    axis = timeaxis.build(_anchor_times(d), d.t, keep=_chain_spans(d))
    ax.set_xscale("function", functions=(axis.forward, axis.inverse))
    ax.set_xlim(*axis.limits)
    ax.set_ylim(-0.5, TOP)
    handles: dict = {}
    _lanes(ax, d)
    annotate.backoffs(ax, d, axis, handles)
    annotate.timeouts(ax, d, axis, handles)
    _gaps(ax, d, axis, handles)
    _breaks(ax, axis)
    _zero_windows(ax, d, handles)
    _packets(ax, d, axis, handles)
    annotate.stall_bands(ax, d, handles)
    annotate.forged_rsts(ax, d)
    annotate.capture_end(ax, d, axis, handles)
    _axis_text(ax, d, analysis, axis)
    return handles


# ------------------------------------------------------------------ the time axis
def _anchor_times(d: FlowData) -> np.ndarray:
    extra = [0.0]
    if len(d.gaps):
        extra += list(d.gaps["end_ts"].astype(float) - d.t0)
    if len(d.backoffs):
        extra += [float(x) - d.t0 for x in d.backoffs["give_up_ts"] if present(x)]
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
    start = utc_text(d.t0, "%Y-%m-%d %H:%M:%S.%f")
    shown = "" if d.complete else ", notable packets only"
    source = f"{Path(analysis.info.path).name} · {counted(int(r['packets']), 'packet')}{shown}"
    left, right, size = _titles(ax, [f"flow {r['flow_id']}: {r['client']} → {r['server']}",
                                     str(r["verdict"])], [f"t = 0 at {start} UTC", source])
    ax.set_title(plain(left), loc="left", color=style.CLASS_COLORS.get(str(r["verdict"]), "black"),
                 **{**TITLE_FONT, "fontsize": size})
    ax.set_title(plain(right), loc="right", color="#444444", **DETAIL_FONT)


TITLE_FONT, DETAIL_FONT = {"fontsize": 11, "fontweight": "bold"}, {"fontsize": 8}
MIN_TITLE_SIZE = 7
LANE_LABELS_PT = 80   # what the layout gives the lane labels left of the axes
TITLE_GAP_PT = 8
HINTING = 1.04        # text as drawn is up to ~3.5 % wider than its outlines measure


def _titles(ax, left: list[str], right: list[str]) -> tuple[str, str, float]:
    """The connection (left) and where its times come from (right), with the title's
    font size: one line each when both fit above the axes; else two lines each, the
    title smaller if it still does not fit. An IPv6 connection's title ran over the
    details and off the figure."""
    room, size = _room(ax), TITLE_FONT["fontsize"]
    for left_joint, right_joint in (("  —  ", " · "), ("\n", "\n")):
        title, details = left_joint.join(left), right_joint.join(right)
        spare = room - TITLE_GAP_PT - HINTING * _width(details, DETAIL_FONT)
        needed = HINTING * _width(title, TITLE_FONT)
        if needed <= spare:
            return title, details, size
    return title, details, max(MIN_TITLE_SIZE, size * spare / needed)


def _width(text: str, font: dict) -> float:
    """Width in points of the widest line of text, from its outlines."""
    return max(_line_width(line, font["fontsize"], font.get("fontweight", "normal"))
               for line in text.split("\n"))


@functools.lru_cache(maxsize=4096)
def _line_width(line: str, size: float, weight: str) -> float:
    # cached: a chatty connection has thousands of gaps labelled "idle 2.0 s" and such
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import text_to_path

    prop = FontProperties(size=size, weight=weight)
    return text_to_path.get_text_width_height_descent(line, prop, ismath=False)[0]


def _room(ax) -> float:
    """Points of width the titles share: the axes' part of the figure, less the lane
    labels, estimated before drawing (the layout places the axes only then)."""
    fig, box = ax.figure, ax.get_position()
    share = box.width / (fig.subplotpars.right - fig.subplotpars.left)
    return share * fig.get_figwidth() * 72 - LANE_LABELS_PT


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
        if any(lo <= a < hi for lo, hi in in_chain):
            continue    # waiting between retries or probes is not idle: the chain says it
        patch = ax.axvspan(a, b, color=style.GAP_COLOR, alpha=0.45, lw=0, zorder=0.5)
        handles.setdefault("idle gap", patch)
        _gap_label(ax, axis, a, b, g, d.lines)


GAP_FONT = {"fontsize": 8.5}
GAP_LABEL_PAD_PT = 10   # the label's rounded box around the text, and air to the next
SHORTEST_GAP_LABEL_PT = 25   # "1.2 s" and its box: narrower gaps are not measured


def _gap_label(ax, axis, a, b, gap, lines) -> None:
    """The gap's length (and keepalives) in its widest stretch free of vertical lines,
    in full when it fits there, else the length alone, else nothing: a label wider
    than its gap ran over the next gap's."""
    spot, free_share = _free_spot(axis, a, b, lines)
    free_pt = free_share * _room(ax)
    if free_pt < SHORTEST_GAP_LABEL_PT:
        return
    length = seconds(float(gap.duration_s))
    ka = counted(gap.keepalives, "keepalive") if gap.keepalives else "no keepalive"
    for text in (f"idle {length}\n{ka}", length):
        if HINTING * _width(text, GAP_FONT) + GAP_LABEL_PAD_PT <= free_pt:
            ax.text(spot, 0.5, text, ha="center", va="center", gid="gap-label", zorder=5,
                    bbox=dict(boxstyle="round,pad=0.3", fc="white", ec="#999999", alpha=0.9),
                    **GAP_FONT)
            return


def _free_spot(axis, a, b, lines) -> tuple[float, float]:
    """The middle of the widest stretch of the gap that no vertical line crosses, and
    that stretch's share of the axis."""
    v = axis.forward(np.array([a, b] + [x for x in lines if a < x < b]))
    cuts = np.sort(v)
    widths = np.diff(cuts)
    i = int(np.argmax(widths))
    return float(axis.inverse(np.array([(cuts[i] + cuts[i + 1]) / 2]))[0]), float(widths[i])


def _chain_spans(d) -> list[tuple[float, float]]:
    """Backoff chains and zero-window episodes: waits that are not idleness."""
    spans = [(float(z.start_ts) - d.t0, float(z.end_ts) - d.t0) for z in d.zero_windows.itertuples()]
    for c in d.backoffs.itertuples(index=False):
        start = float(c.original_ts) if present(c.original_ts) else None
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
    if kind.marker == "|":      # a line marker has no face: colour it directly
        colors = dict(color=kind.color, linewidths=1.4)
    else:
        colors = dict(facecolors=kind.color if kind.filled else "white", edgecolors=kind.color,
                      linewidths=1.0)
    return ax.scatter(d.t[mask], y, s=kind.size, marker=kind.marker, zorder=3,
                      label=kind.label, gid=f"kind:{kind.name}", **colors)


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
