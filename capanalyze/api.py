"""The Python API for Jupyter: load() -> Capture, whose tables are pandas DataFrames."""
from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

from .pipeline import Analysis, Settings, analyze


def load(source, *, idle_timeout: float | None = None, min_stall: float = 5.0,
         gap: float = 1.0, keep_packets: bool = True) -> "Capture":
    """Read and diagnose a capture (path, '-', file object) or a list of vantages.

    The options are the CLI's: `idle_timeout` (a known middlebox idle timeout, s),
    `min_stall` (shorter waits are not stalls, s), `gap` (idle-gap threshold, s).
    The full packet table is kept (`cap.packets`): 172 bytes per packet, and the
    process peaks at ~0.35 GiB per million packets above its imports.
    `keep_packets=False` keeps only the packets with an event and the idle gaps the
    diagnosis reads (as the CLI does): the same stalls in far less memory.
    """
    settings = Settings(gap_s=gap, idle_timeout=idle_timeout, min_stall=min_stall,
                        keep_packets=keep_packets)
    sources = list(source) if isinstance(source, (list, tuple)) else [source]
    analyses = [analyze(s, settings) for s in sources]
    return Capture(analyses)


class Capture:
    """One capture (or several vantages of the same traffic) and its diagnosis."""

    def __init__(self, analyses: list[Analysis]):
        self.analyses = analyses
        self._report = None

    # ---- tables (first vantage; .analyses[i] for the others) ----
    @property
    def main(self) -> Analysis:
        return self.analyses[0]

    @property
    def info(self):
        return self.main.info

    @property
    def packets(self) -> pd.DataFrame:
        return self.main.packets if self.main.packets is not None else self.main.notable

    @property
    def flows(self) -> pd.DataFrame:
        return self.main.flows

    @property
    def gaps(self) -> pd.DataFrame:
        return self.main.gaps

    @property
    def backoffs(self) -> pd.DataFrame:
        return self.main.backoffs

    @property
    def rsts(self) -> pd.DataFrame:
        return self.main.rsts

    @property
    def stalls(self) -> pd.DataFrame:
        return self.main.stalls

    @property
    def diagnosis(self) -> dict:
        """The same dict as the JSON report."""
        if self._report is None:
            from .report import build
            from .vantage import match_report
            self._report = build(self.analyses, match_report(self.analyses))
        return self._report

    def report(self, fmt: str = "md") -> str:
        from .report import render
        return render(self.diagnosis, fmt, self.analyses)

    def flow(self, flow_id: int, vantage: int = 0) -> "Flow":
        return Flow(self.analyses[vantage], int(flow_id))

    def plot_overview(self, **kwargs):
        from .plot import overview
        return overview(self.main, **kwargs)

    def _repr_html_(self) -> str:
        info = self.info
        counts = self.flows["verdict"].value_counts().to_dict()
        verdicts = ", ".join(f"{html.escape(str(k))}: {v}" for k, v in counts.items())
        return (f"<b>capanalyze Capture</b> {html.escape(Path(info.path).name)}: "
                f"{info.records} records, {info.tcp_packets} TCP packets, "
                f"{len(self.flows)} connections ({verdicts}), {len(self.stalls)} stalls"
                + self.stalls.drop(columns=["evidence", "backoff", "remedy"], errors="ignore").to_html(max_rows=20))

    def __repr__(self) -> str:
        return (f"<Capture {self.info.path}: {len(self.flows)} connections, "
                f"{len(self.stalls)} stalls>")


class Flow:
    """One connection: its row, packets, gaps, chains and stalls."""

    def __init__(self, analysis: Analysis, flow_id: int):
        if flow_id not in analysis.flows.index:
            raise KeyError(f"no connection with flow_id {flow_id}")
        self.analysis, self.flow_id = analysis, flow_id
        self.row = analysis.flows.loc[flow_id]

    def _of(self, table: pd.DataFrame) -> pd.DataFrame:
        return table[table["flow_id"] == self.flow_id]

    @property
    def packets(self) -> pd.DataFrame:
        table = self.analysis.packets if self.analysis.packets is not None else self.analysis.notable
        return self._of(table)

    @property
    def gaps(self) -> pd.DataFrame:
        return self._of(self.analysis.gaps)

    @property
    def backoffs(self) -> pd.DataFrame:
        return self._of(self.analysis.backoffs)

    @property
    def stalls(self) -> pd.DataFrame:
        return self._of(self.analysis.stalls)

    @property
    def verdict(self) -> str:
        return str(self.row["verdict"])

    def plot(self, **kwargs):
        from .plot import flow_timeline
        return flow_timeline(self.analysis, self.flow_id, **kwargs)

    def _repr_html_(self) -> str:
        from .report import idle_text

        r = self.row
        return (f"<b>Flow {self.flow_id}</b> {html.escape(str(r.client))} &rarr; "
                f"{html.escape(str(r.server))}: {html.escape(self.verdict)}, {r.packets} packets, "
                f"max idle {idle_text(r.max_idle_s, r.idle_at_end_s)}" + self.stalls[["class", "confidence", "duration_s"]].to_html())

    def __repr__(self) -> str:
        return f"<Flow {self.flow_id} {self.row.client} -> {self.row.server}: {self.verdict}>"
