"""A broken time axis for flows with long idle gaps.

A stall is usually "a few packets, 30 minutes of nothing, a few packets". On a linear
axis both bursts collapse into one pixel each. Here the time line is cut into clusters
of activity separated by breaks (silences longer than a fifth of the flow); each cluster
keeps its own linear scale and each break is squeezed into a fixed share of the width.
The mapping is piecewise linear and monotonic, so it is a matplotlib FuncScale: data
stay in real seconds (an `axvline(350)` lands at 350 s), only the drawing is warped.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BREAK_FRACTION = 0.2     # a silence longer than this share of the flow is cut
MIN_BREAK_S = 5.0        # never cut silences shorter than this
MAX_BREAKS = 3           # more cuts than this no longer read as one story
MIN_TICK_GAP = 0.045     # share of the axis width between two tick labels ("55.995" is ~0.03)


@dataclass
class TimeAxis:
    knots_t: np.ndarray               # real seconds
    knots_v: np.ndarray               # drawing coordinate, 0..1 over the axis
    clusters: list[tuple[float, float]]   # (t0, t1) drawn linearly
    breaks: list[tuple[float, float]]     # (t0, t1) squeezed

    @property
    def limits(self) -> tuple[float, float]:
        return float(self.knots_t[0]), float(self.knots_t[-1])

    def forward(self, t):
        return _interp(t, self.knots_t, self.knots_v)

    def inverse(self, v):
        return _interp(v, self.knots_v, self.knots_t)

    def width(self, t0: float, t1: float) -> float:
        """Share of the axis width between two times."""
        return float(self.forward(np.array([t1]))[0] - self.forward(np.array([t0]))[0])

    def middle(self, t0: float, t1: float) -> float:
        """The time drawn halfway between t0 and t1."""
        v = self.forward(np.array([t0, t1]))
        return float(self.inverse(np.array([(v[0] + v[1]) / 2]))[0])

    def ticks(self) -> list[float]:
        out = []
        for (a, b), (v0, v1) in zip(self.clusters, self._cluster_spans()):
            out += _nice_ticks(a, b, max(1, int(round((v1 - v0) * 9))))
        ticks = sorted(set(out))
        return _spaced(ticks, self.forward(np.array(ticks)))

    def _cluster_spans(self):
        return [tuple(self.forward(np.array([a, b]))) for a, b in self.clusters]


def build(times: np.ndarray, packets: np.ndarray | None = None, keep=()) -> TimeAxis:
    """The axis for these event times (seconds since the connection start). A cluster
    with no packet in it (only, say, the capture's end) gets a narrow slot. Silences
    inside a `keep` span (t0, t1) are never cut: the waits of a backoff or of
    zero-window probes are the story, not dead time."""
    times = np.unique(np.asarray(times, dtype=float))
    times = times[np.isfinite(times)]
    if len(times) == 0:
        times = np.array([0.0, 1.0])
    span = max(float(times[-1] - times[0]), 1e-3)
    steps = np.diff(times)
    threshold = max(BREAK_FRACTION * span, MIN_BREAK_S)
    long = steps > threshold
    for a, b in keep:
        long &= ~((times[:-1] >= a - 1e-9) & (times[1:] <= b + 1e-9))
    cut = np.flatnonzero(long)
    cut = np.sort(cut[np.argsort(steps[cut])[::-1][:MAX_BREAKS]])
    starts = np.concatenate([[0], cut + 1])
    ends = np.concatenate([cut, [len(times) - 1]])
    clusters = [(float(times[s]), float(times[e])) for s, e in zip(starts, ends)]
    pk = np.asarray(packets if packets is not None else times, dtype=float)
    busy = [bool(((pk >= a) & (pk <= b)).any()) for a, b in clusters]
    return _layout(clusters, busy, span, threshold)


def _layout(clusters, busy, span, threshold) -> TimeAxis:
    durations = np.array([b - a for a, b in clusters])
    active = max(durations.sum(), 1e-9)
    # Clusters share the width by how long they last, each with a floor so a 2-second
    # burst before a 30-minute silence is still wide enough to read.
    weights = [(0.35 if b else 0.1) + d / active for d, b in zip(durations, busy)]
    pads = [0.03 * max(d, 1e-3 * span, 1e-4) for d in durations]
    padded = [(a - p, b + p) for (a, b), p in zip(clusters, pads)]
    breaks = [(padded[i][1], padded[i + 1][0]) for i in range(len(padded) - 1)]
    gap_weights = [0.6 + 0.3 * np.log10(max((b - a) / threshold, 1.0)) for a, b in breaks]
    total = sum(weights) + sum(gap_weights)
    knots_t, knots_v, v = [], [], 0.0
    for i, (a, b) in enumerate(padded):
        knots_t += [a, b]
        knots_v += [v, v + weights[i] / total]
        v += (weights[i] + (gap_weights[i] if i < len(breaks) else 0.0)) / total
    return TimeAxis(np.array(knots_t), np.array(knots_v), padded, breaks)


def _spaced(ticks: list[float], drawn: np.ndarray) -> list[float]:
    """The ticks, left to right, leaving out any drawn too close to the one before: a
    narrow cluster (the capture's end alone, say) got two labels printed over each other."""
    kept, last = [], -np.inf
    for t, v in zip(ticks, drawn):
        if v - last >= MIN_TICK_GAP:
            kept.append(t)
            last = v
    return kept


def _interp(x, xp, fp):
    """np.interp with linear extrapolation (matplotlib asks for points off the axis)."""
    x = np.asarray(x, dtype=float)
    flat = x.ravel()
    out = np.interp(flat, xp, fp)
    lo, hi = flat < xp[0], flat > xp[-1]
    slope_lo = (fp[1] - fp[0]) / (xp[1] - xp[0])
    slope_hi = (fp[-1] - fp[-2]) / (xp[-1] - xp[-2])
    out[lo] = fp[0] + (flat[lo] - xp[0]) * slope_lo
    out[hi] = fp[-1] + (flat[hi] - xp[-1]) * slope_hi
    return out.reshape(x.shape)


def _nice_ticks(a: float, b: float, n: int) -> list[float]:
    from matplotlib.ticker import MaxNLocator

    values = MaxNLocator(nbins=n, steps=[1, 2, 2.5, 5, 10]).tick_values(a, b)
    return [float(v) for v in values if a <= v <= b]


def tick_label(value: float, step_hint: float | None = None) -> str:
    """Seconds with just enough decimals."""
    if value == 0:
        return "0"
    for decimals in (0, 1, 2, 3, 4):
        if abs(value - round(value, decimals)) < 1e-9 * max(1.0, abs(value)):
            return f"{value:.{decimals}f}"
    return f"{value:.4g}"
