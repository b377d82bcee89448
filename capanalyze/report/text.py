"""Terminal report (rich): the verdict first, then each stall with its evidence."""
from __future__ import annotations

import io
import re
import sys
import textwrap
from collections import Counter

from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table

from ..evidence import clock, counted, duration
from . import (
    flow_column,
    flows_at,
    idle_text,
    names_captures,
    records_text,
    verdict_counts,
)

CLASS_STYLE = {"silent_middlebox_eviction": "bold red", "missing_keepalive": "bold magenta",
               "middlebox_cut": "bold yellow", "peer_unreachable": "bold red",
               "app_slowness": "bold cyan", "healthy": "green"}


# A terminal is read, not searched: past this many stalls of a class, the text report
# names how many it left out (10k stalls took 9 s to lay out and 178k lines to scroll).
DETAIL_PER_CLASS = 20
FLOW_ROWS = 40
WIDTH = 110
# a number stays on the line of its unit ("1080.0 s"), and a frame on that of its number
_UNBROKEN = re.compile(r"(?<=\d) (?=(?:s|ms|min|h|bytes|packets|probes)\b)|(?<=\bframes) (?=\d)|(?<=\bframe) (?=\d)")
_GLUE = "\x00"   # textwrap breaks only at ASCII whitespace


def render_text(report: dict, color: bool | None = None, every_stall: bool = False) -> str:
    color = sys.stdout.isatty() if color is None else color
    console = Console(file=io.StringIO(), force_terminal=color, width=WIDTH,
                      color_system="standard" if color else None, highlight=False)
    for i, cap in enumerate(report["captures"]):
        _capture(console, i, cap)
    verdicts = flow_column(report["flows"], "verdict")
    _verdict(console, verdicts)
    if report.get("eviction_threshold"):
        console.print(_labelled("Eviction threshold:", "bold", report["eviction_threshold"]["text"], "  ")
                      + "\n", soft_wrap=True)
    shown = report["stalls"] if every_stall else _detailed(report["stalls"])
    for stall in shown:
        _stall(console, stall)
    _left_out(console, report["stalls"], shown)
    if report["stalls"]:
        stalled = [k for k, verdict in enumerate(verdicts) if verdict != "healthy"]
        _flows(console, flows_at(report["flows"], stalled[:FLOW_ROWS]), len(stalled))
    return console.file.getvalue()


def _detailed(stalls: list[dict]) -> list[dict]:
    """The first DETAIL_PER_CLASS stalls of each class, in the report's (time) order."""
    seen: Counter = Counter()
    shown = []
    for stall in stalls:
        seen[stall["class"]] += 1
        if seen[stall["class"]] <= DETAIL_PER_CLASS:
            shown.append(stall)
    return shown


def _left_out(console, stalls, shown):
    if len(shown) == len(stalls):
        return
    counts = Counter(s["class"] for s in stalls) - Counter(s["class"] for s in shown)
    parts = ", ".join(f"{n} {c}" for c, n in counts.most_common())
    console.print(f"[bold]{len(stalls) - len(shown)} more stalls not detailed here[/] ({parts}): "
                  f"the first {DETAIL_PER_CLASS} of each class are. --all details every one; "
                  "--format json or md lists them all.\n")


def _capture(console, i, cap):
    span = (f"{clock(cap['first_ts'])}-{clock(cap['last_ts'])} UTC, "
            f"{duration(cap['last_ts'] - cap['first_ts'])}" if cap["first_ts"] else "no packets")
    console.print(_labelled(f"capture {i}:", "bold",
                            f"{cap['path']} ({cap['format']}, {', '.join(cap['linktypes'])}), {span}", "  "),
                  soft_wrap=True)
    skipped = ", ".join(f"{n} {r}" for r, n in sorted(cap["skipped"].items(), key=lambda kv: -kv[1]))
    console.print(wrapped(f"  {records_text(cap, ': ')}"
                          + (f"; not analysed: {skipped}" if skipped else ""), "    "), soft_wrap=True)
    for w in cap["warnings"]:
        console.print(_labelled("  warning:", "yellow", w, "    "), soft_wrap=True)


def _verdict(console, verdicts: list[str]):
    counts, line = verdict_counts(verdicts)
    parts = ", ".join(f"[{CLASS_STYLE.get(v, '')}]{n} {v}[/]" for v, n in counts)
    console.print(f"\n[bold]{line}[/] ({parts or 'none'})\n")


def _stall(console, s):
    style = CLASS_STYLE.get(s["class"], "bold")
    cap = f" (capture {s['capture']})" if "capture" in s else ""
    console.rule(f"[{style}]flow {s['flow_id']}{cap}: {s['class']}[/] ({s['confidence']:.2f})", align="left")
    lines = [wrapped(f"{s['client']} -> {s['server']}   "
                     f"{clock(s['start_ts'])}-{clock(s['end_ts'])} UTC ({duration(s['duration_s'])})"
                     + (f", idle before {duration(s['idle_before_s'])}" if s["idle_before_s"] else ""), "  "),
             wrapped(f"factors: {', '.join(s['factors']) or '-'}", "  ")]
    if s["culprits"]:
        lines.append(wrapped("likely culprit: " + "; ".join(
            f"{c['name']} ({c['timeout_s']:g} s)" for c in s["culprits"][:4]), "  "))
    lines += [wrapped(f"  - {e}", "    ") for e in s["evidence"]]
    lines.append("[bold]fix:[/]")
    lines += [wrapped(f"  {line}", "    ") for line in s["remedy"].splitlines()]
    lines.append(f"[dim]{wrapped('wireshark: ' + s['wireshark_filter'], '  ')}[/]\n")
    # one print per stall: rich's cost is mostly per call (10k stalls: 15 s in ~10 calls each);
    # the lines come wrapped with a hanging indent, which rich's own wrapping does not give
    console.print("\n".join(lines), soft_wrap=True)


def wrapped(text: str, indent: str) -> str:
    """`text` escaped for rich and wrapped at WIDTH, the lines after the first indented
    by `indent`, so each bullet of evidence reads as one."""
    glued = _UNBROKEN.sub(_GLUE, text)
    lines = textwrap.wrap(glued, WIDTH, subsequent_indent=indent, break_long_words=False,
                          break_on_hyphens=False, drop_whitespace=True) or [""]
    return escape("\n".join(lines).replace(_GLUE, " "))


def _labelled(label: str, style: str, text: str, indent: str) -> str:
    """`label text` wrapped as one paragraph, the label in `style` (a constant: escaping
    leaves it as it is)."""
    body = wrapped(f"{label} {text}", indent)
    return f"[{style}]{label}[/]{body[len(label):]}"


def print_whole(console, table) -> None:
    """Print `table` without cutting a cell. rich shortens cells to fit the console
    ("silent_middlebox_evic…", "107…" for 1079.9 s), so a table wider than the console
    is printed on a console of its own width, into the same output."""
    natural = Measurement.get(console, console.options.update_width(10_000), table).maximum
    if natural <= console.width:
        console.print(table)
        return
    Console(file=console.file, width=natural, force_terminal=console.is_terminal,
            color_system=console.color_system, highlight=False).print(table)


def _flows(console, flows: list[dict], stalled: int):
    """The first FLOW_ROWS stalled connections, of `stalled`."""
    table = Table(title="stalled connections", show_lines=False)
    vantages = names_captures(flows)
    for col in ("capture",) * vantages + ("flow", "client", "server", "packets", "state", "max idle", "verdict"):
        table.add_column(col)
    for f in flows:
        table.add_row(*([str(f["capture"])] if vantages else []),
                      str(f["flow_id"]), escape(f["client"]), escape(f["server"]), str(f["packets"]),
                      f["state"], idle_text(f["max_idle_s"], f["idle_at_end_s"]),
                      f"[{CLASS_STYLE.get(f['verdict'], '')}]{f['verdict']}[/]")
    print_whole(console, table)
    if stalled > len(flows):
        console.print(f"({counted(stalled - len(flows), 'more stalled connection')} not shown: "
                      "`capanalyze flows -f csv` lists every connection)")
