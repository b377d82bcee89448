"""Markdown report: pasteable into an incident ticket. Capture strings are escaped."""
from __future__ import annotations

import re

from ..evidence import clock, duration
from . import (
    flow_column,
    idle_text,
    names_captures,
    records_text,
    table_flows,
    verdict_counts,
)

# Enough to stop emphasis, links, tables, code spans and raw HTML from capture strings.
_MD_SPECIAL = str.maketrans({c: "\\" + c for c in "\\`*_[]|"})


def esc(value) -> str:
    """Escape a capture-derived string for Markdown (and any HTML it is rendered to)."""
    text = str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace("\n", " ").replace("\r", " ").translate(_MD_SPECIAL)


def code(value) -> str:
    """A code span holding `value` as it is. Backslash escapes and entities are not read
    inside a code span (CommonMark 6.1), so esc() showed its backslashes there
    ("sample\\_pcaps"); the fence is one backtick longer than any run of them inside."""
    text = str(value).replace("\n", " ").replace("\r", " ")
    fence = "`" * (max(map(len, re.findall("`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def render_markdown(report: dict) -> str:
    out = ["# capanalyze report", ""]
    out += _captures(report["captures"])
    out += _summary(report)
    if report.get("eviction_threshold"):
        out += ["## Eviction threshold", "", esc(report["eviction_threshold"]["text"]), ""]
    for stall in report["stalls"]:
        out += _stall(stall)
    out += _flows(report["flows"])
    return "\n".join(out).rstrip() + "\n"


def _captures(captures: list[dict]) -> list[str]:
    out = []
    for i, cap in enumerate(captures):
        span = (f"{clock(cap['first_ts'])} to {clock(cap['last_ts'])} UTC "
                f"({duration(cap['last_ts'] - cap['first_ts'])})" if cap["first_ts"] else "empty")
        out.append(f"- **capture {i}**: {code(cap['path'])} ({esc(cap['format'])}, "
                   f"{esc(', '.join(cap['linktypes']))}), {span}; {records_text(cap, ', ')}")
        for reason, n in sorted(cap["skipped"].items(), key=lambda kv: -kv[1]):
            out.append(f"  - not analysed: {n} × {esc(reason)}")
        for w in cap["warnings"]:
            out.append(f"  - warning: {esc(w)}")
    return out + [""]


def _summary(report: dict) -> list[str]:
    counts, line = verdict_counts(flow_column(report["flows"], "verdict"))
    out = [f"## Verdict: {line}", ""]
    stalled = [(v, n) for v, n in counts if v != "healthy"]
    if stalled:
        out += ["| class | connections |", "|---|---|"]
        out += [f"| {v} | {n} |" for v, n in stalled]
        out.append("")
    return out


def _stall(s: dict) -> list[str]:
    cap = f"capture {s['capture']}, " if "capture" in s else ""
    out = [f"## Flow {s['flow_id']}: {esc(s['client'])} → {esc(s['server'])}: "
           f"`{s['class']}` (confidence {s['confidence']:.2f})", "",
           f"- {cap}{clock(s['start_ts'])} to {clock(s['end_ts'])} UTC, {duration(s['duration_s'])}"
           + (f"; idle before: {duration(s['idle_before_s'])}" if s["idle_before_s"] else ""),
           f"- factors: {', '.join(s['factors']) or '-'}"]
    if s["culprits"]:
        names = "; ".join(f"{esc(c['name'])} ({c['timeout_s']:g} s)" for c in s["culprits"][:4])
        out.append(f"- likely culprit: {names}")
    out += ["", "Evidence:", ""] + [f"{i}. {esc(e)}" for i, e in enumerate(s["evidence"], 1)]
    out += ["", "Fix:", "", "```", s["remedy"], "```", "",
            f"Wireshark: {code(s['wireshark_filter'])}, frames {', '.join(map(str, s['frames'][:20]))}", ""]
    return out


def _flows(flows: list[dict]) -> list[str]:
    shown, left_out = table_flows(flows, 50)
    vantages = names_captures(shown)
    out = ["## Connections", "", "| capture " * vantages
           + "| flow | client | server | packets | state | max idle | keepalives | retrans | verdict |",
           "|---" * vantages + "|---|---|---|---|---|---|---|---|---|"]
    for f in shown:
        out.append((f"| {f['capture']} " if vantages else "")
                   + f"| {f['flow_id']} | {esc(f['client'])} | {esc(f['server'])} | {f['packets']} | "
                   f"{f['state']} | {idle_text(f['max_idle_s'], f['idle_at_end_s'])} | {f['keepalives']} | "
                   f"{f['retransmissions']} | {f['verdict']} |")
    if left_out:
        out.append(f"\n({left_out})")
    return out + [""]
