"""Terminal report (rich): the verdict first, then each stall with its evidence."""
from __future__ import annotations

import io
import sys
from collections import Counter

from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table

from ..evidence import clock, duration
from . import flow_column, flows_at, idle_text

CLASS_STYLE = {"silent_middlebox_eviction": "bold red", "missing_keepalive": "bold magenta",
               "middlebox_cut": "bold yellow", "peer_unreachable": "bold red",
               "app_slowness": "bold cyan", "healthy": "green"}


# A terminal is read, not searched: past this many stalls of a class, the text report
# names how many it left out (10k stalls took 9 s to lay out and 178k lines to scroll).
DETAIL_PER_CLASS = 20
FLOW_ROWS = 40


def render_text(report: dict, color: bool | None = None, every_stall: bool = False) -> str:
    color = sys.stdout.isatty() if color is None else color
    console = Console(file=io.StringIO(), force_terminal=color, width=110,
                      color_system="standard" if color else None, highlight=False)
    for i, cap in enumerate(report["captures"]):
        _capture(console, i, cap)
    verdicts = flow_column(report["flows"], "verdict")
    _verdict(console, verdicts)
    if report.get("eviction_threshold"):
        console.print(f"[bold]Eviction threshold:[/] {escape(report['eviction_threshold']['text'])}\n")
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
    console.print(f"[bold]capture {i}:[/] {escape(cap['path'])} ({escape(cap['format'])}, "
                  f"{escape(', '.join(cap['linktypes']))}), {span}")
    skipped = ", ".join(f"{n} {escape(r)}" for r, n in sorted(cap["skipped"].items(), key=lambda kv: -kv[1]))
    console.print(f"  {cap['records']} records: {cap['tcp_packets']} TCP packets analysed"
                  + (f"; not analysed: {skipped}" if skipped else ""))
    for w in cap["warnings"]:
        console.print(f"  [yellow]warning:[/] {escape(w)}")


def _verdict(console, verdicts: list[str]):
    counts = Counter(verdicts)
    stalled = sum(n for v, n in counts.items() if v != "healthy")
    parts = ", ".join(f"[{CLASS_STYLE.get(v, '')}]{n} {v}[/]" for v, n in counts.most_common())
    console.print(f"\n[bold]{stalled} of {len(verdicts)} connections stalled[/] ({parts or 'none'})\n")


def _stall(console, s):
    style = CLASS_STYLE.get(s["class"], "bold")
    console.rule(f"[{style}]flow {s['flow_id']}: {s['class']}[/] ({s['confidence']:.2f})", align="left")
    lines = [f"{escape(s['client'])} -> {escape(s['server'])}   "
             f"{clock(s['start_ts'])}-{clock(s['end_ts'])} UTC ({duration(s['duration_s'])})"
             + (f", idle before {duration(s['idle_before_s'])}" if s["idle_before_s"] else ""),
             f"factors: {', '.join(s['factors']) or '-'}"]
    if s["culprits"]:
        lines.append("likely culprit: " + "; ".join(
            f"{escape(c['name'])} ({c['timeout_s']:g} s)" for c in s["culprits"][:4]))
    lines += [f"  - {escape(e)}" for e in s["evidence"]]
    lines.append("[bold]fix:[/]")
    lines += [f"  {escape(line)}" for line in s["remedy"].splitlines()]
    lines.append(f"[dim]wireshark: {escape(s['wireshark_filter'])}[/]\n")
    # one print per stall: rich's cost is mostly per call (10k stalls: 15 s in ~10 calls each)
    console.print("\n".join(lines))


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
    for col in ("flow", "client", "server", "packets", "state", "max idle", "verdict"):
        table.add_column(col)
    for f in flows:
        table.add_row(str(f["flow_id"]), escape(f["client"]), escape(f["server"]), str(f["packets"]),
                      f["state"], idle_text(f["max_idle_s"], f["idle_at_end_s"]),
                      f"[{CLASS_STYLE.get(f['verdict'], '')}]{f['verdict']}[/]")
    print_whole(console, table)
    if stalled > len(flows):
        console.print(f"({stalled - len(flows)} more stalled connections not shown: "
                      "`capanalyze flows -f csv` lists every connection)")
