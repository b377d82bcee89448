"""The analysis commands: diagnose, flows, packets, plot (registered on cli.app)."""
from __future__ import annotations

import sys
from enum import Enum
from functools import partial
from importlib import resources
from pathlib import Path
from typing import List, Optional

import typer

from .cli import app, user_errors, write_output
from .errors import CaptureError

DEFAULT_CAPTURE = "data/demo.pcap"
CLASSES = ("silent_middlebox_eviction", "missing_keepalive", "app_slowness",
           "peer_unreachable", "middlebox_cut")


class ReportFormat(str, Enum):
    text = "text"
    md = "md"
    json = "json"
    html = "html"


class TableFormat(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"
    parquet = "parquet"


def default_capture() -> str:
    path = resources.files("capanalyze").joinpath(DEFAULT_CAPTURE)
    return str(path)


def _settings(idle_timeout, min_stall, gap, keep_packets=False, keep_flows=None, slim=False):
    from .pipeline import Settings
    return Settings(gap_s=gap, idle_timeout=idle_timeout, min_stall=min_stall,
                    keep_packets=keep_packets, keep_flows=keep_flows, slim_notable=slim)


def _first_read(captures, settings, charts: bool = False):
    """The analyses. stdin can be read once only: for charts it keeps every packet."""
    from dataclasses import replace

    if charts and "-" in captures:
        settings = replace(settings, keep_packets=True)
    return _analyze_all(captures, settings)


def _with_packets(captures, analyses, flows_of, overview: bool = False):
    """The analyses with the packets of connections `flows_of[i]` of capture i (and the
    overview's idle gaps), for charts: a file is read again for them, so memory stays
    small. An analysis that kept its packets (stdin) is as it is."""
    from .pipeline import with_packets
    from .plot.gantt import overview_rows

    def run(path, a, flows):
        gap_flows = overview_rows(a) if overview else ()
        return _with_progress(path, partial(with_packets, path, a, flows, gap_flows))

    return [a if a.packets is not None else run(path, a, flows)
            for path, a, flows in zip(captures, analyses, flows_of)]


def _analyze_all(captures, settings):
    from .pipeline import analyze, one_shot_process
    one_shot_process()
    return [_with_progress(path, partial(analyze, path, settings)) for path in captures]


def _with_progress(path, run):
    """`run(progress)`, with a progress bar on a terminal."""
    if not sys.stderr.isatty() or path == "-":
        return run(None)
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn
    with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                  TimeRemainingColumn(), transient=True, console=_stderr_console()) as bar:
        task = bar.add_task(f"reading {Path(path).name}", total=None)
        return run(lambda done, total: bar.update(task, completed=done, total=total))


def _stderr_console():
    from rich.console import Console
    return Console(stderr=True)


def _fail_on(value: Optional[str]) -> set[str]:
    wanted = {c.strip() for c in (value or "").split(",") if c.strip()}
    unknown = wanted - set(CLASSES) - {"any"}
    if unknown:
        raise CaptureError(f"--fail-on: unknown class {', '.join(sorted(unknown))} "
                           f"(choose from {', '.join(CLASSES)}, any)")
    return set(CLASSES) if "any" in wanted else wanted


CapturesArg = typer.Argument(None, help="capture files (pcap/pcapng, gzip ok, - for stdin); "
                                        "two files = two vantages. Default: the bundled demo")
IdleOpt = typer.Option(None, "--idle-timeout", help="the middlebox idle timeout you know of (s)")
MinStallOpt = typer.Option(5.0, "--min-stall", help="waits shorter than this are not stalls (s)")
GapOpt = typer.Option(1.0, "--gap", help="record idle gaps longer than this (s)")


@app.command()
@user_errors
def diagnose(captures: Optional[List[str]] = CapturesArg,
             format: ReportFormat = typer.Option(ReportFormat.text, "--format", "-f"),
             output: Optional[Path] = typer.Option(None, "--output", "-o", help="write the report here"),
             idle_timeout: Optional[float] = IdleOpt, min_stall: float = MinStallOpt,
             gap: float = GapOpt,
             fail_on: Optional[str] = typer.Option(None, "--fail-on",
                                                   help="exit 1 if a stall of these classes is found (comma list, or any)"),
             every_stall: bool = typer.Option(False, "--all",
                                              help="text: detail every stall, not only the first "
                                                   "few of each class")) -> None:
    """Find every stalled connection and explain it: class, evidence, culprit, fix."""
    wanted = _fail_on(fail_on)
    if not captures:
        captures = [default_capture()]
        print(f"capanalyze: no capture given; diagnosing the bundled demo {captures[0]}", file=sys.stderr)
    from .report import build, pieces
    from .vantage import match_report

    settings = _settings(idle_timeout, min_stall, gap, slim=True)   # reports: no packet table
    html = format is ReportFormat.html
    analyses = _first_read(captures, settings, charts=html)
    report = build(analyses, match_report(analyses))
    if html:
        from .report.html import charted_flows
        analyses = _with_packets(captures, analyses, charted_flows(report, len(analyses)), overview=True)
    write_output(pieces(report, format.value, analyses, every_stall), output)
    if wanted and any(s["class"] in wanted for s in report["stalls"]):
        raise typer.Exit(1)


@app.command()
@user_errors
def flows(capture: str = typer.Argument(..., help="capture file, or - for stdin"),
          format: TableFormat = typer.Option(TableFormat.table, "--format", "-f"),
          output: Optional[Path] = typer.Option(None, "--output", "-o"),
          idle_timeout: Optional[float] = IdleOpt, min_stall: float = MinStallOpt,
          gap: float = GapOpt) -> None:
    """The connections table: endpoints, counts, how each ended, longest idle, verdict."""
    analysis = _analyze_all([capture], _settings(idle_timeout, min_stall, gap))[0]
    table = analysis.flows.reset_index(drop=True)
    if format is TableFormat.table:
        write_output(_rich_flows(table), output)
    else:
        _export(table, format, output)


@app.command()
@user_errors
def packets(capture: str = typer.Argument(..., help="capture file, or - for stdin"),
            flow: Optional[List[int]] = typer.Option(None, "--flow", help="only these flow ids"),
            format: TableFormat = typer.Option(TableFormat.csv, "--format", "-f"),
            output: Optional[Path] = typer.Option(None, "--output", "-o")) -> None:
    """The packet table with connection and TCP event columns (csv, json or parquet)."""
    keep = frozenset(flow) if flow else None   # one connection of a multi-GB capture: its rows only
    analysis = _analyze_all([capture], _settings(None, 5.0, 1.0, keep_packets=True, keep_flows=keep))[0]
    if flow:
        _check_flows(analysis, list(flow))
    table = analysis.packets
    _export(table.drop(columns=["events"]), TableFormat.csv if format is TableFormat.table else format, output)


def _check_flows(analysis, ids):
    missing = [i for i in ids if i not in analysis.flows.index]
    if missing:
        raise CaptureError(f"no connection with flow id {missing[0]} (see `capanalyze flows`)")


def _export(table, format: TableFormat, output: Optional[Path]):
    if format is TableFormat.parquet:
        if output is None:
            raise CaptureError("--format parquet needs --output FILE")
        try:
            table.to_parquet(output, index=False)
        except ImportError:   # pyarrow is not a dependency: only this export needs it
            raise CaptureError("--format parquet needs pyarrow (pip install pyarrow)") from None
        except OSError as exc:
            raise CaptureError(f"cannot write {output}: {exc.strerror or exc}") from None
        print(f"capanalyze: wrote {output}", file=sys.stderr)
    elif format is TableFormat.json:
        write_output(table.to_json(orient="records", lines=False, indent=1), output)
    else:
        write_output(table.to_csv(index=False), output)


FLOW_TABLE = (("flow_id", "flow"), ("client", "client"), ("server", "server"),
              ("packets", "pkts"), ("bytes", "bytes"), ("state", "state"),
              ("max_idle_s", "max idle s"), ("keepalives", "keepalives"),
              ("retransmissions", "retrans"), ("rsts", "RSTs"), ("verdict", "verdict"))


# rich lays a table out at ~1 ms a row: 254k connections took 4 min 49 s. Past this
# many, the terminal table says how many it left out and how to get them all.
TABLE_ROWS = 1000


def _rich_flows(table) -> str:
    import io
    import shutil

    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from .evidence import counted
    from .report import idle_text
    from .report.text import print_whole

    out = Table(title=counted(len(table), "connection"))
    for name, header in FLOW_TABLE:
        out.add_column(header, no_wrap=name in ("client", "server", "verdict"),
                       justify="right" if table[name].dtype.kind in "iuf" else "left")
    shown = table.head(TABLE_ROWS)
    idle = [idle_text(m, e, unit="") for m, e in zip(shown["max_idle_s"], shown["idle_at_end_s"])]
    for row, idle_cell in zip(shown[[name for name, _ in FLOW_TABLE]].itertuples(index=False), idle):
        cells = [idle_cell if name == "max_idle_s" else v for (name, _), v in zip(FLOW_TABLE, row)]
        out.add_row(*(escape(f"{v:.1f}" if isinstance(v, float) else str(v)) for v in cells))
    width = max(shutil.get_terminal_size((160, 40)).columns, 120)
    console = Console(file=io.StringIO(), width=width, force_terminal=sys.stdout.isatty())
    print_whole(console, out)
    if len(table) > TABLE_ROWS:
        console.print(f"({counted(len(table) - TABLE_ROWS, 'more connection')} not shown: the first "
                      f"{TABLE_ROWS} are; --format csv, json or parquet writes every one)")
    return console.file.getvalue()


@app.command()
@user_errors
def plot(capture: str = typer.Argument(..., help="capture file, or - for stdin"),
         output: Path = typer.Option(..., "--output", "-o", help="PNG or SVG path (by extension)"),
         flow: Optional[List[int]] = typer.Option(None, "--flow", help="flow ids to draw"),
         stalls: bool = typer.Option(False, "--stalls", help="one panel per stalled connection"),
         overview: bool = typer.Option(False, "--overview", help="all connections, Gantt-like"),
         idle_timeout: Optional[float] = IdleOpt, min_stall: float = MinStallOpt) -> None:
    """Draw flow timelines (or the capture overview) for an incident ticket."""
    if output.suffix.lower() not in (".png", ".svg"):
        raise CaptureError(f"{output}: the chart format comes from the extension: .png or .svg")
    from . import plot as plots

    settings = _settings(idle_timeout, min_stall, 1.0)
    if overview:   # every idle gap of the rows drawn (the diagnosis keeps fewer)
        analysis = _first_read([capture], settings, charts=True)[0]
        fig = plots.overview(_with_packets([capture], [analysis], [[]], overview=True)[0])
    elif flow and not stalls:
        keep = _settings(idle_timeout, min_stall, 1.0, keep_packets=True, keep_flows=frozenset(flow))
        analysis = _analyze_all([capture], keep)[0]
        _check_flows(analysis, list(flow))
        fig = plots.flows_figure(analysis, list(flow))
    else:
        analysis = _first_read([capture], settings, charts=True)[0]
        ids = sorted(set(analysis.stalls["flow_id"].tolist()))
        if not ids:
            raise CaptureError("no stalled connection to draw; name one with --flow ID")
        analysis = _with_packets([capture], [analysis], [ids[:plots.MAX_PANELS]])[0]
        fig = plots.flows_figure(analysis, ids)
    plots.save(fig, output)
    print(f"capanalyze: wrote {output}", file=sys.stderr)
