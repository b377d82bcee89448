"""Stage 6: views over one diagnosis. `build()` makes the JSON-able dict (the stable
schema documented in the README); text, Markdown and HTML render that same dict."""
from __future__ import annotations

from collections import Counter

import numpy as np

from ..evidence import counted
from .jsonout import Rows, build, json_pieces, to_json

__all__ = ["build", "flow_column", "flows_at", "idle_text", "names_captures", "pieces", "render",
           "table_flows", "to_json"]


def render(report: dict, fmt: str, analyses=None, every_stall: bool = False) -> str | bytes:
    """The report as text, or as UTF-8 bytes for JSON (a 20M-packet capture's report is
    38 MB: not decoded into a second copy just to be encoded again on the way out)."""
    if fmt == "json":
        return to_json(report, as_bytes=True)
    if fmt == "md":
        from .markdown import render_markdown
        return render_markdown(report)
    if fmt == "html":
        from .html import render_html
        return render_html(report, analyses)
    from .text import render_text
    return render_text(report, every_stall=every_stall)


def pieces(report: dict, fmt: str, analyses=None, every_stall: bool = False):
    """The report as pieces to write in turn: a large JSON report is never held whole."""
    if fmt == "json":
        return json_pieces(report)
    return [render(report, fmt, analyses, every_stall)]


def flow_column(flows, name: str) -> list:
    """One field of every connection of a report, without making each row."""
    return flows.column(name) if isinstance(flows, Rows) else [f[name] for f in flows]


def flows_at(flows, positions: list[int]) -> list[dict]:
    """The report's connection rows at these positions, made alone."""
    return flows.at(positions) if isinstance(flows, Rows) else [flows[i] for i in positions]


def idle_text(max_idle_s: float, idle_at_end_s: float, unit: str = " s") -> str:
    """A connection's longest silence for the tables. One that hung until the capture
    ended was silent longest at its end, which no gap between its packets shows: a
    stalled connection listed with "max idle 0.1 s" reads as healthy."""
    if idle_at_end_s > max_idle_s:
        return f"{idle_at_end_s:.1f}{unit} to end"
    return f"{max_idle_s:.1f}{unit}"


def names_captures(rows: list[dict]) -> bool:
    """Whether the rows of a table come from several captures (a report of two vantages:
    each row carries its capture, and flow ids repeat across them)."""
    return bool(rows) and "capture" in rows[0]


def _captures_of(flows) -> np.ndarray:
    """Each connection's capture (0 in a report of one capture, which has no such field)."""
    if isinstance(flows, Rows):
        return flows.captures()
    return np.asarray([f.get("capture", 0) for f in flows], dtype=np.int64)


def table_flows(flows, limit: int) -> tuple[list[dict], str | None]:
    """The rows of a connections table: stalled connections first, then healthy ones,
    each by capture and flow id, at most `limit`; and what the table leaves out, if anything (stalled
    ones too, once there are more of them than rows)."""
    healthy = np.asarray(flow_column(flows, "verdict"), dtype=object) == "healthy"
    shown = np.lexsort((np.asarray(flow_column(flows, "flow_id"), dtype=np.int64),
                        _captures_of(flows), healthy))[:limit]
    rows, hidden = flows_at(flows, shown.tolist()), len(healthy) - len(shown)
    stalled = int((~healthy).sum() - (~healthy[shown]).sum())   # of the hidden
    if not hidden:
        return rows, None
    if not stalled:
        return rows, f"{counted(hidden, 'more healthy connection')} not shown"
    return rows, f"{counted(hidden, 'more connection')} not shown: {stalled} stalled, {hidden - stalled} healthy"


def verdict_counts(verdicts) -> tuple[list[tuple[str, int]], str]:
    """Connections per verdict, most first, and the verdict line: '2 of 2 connections
    stalled', '1 of 1 connection stalled'."""
    counts = Counter(verdicts)
    stalled = sum(n for v, n in counts.items() if v != "healthy")
    return counts.most_common(), f"{stalled} of {counted(sum(counts.values()), 'connection')} stalled"


def records_text(cap: dict, joint: str) -> str:
    """'63 records<joint>63 TCP packets analysed', of a capture in the JSON report."""
    return (f"{counted(int(cap['records']), 'record')}{joint}"
            f"{counted(int(cap['tcp_packets']), 'TCP packet')} analysed")
