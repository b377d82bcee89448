"""Stage 6: views over one diagnosis. `build()` makes the JSON-able dict (the stable
schema documented in the README); text, Markdown and HTML render that same dict."""
from __future__ import annotations

from .jsonout import build, json_pieces, to_json

__all__ = ["build", "to_json", "render", "pieces", "more_connections"]


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


def more_connections(flows: list[dict], shown: list[dict]) -> str:
    """What a connections table that lists stalled ones first left out: past its rows,
    stalled connections too once there are more of them than rows."""
    hidden = len(flows) - len(shown)
    stalled = sum(f["verdict"] != "healthy" for f in flows) - sum(f["verdict"] != "healthy" for f in shown)
    if not stalled:
        return f"{hidden} more healthy connections not shown"
    return f"{hidden} more connections not shown: {stalled} stalled, {hidden - stalled} healthy"
