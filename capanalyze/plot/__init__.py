"""Charts for an incident ticket: one connection's time line, several of them, or the
whole capture as a Gantt chart. Matplotlib is imported here only, so the CLI starts
fast. Figures are made without pyplot (no global state, no GUI backend needed); they
show themselves in Jupyter through `_repr_png_`.
"""
from __future__ import annotations

import io
import sys
from pathlib import Path

from matplotlib.figure import Figure

from ..errors import CaptureError

MAX_PANELS = 12
OVERVIEW_ROWS = 200


class Chart(Figure):
    """A matplotlib Figure that Jupyter displays even when pyplot was never imported."""

    def _repr_png_(self) -> bytes:
        buf = io.BytesIO()
        self.savefig(buf, format="png", dpi=100)
        return buf.getvalue()


def new_figure(width: float, height: float) -> Chart:
    return Chart(figsize=(width, height), layout="constrained")


def flow_timeline(analysis, flow_id: int, ax=None) -> Figure:
    """One connection's packets, gaps, backoff and timeouts on a time line."""
    from .flow import draw_flow

    fig = ax.figure if ax is not None else new_figure(13, 5.2)
    ax = ax if ax is not None else fig.add_subplot()
    handles = draw_flow(ax, analysis, int(flow_id))
    _legend(ax, handles)
    return fig


def flows_figure(analysis, flow_ids) -> Figure:
    """One panel per connection (at most MAX_PANELS), for `capanalyze plot`."""
    from .flow import draw_flow

    ids = [int(i) for i in flow_ids]
    shown = ids[:MAX_PANELS]
    if not shown:
        raise CaptureError("no connection to draw")
    fig = new_figure(13, 0.6 + 4.3 * len(shown))
    handles: dict = {}
    for i, (ax, flow_id) in enumerate(zip(fig.subplots(len(shown), 1, squeeze=False)[:, 0], shown)):
        handles.update(draw_flow(ax, analysis, flow_id))
        if i == 0 and len(ids) > len(shown):
            fig.suptitle(f"{len(shown)} of {len(ids)} connections shown; "
                         f"name others with --flow", fontsize=9, color="#aa0000")
    fig.legend(list(handles.values()), list(handles.keys()), loc="outside lower center",
               ncol=min(6, len(handles)), fontsize=8, frameon=False)
    return fig


def overview(analysis, max_rows: int = OVERVIEW_ROWS) -> Figure:
    """Every connection as a bar from start to end; stalls coloured by class."""
    from .gantt import draw_overview
    return draw_overview(analysis, max_rows)


def save(fig: Figure, path) -> None:
    """PNG (150 dpi) or SVG, by the file's extension; the figure is closed after."""
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in ("png", "svg"):
        raise CaptureError(f"{path}: the chart format comes from the extension: .png or .svg")
    try:
        fig.savefig(path, format=fmt, dpi=150 if fmt == "png" else None)
    except OSError as exc:
        raise CaptureError(f"cannot write {path}: {exc.strerror}") from None
    finally:
        _close(fig)


def _close(fig: Figure) -> None:
    # Only pyplot-managed figures need closing; a bare Figure is freed with its last
    # reference, but drop what it holds now in case the caller keeps it.
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is not None:
        plt.close(fig)
    fig.clear()


def _legend(ax, handles: dict) -> None:
    if not handles:
        return
    ax.legend(list(handles.values()), list(handles.keys()), loc="upper center",
              bbox_to_anchor=(0.5, -0.16), ncol=min(6, len(handles)), fontsize=8,
              frameon=False)


__all__ = ["flow_timeline", "flows_figure", "overview", "save", "Chart", "MAX_PANELS", "OVERVIEW_ROWS"]
