"""HTML report: one self-contained file (inline CSS, charts as base64 PNG), the same
content as the Markdown report plus a chart per stalled connection and the overview.

Every string that comes from the capture or the diagnosis goes through `esc`
(html.escape): file names, addresses, evidence, warnings, interface names.
"""
from __future__ import annotations

import base64
import html
import io
import os
import sys
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from ..evidence import clock, duration
from . import (
    flow_column,
    idle_text,
    names_captures,
    records_text,
    table_flows,
    verdict_counts,
)

MAX_CHARTS = 30          # charts are ~60 KB each; past this the report gets heavy
MAX_FLOW_ROWS = 200

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1250px;
     color:#222;line-height:1.45;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em} h2{font-size:1.25em;margin-top:2em;border-bottom:1px solid #ddd}
code,pre{font-family:SFMono-Regular,Consolas,Menlo,monospace;font-size:.9em}
pre{background:#f6f8fa;border:1px solid #e1e4e8;padding:.8em;overflow-x:auto;white-space:pre-wrap}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
th,td{border:1px solid #ddd;padding:.25em .6em;text-align:left} th{background:#f3f3f3}
td.num{text-align:right}
.cls{font-weight:bold;padding:.05em .4em;border-radius:3px;color:#fff}
.silent_middlebox_eviction{background:#d62728}.missing_keepalive{background:#ff7f0e}
.middlebox_cut{background:#9467bd}.peer_unreachable{background:#8c564b}
.app_slowness{background:#1f77b4}.healthy{background:#2ca02c}
.warn{color:#a15c00} .muted{color:#666;font-size:.9em}
img.chart{max-width:100%;border:1px solid #eee;margin:.5em 0}
.stall{margin-bottom:2.5em}
"""


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def render_html(report: dict, analyses=None) -> str:
    charts = _Charts(analyses, report["stalls"])
    parts = ["<h1>capanalyze report</h1>", _captures(report["captures"]), _summary(report)]
    if report.get("eviction_threshold"):
        parts.append(f"<h2>Eviction threshold</h2><p>{esc(report['eviction_threshold']['text'])}</p>")
    parts.append(charts.overviews())
    parts += [_stall(s, charts) for s in report["stalls"]]
    if charts.skipped:
        parts.append(f"<p class='muted'>{charts.skipped} more charts not drawn "
                     f"(limit {MAX_CHARTS}); use <code>capanalyze plot --flow ID</code>.</p>")
    parts.append(_flows(report["flows"]))
    body = "\n".join(p for p in parts if p)
    return ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>capanalyze report</title><style>{CSS}</style></head>\n<body>\n{body}\n"
            f"<p class='muted'>{esc(report.get('tool', 'capanalyze'))} {esc(report.get('version', ''))}</p>"
            "</body></html>\n")


# ------------------------------------------------------------------ sections
def _captures(captures: list[dict]) -> str:
    items = []
    for i, cap in enumerate(captures):
        span = (f"{clock(cap['first_ts'])} to {clock(cap['last_ts'])} UTC "
                f"({duration(cap['last_ts'] - cap['first_ts'])})" if cap["first_ts"] else "empty")
        sub = [f"<li>not analysed: {int(n)} × {esc(reason)}</li>"
               for reason, n in sorted(cap["skipped"].items(), key=lambda kv: -kv[1])]
        sub += [f"<li class='warn'>warning: {esc(w)}</li>" for w in cap["warnings"]]
        items.append(f"<li><b>capture {i}</b>: <code>{esc(cap['path'])}</code> ({esc(cap['format'])}, "
                     f"{esc(', '.join(cap['linktypes']))}), {esc(span)}; {records_text(cap, ', ')}"
                     + (f"<ul>{''.join(sub)}</ul>" if sub else "") + "</li>")
    return f"<ul>{''.join(items)}</ul>"


def _summary(report: dict) -> str:
    counts, line = verdict_counts(flow_column(report["flows"], "verdict"))
    out = f"<h2>Verdict: {line}</h2>"
    stalled = [(v, n) for v, n in counts if v != "healthy"]
    if stalled:
        rows = "".join(f"<tr><td>{_badge(v)}</td><td class='num'>{n}</td></tr>" for v, n in stalled)
        out += f"<table><tr><th>class</th><th>connections</th></tr>{rows}</table>"
    return out


def _stall(s: dict, charts: "_Charts") -> str:
    cap = f"capture {int(s['capture'])}, " if "capture" in s else ""
    idle = f"; idle before: {duration(s['idle_before_s'])}" if s["idle_before_s"] else ""
    facts = [f"{cap}{clock(s['start_ts'])} to {clock(s['end_ts'])} UTC, {duration(s['duration_s'])}{idle}",
             f"factors: {', '.join(s['factors']) or '-'}"]
    if s["culprits"]:
        facts.append("likely culprit: " + "; ".join(f"{c['name']} ({c['timeout_s']:g} s)"
                                                     for c in s["culprits"][:4]))
    evidence = "".join(f"<li>{esc(e)}</li>" for e in s["evidence"])
    frames = ", ".join(str(int(f)) for f in s["frames"][:20])
    return (f"<div class='stall'><h2>Flow {int(s['flow_id'])}: {esc(s['client'])} → {esc(s['server'])}: "
            f"{_badge(s['class'])} <span class='muted'>(confidence {s['confidence']:.2f})</span></h2>"
            f"<ul>{''.join(f'<li>{esc(f)}</li>' for f in facts)}</ul>"
            f"{charts.flow(s.get('capture', 0), int(s['flow_id']))}"
            f"<p><b>Evidence:</b></p><ol>{evidence}</ol>"
            f"<p><b>Fix:</b></p><pre>{esc(s['remedy'])}</pre>"
            f"<p>Wireshark: <code>{esc(s['wireshark_filter'])}</code>, frames {esc(frames)}</p></div>")


def _flows(flows: list[dict]) -> str:
    shown, left_out = table_flows(flows, MAX_FLOW_ROWS)
    vantages = names_captures(shown)
    head = "".join(f"<th>{h}</th>" for h in ("capture",) * vantages + (
        "flow", "client", "server", "packets", "state", "max idle", "keepalives", "retrans", "verdict"))
    rows = "".join(
        "<tr>" + (f"<td class='num'>{int(f['capture'])}</td>" if vantages else "")
        + f"<td class='num'>{int(f['flow_id'])}</td><td>{esc(f['client'])}</td><td>{esc(f['server'])}</td>"
        f"<td class='num'>{int(f['packets'])}</td><td>{esc(f['state'])}</td>"
        f"<td class='num'>{idle_text(f['max_idle_s'], f['idle_at_end_s'])}</td><td class='num'>{int(f['keepalives'])}</td>"
        f"<td class='num'>{int(f['retransmissions'])}</td><td>{_badge(f['verdict'])}</td></tr>"
        for f in shown)
    more = f"<p class='muted'>({esc(left_out)})</p>" if left_out else ""
    return f"<h2>Connections</h2><table><tr>{head}</tr>{rows}</table>{more}"


def _badge(cls) -> str:
    name = esc(cls)
    known = cls in ("silent_middlebox_eviction", "missing_keepalive", "middlebox_cut",
                    "peer_unreachable", "app_slowness", "healthy")
    return f"<span class='cls {name}'>{name}</span>" if known else f"<code>{name}</code>"


# ------------------------------------------------------------------ charts
def charted_flows(report: dict, n_captures: int) -> list[list[int]]:
    """The connections of each capture the report will chart: those whose packets it
    needs (capanalyze diagnose reads them again from the capture)."""
    flows: list[list[int]] = [[] for _ in range(n_captures)]
    for capture, flow_id in _planned(report["stalls"], n_captures)[0]:
        flows[capture].append(flow_id)
    return flows


def _planned(stalls: list[dict], n_captures: int):
    """The (capture, flow) charted, and how many stalls went without a chart (limit)."""
    keys: dict = {}
    skipped = 0
    for s in stalls if n_captures else []:
        key = (s.get("capture", 0), int(s["flow_id"]))
        if key in keys or key[0] >= n_captures:
            continue
        if len(keys) >= MAX_CHARTS:
            skipped += 1
            continue
        keys[key] = None
    return list(keys), skipped


class _Charts:
    """Base64 PNG charts, drawn before the page is laid out: the overview of each
    capture, and each stalled connection once, in report order, at most MAX_CHARTS."""

    def __init__(self, analyses, stalls: list[dict]):
        self.analyses = analyses or []
        keys, self.skipped = _planned(stalls, len(self.analyses))
        jobs = [("overview", i, None) for i in range(len(self.analyses))]
        images = _draw_all(self.analyses, jobs + [("flow", c, f) for c, f in keys])
        self._overviews = images[:len(jobs)]
        self._flows = dict(zip(keys, images[len(jobs):]))

    def flow(self, capture: int, flow_id: int) -> str:
        """The connection's chart, at its first stall only."""
        return self._flows.pop((capture, flow_id), "")

    def overviews(self) -> str:
        return "<h2>Overview</h2>" + "".join(self._overviews) if self._overviews else ""


_JOB_ANALYSES: list = []   # what forked chart workers draw from: inherited, not pickled


def _draw_all(analyses, jobs) -> list[str]:
    """Each chart is 0.1-2 s of matplotlib, so with several, two worker processes
    forked from this one draw them. One by one instead off Linux, on one core, if a
    worker dies, or if this process runs other threads (a Jupyter kernel): a lock one of
    them holds at the fork would stay held in the workers."""
    global _JOB_ANALYSES
    if not jobs:
        return []
    from .. import plot  # noqa: F401  (imported before the fork: the workers inherit it)
    _JOB_ANALYSES = analyses
    try:
        if _can_fork(len(jobs)):
            try:
                return _forked(jobs)
            except (OSError, BrokenProcessPool):
                pass
        return [_draw(job) for job in jobs]
    finally:
        _JOB_ANALYSES = []


def _can_fork(n_jobs: int) -> bool:
    return (sys.platform == "linux" and n_jobs > 1 and threading.active_count() == 1
            and len(os.sched_getaffinity(0)) > 1)


def _forked(jobs) -> list[str]:
    from multiprocessing import get_context
    with ProcessPoolExecutor(2, mp_context=get_context("fork")) as pool:
        return list(pool.map(_draw, jobs))


def _draw(job) -> str:
    from .. import plot
    kind, capture, flow_id = job
    if kind == "overview":
        return _img(plot.overview(_JOB_ANALYSES[capture]), f"overview of capture {capture}")
    return _img(plot.flow_timeline(_JOB_ANALYSES[capture], flow_id), f"time line of flow {flow_id}")


def _img(fig, alt: str) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    fig.clear()
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f"<img class='chart' alt='{esc(alt)}' src='data:image/png;base64,{data}'>"
