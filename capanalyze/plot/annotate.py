"""Annotations on a flow's time line: the backoff chain and its give-up time, the
middlebox timeouts that fit the stall, the stall itself, forged RSTs, the capture's end.
Every vertical line drawn is recorded in `d.lines` so labels can avoid it."""
from __future__ import annotations


import numpy as np

from ..evidence import offset_text, utc_text
from . import style
from .style import KIND, LANE_Y, plain, present


def backoffs(ax, d, axis, handles):
    for c in d.backoffs.itertuples(index=False):
        lane = LANE_Y[0 if c.sender == "client" else 1]
        original = float(c.original_ts) - d.t0 if present(c.original_ts) else None
        times = [original + float(x) for x in c.times_s] if original is not None else []
        if times:
            _interval_labels(ax, axis, [original] + times, lane)
            _chain_caption(ax, c, original, times[-1])
        if present(c.give_up_ts):
            _give_up(ax, d, c, handles)


def _interval_labels(ax, axis, times, lane):
    for prev, cur in zip(times, times[1:]):
        if axis.width(prev, cur) >= 0.03:
            ax.text(axis.middle(prev, cur), lane + 0.19, f"{cur - prev:.3g} s", ha="center",
                    va="center", fontsize=7, color=KIND["retransmission"].color, gid="interval")


def _chain_caption(ax, c, start, end):
    color = KIND["retransmission"].color
    how = f"RTO {c.first_rto_s * 1000:.0f} ms, ×{c.growth:.2f} per retry" if present(c.first_rto_s) else ""
    cap = ", capped at 120 s" if bool(c.capped) else ""
    ends = {"gave_up": "then silence (gave up)", "acked": "then ACKed",
            "capture_end": "still retrying at capture end"}.get(str(c.ended_by), str(c.ended_by))
    ax.annotate("", xy=(end, 1.54), xytext=(start, 1.54),
                arrowprops=dict(arrowstyle="|-|", color=color, lw=1))
    ax.text(start, 1.71, plain(f"{c.retransmissions} retransmissions by the {c.sender}: {how}{cap}; {ends}"),
            fontsize=8, color=color, va="center", ha="left", gid="backoff-caption")
    # the first retries are milliseconds apart and merge on the axis: list them
    offsets = [offset_text(x) for x in c.times_s]
    shown = offsets if len(offsets) <= 10 else offsets[:9] + ["…", offsets[-1]]
    ax.text(start, 1.625, f"at +{', '.join(shown)} s after the original", fontsize=7, color=color,
            va="center", ha="left", gid="backoff-times")


def _give_up(ax, d, c, handles):
    x = float(c.give_up_ts) - d.t0
    line = ax.axvline(x, color=style.GIVE_UP_COLOR, ls="--", lw=1.3, zorder=4, gid="give-up")
    d.lines.append(x)
    handles.setdefault("tcp_retries2 give-up", line)
    n = f"≥{c.retries2}" if bool(c.retries2_at_least) else f"={c.retries2}"
    after = " (after the capture ended)" if x > d.capture_end + 1e-6 else ""
    verb = "gave up" if c.ended_by == "gave_up" else "gives up"
    when = utc_text(float(c.give_up_ts), "%H:%M:%S")
    _along(ax, x, f"tcp_retries2{n} {verb} at {when}\n+{c.give_up_s:.1f} s after the original{after}",
           "right", fontsize=7.5, color=style.GIVE_UP_COLOR, gid="give-up-label")


LINE_LABEL_GAP_PT = 2.5


def _along(ax, x, text, side, **font):
    """A label written up a vertical line at x, on its `side` ("left": to the right of
    it, as matplotlib aligns): set flush to the line, the dots struck through the tops
    of the letters."""
    gap = LINE_LABEL_GAP_PT if side == "left" else -LINE_LABEL_GAP_PT
    ax.annotate(text, (x, 1.38), xytext=(gap, 0), textcoords="offset points", rotation=90,
                ha=side, va="top", zorder=5, annotation_clip=False, **font)


def timeouts(ax, d, axis, handles):
    """Catalog timeouts that fit the stall, from where the idle (or the connection) began."""
    for _, s in d.stalls.iterrows():
        culprits = s["culprits"] if isinstance(s["culprits"], list) else []
        start = _timer_start(d, s)
        idle = s["idle_before_s"]
        quiet_end = start + float(idle) if present(idle) else float(s["end_ts"]) - d.t0
        what = "age" if s["class"] == "middlebox_cut" else "idle"
        by_value: dict[float, list[str]] = {}
        for c in culprits:
            by_value.setdefault(float(c["timeout_s"]), []).append(c["name"])
        for value in sorted(by_value)[:3]:
            x = start + value
            if x > float(s["end_ts"]) - d.t0 + 1.0:
                continue
            line = ax.axvline(x, color=style.TIMEOUT_COLOR, ls=":", lw=1.4, zorder=4, gid="timeout")
            d.lines.append(x)
            handles.setdefault("middlebox timeout (from idle or connection start)", line)
            _along(ax, x, plain(f"{value:g} s {what}: {style.short_names(by_value[value], 1)}"),
                   _quiet_side(axis, start, quiet_end, x), fontsize=7, color=style.TIMEOUT_COLOR,
                   gid="timeout-label")


def _timer_start(d, s) -> float:
    """Where a middlebox's timer started: the connection's start for a cut by age, else
    the last packet before the stall's idle (a keepalive probe in it restarts the
    timer), in seconds since the chart's zero."""
    idle = d.gaps[d.gaps["start_ts"] == s["start_ts"]] if s["class"] != "middlebox_cut" else d.gaps[:0]
    if len(idle):
        return float(idle["end_ts"].iloc[0] - idle["silence_s"].iloc[0]) - d.t0
    return float(s["start_ts"]) - d.t0


def _quiet_side(axis, start, end, x) -> str:
    """Write a line's label on the side where the flow was silent (no markers there)."""
    v0, v, v1 = axis.forward(np.array([start, x, end]))
    if end - start < 1e-9:
        return "left" if v < 0.75 else "right"
    return "left" if v1 - v >= v - v0 else "right"


def stall_bands(ax, d, handles):
    for _, s in d.stalls.iterrows():
        cls = str(s["class"])
        a, b = float(s["start_ts"]) - d.t0, float(s["end_ts"]) - d.t0
        if cls == "middlebox_cut":
            how = "RST" if "cut_by_rst" in list(s["factors"]) else "FIN"
            ax.annotate(f"{how} from the server side at {b:.2f} s of age,\nin the middle of steady traffic",
                    (b, 0.5), xytext=(-18, 0), textcoords="offset points",
                    ha="right", va="center", fontsize=8, color=style.CLASS_COLORS[cls], gid="cut-label",
                    bbox=dict(boxstyle="round,pad=0.3", fc="white", ec=style.CLASS_COLORS[cls], alpha=0.9))
        color = style.CLASS_COLORS.get(cls, "black")
        bar = ax.broken_barh([(a, max(b - a, 1e-6))], (1.46, 0.03), facecolors=color, zorder=3)
        handles.setdefault(f"stall: {cls}", bar)


def forged_rsts(ax, d):
    for r in d.rsts.itertuples(index=False):
        if not bool(r.forged):
            continue
        y = LANE_Y[0 if r.sender == "client" else 1] + KIND["rst"].row
        why = r.forged_reasons[0].split(":")[0] if len(r.forged_reasons) else ""
        ax.annotate(plain(f"forged RST ({why})" if why else "forged RST"), (float(r.ts) - d.t0, y),
                    xytext=(-8, 8), textcoords="offset points", ha="right", fontsize=7.5,
                    color=KIND["rst"].color, gid="forged-rst")


def capture_end(ax, d, axis, handles):
    lo, hi = axis.limits
    last = float(d.t.max()) if len(d.t) else 0.0
    if d.closed or d.capture_end < last - 1e-9 or not lo <= d.capture_end <= hi:
        return
    give_ups = [float(x) - d.t0 for x in d.backoffs.get("give_up_ts", []) if present(x)]
    if any(axis.width(min(g, d.capture_end), max(g, d.capture_end)) < 0.02 for g in give_ups):
        return      # a line a hair from the give-up line only adds noise
    line = ax.axvline(d.capture_end, color="black", ls="-.", lw=1, zorder=4, gid="capture-end")
    handles.setdefault("capture ends", line)
