"""The whole capture as a Gantt chart: which connections died, and when.

One row per connection (stalled ones first), a grey bar from its first to its last
packet, idle gaps lighter, stalls coloured by class, RSTs marked.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.collections import PolyCollection
from matplotlib.patches import Patch

from ..evidence import counted, utc_text
from . import OVERVIEW_ROWS, style
from .style import plain

SEVERITY = ["silent_middlebox_eviction", "missing_keepalive", "middlebox_cut",
            "peer_unreachable", "app_slowness", "healthy"]


def draw_overview(analysis, max_rows: int = OVERVIEW_ROWS):
    from . import new_figure

    flows = _ordered(analysis.flows)
    shown = flows.iloc[:max_rows]
    n = len(shown)
    per_row = 0.32 if n <= 30 else 0.14
    fig = new_figure(13, min(2.2 + per_row * max(n, 1), 60))
    ax = fig.add_subplot()
    t0 = analysis.info.first_ts if analysis.info.first_ts is not None else 0.0
    row_of = pd.Series(np.arange(n), index=shown.index)
    if n:
        span = max((analysis.info.last_ts or t0) - t0, 1e-3)
        _lifespans(ax, shown, t0, span)
        _gaps(ax, analysis.gaps, shown, row_of, t0, max(analysis.settings.min_stall, 0.005 * span))
        _stalls(ax, analysis.stalls, row_of, t0)
        _rsts(ax, analysis.rsts, row_of, t0)
    _axes(ax, fig, analysis, shown, len(flows), t0)
    return fig


def overview_rows(analysis, max_rows: int = OVERVIEW_ROWS) -> list[int]:
    """The connections the overview draws (their idle gaps, every one, are drawn)."""
    return _ordered(analysis.flows).index[:max_rows].tolist()


def _ordered(flows: pd.DataFrame) -> pd.DataFrame:
    rank = flows["verdict"].map({v: i for i, v in enumerate(SEVERITY)}).fillna(len(SEVERITY) - 1.5)
    return flows.assign(_rank=rank).sort_values(["_rank", "start_ts"], kind="stable")


def _lifespans(ax, shown, t0, span):
    left = shown["start_ts"].to_numpy(float) - t0
    # a 100 ms connection in a 20 min capture still gets a visible sliver
    width = np.maximum(shown["end_ts"].to_numpy(float) - t0 - left, 0.004 * span)
    ax.barh(np.arange(len(shown)), width, left=left, height=0.55, color="#9aa5b1",
            edgecolor="none", gid="lifespans", zorder=1)


def _gaps(ax, gaps, shown, row_of, t0, min_s):
    """Only silences that matter at this scale; a 2 s ping cadence is not idle here.
    After a connection closed, the silence until the capture ends is not drawn."""
    g = gaps[gaps["flow_id"].isin(row_of.index) & (gaps["duration_s"] >= min_s)]
    ends = shown.loc[g["flow_id"], "end_ts"].to_numpy(float)
    closed = (shown.loc[g["flow_id"], "state"] != "open").to_numpy()
    g = g[~(closed & (g["start_ts"].to_numpy(float) >= ends - 1e-9))]
    if len(g):   # one collection: as ~1000 bar patches they took a third of the chart's time
        ax.add_collection(PolyCollection(
            _rectangles(row_of[g["flow_id"]].to_numpy(float), g["start_ts"].to_numpy(float) - t0,
                        g["duration_s"].to_numpy(float), height=0.55),
            facecolors="#e4e8ec", edgecolors="none", gid="gaps", zorder=1.5))


def _rectangles(rows, left, width, height):
    """Corners of horizontal bars centred on `rows`, as PolyCollection vertices."""
    lo, hi, right = rows - height / 2, rows + height / 2, left + width
    return np.stack([np.c_[left, lo], np.c_[left, hi], np.c_[right, hi], np.c_[right, lo]], axis=1)


def _stalls(ax, stalls, row_of, t0):
    s = stalls[stalls["flow_id"].isin(row_of.index)]
    if len(s):
        colors = [style.CLASS_COLORS.get(c, "black") for c in s["class"]]
        ax.barh(row_of[s["flow_id"]].to_numpy(), np.maximum(s["duration_s"].to_numpy(float), 1e-6),
                left=s["start_ts"].to_numpy(float) - t0, height=0.3, color=colors,
                edgecolor="none", gid="stalls", zorder=2)


def _rsts(ax, rsts, row_of, t0):
    r = rsts[rsts["flow_id"].isin(row_of.index)]
    if len(r):
        ax.scatter(r["ts"].to_numpy(float) - t0, row_of[r["flow_id"]].to_numpy(), marker="*",
                   s=70, color=style.KIND["rst"].color, zorder=3, gid="rsts", label="RST")


def _axes(ax, fig, analysis, shown, total, t0):
    n = len(shown)
    ax.set_ylim(max(n, 1) - 0.5, -0.5)   # no connection: one empty row, not a zero range
    small = n > 40
    labels = [plain(f"{fid}: {c} → {s}") if n <= 120 else str(fid)
              for fid, c, s in zip(shown["flow_id"], shown["client"], shown["server"])]
    ax.set_yticks(np.arange(n), labels, fontsize=5 if small else 8)
    for tick, verdict in zip(ax.get_yticklabels(), shown["verdict"]):
        tick.set_color(style.CLASS_COLORS.get(verdict, "black") if verdict != "healthy" else "#333333")
    ax.set_xlabel("seconds since the capture's first packet", fontsize=9)
    ax.grid(axis="x", color="#dddddd", lw=0.6)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    _clock_axis(ax, t0)
    stalled = int((shown["verdict"] != "healthy").sum())
    more = f" (first {n} of {total} shown, stalled first)" if total > n else ""
    ax.set_title(plain(f"{Path(analysis.info.path).name}: {counted(total, 'connection')}, "
                       f"{int((analysis.flows['verdict'] != 'healthy').sum())} stalled{more}"),
                 loc="left", fontsize=11, fontweight="bold")
    _legend(fig, analysis, shown, stalled)


def _clock_axis(ax, t0):
    top = ax.secondary_xaxis("top")
    top.xaxis.set_major_formatter(lambda x, pos: utc_text(t0 + x, "%H:%M:%S"))
    top.set_xlabel("UTC", fontsize=8)
    top.tick_params(labelsize=7)


def _legend(fig, analysis, shown, stalled):
    present = [c for c in SEVERITY[:-1] if c in set(analysis.stalls["class"])]
    handles = [Patch(color="#9aa5b1", label="connection (first to last packet)"),
               Patch(color="#e4e8ec", label="idle gap")]
    handles += [Patch(color=style.CLASS_COLORS[c], label=f"stall: {c}") for c in present]
    if len(analysis.rsts):
        handles.append(_rst_handle())
    fig.legend(handles=handles, loc="outside lower center", ncol=min(4, len(handles)),
               fontsize=8, frameon=False)


def _rst_handle():
    from matplotlib.lines import Line2D
    return Line2D([], [], marker="*", ls="none", color=style.KIND["rst"].color, markersize=9, label="RST")
