"""Stage 6: views over one diagnosis. `build()` makes the JSON-able dict (the stable
schema documented in the README); text, Markdown and HTML render that same dict."""
from __future__ import annotations

from .jsonout import build, to_json

__all__ = ["build", "to_json", "render"]


def render(report: dict, fmt: str, analyses=None) -> str:
    if fmt == "json":
        return to_json(report)
    if fmt == "md":
        from .markdown import render_markdown
        return render_markdown(report)
    if fmt == "html":
        from .html import render_html
        return render_html(report, analyses)
    from .text import render_text
    return render_text(report)
