"""The whole pipeline for one capture, chunk by chunk:

    capture file -> packet table -> connections -> TCP events -> gaps / backoffs / RSTs
                 -> stalls and diagnosis

Per-connection state is carried between chunks, so the CLI keeps only the notable
packets (events) and memory does not grow with the capture; `keep_packets=True`
(Jupyter) keeps the full packet table as well. Both paths run the same code and give
the same flows, events and stalls.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from . import diagnose as dg
from . import events, jit, schema, timeline
from .flows import FlowKeys, assign_flows, flows_table
from .reader import CaptureInfo, open_capture


@dataclass
class Settings:
    gap_s: float = 1.0                 # idle gaps shorter than this are not recorded
    idle_timeout: float | None = None  # the middlebox idle timeout, when the user knows it
    min_stall: float = 5.0             # waits shorter than this are not stalls
    keep_packets: bool = False
    chunk_bytes: int | None = None

    def options(self) -> dg.Options:
        return dg.Options(idle_timeout=self.idle_timeout, min_stall=self.min_stall)


@dataclass
class Analysis:
    """Everything known about one capture, as DataFrames."""
    info: CaptureInfo
    flows: pd.DataFrame
    gaps: pd.DataFrame
    backoffs: pd.DataFrame
    rsts: pd.DataFrame
    zero_windows: pd.DataFrame
    stalls: pd.DataFrame
    bracket: dict | None
    notable: pd.DataFrame
    packets: pd.DataFrame | None = None
    settings: Settings = field(default_factory=Settings)


def analyze(source, settings: Settings | None = None, progress=None) -> Analysis:
    """Read a capture and diagnose it. `progress(bytes_read, bytes_total)` is optional."""
    settings = settings or Settings()
    kwargs = {"chunk_bytes": settings.chunk_bytes} if settings.chunk_bytes else {}
    reader = open_capture(source, **kwargs)
    jit.choose(reader.info.bytes_total)
    keys, state = FlowKeys(), events.TcpState(settings.gap_s)
    kept, notable = [], []
    for chunk in reader.chunks():
        assign_flows(chunk, keys)
        events.annotate(chunk, state, int(keys.count[0]))
        notable.append(events.notable(chunk))
        if settings.keep_packets:
            kept.append(chunk)
        if progress:
            progress(reader.info.bytes_read, reader.info.bytes_total)
    info = reader.info
    n_flows = int(keys.count[0])
    capture_end = info.last_ts if info.last_ts is not None else 0.0
    state.close(n_flows, info.last_ts_ns or 0)
    addresses = reader.addresses.categories()
    flows = flows_table(keys, state, addresses).set_index("flow_id", drop=False)
    packets = concat(kept, reader.addresses) if settings.keep_packets else None
    return _derive(info, flows, state, concat(notable, reader.addresses), packets,
                   capture_end, settings)


def _derive(info, flows, state, notable, packets, capture_end, settings) -> Analysis:
    gaps = timeline.gaps_table(state.gap_records(), state.D, capture_end)
    backoffs = timeline.backoff_chains(notable, flows, capture_end)
    rsts = timeline.rst_table(state.rst_records(), state.D)
    zero_windows = dg.zero_window_episodes(notable, capture_end)
    tables = dg.Tables(flows, gaps, backoffs, rsts, notable, capture_end, zero_windows)
    stalls, bracket = dg.diagnose(tables, settings.options())
    flows["verdict"] = dg.verdicts(flows, stalls)
    return Analysis(info, flows, gaps, backoffs, rsts, zero_windows, stalls, bracket,
                    notable, packets, settings)


def concat(chunks: list[pd.DataFrame], addresses) -> pd.DataFrame:
    """Chunks (with event columns) -> one table with the reader's final categories."""
    if not chunks:
        return _empty_annotated()
    plain = [c.drop(columns=["src", "dst", "flags"]) for c in chunks]
    table = plain[0].reset_index(drop=True) if len(plain) == 1 else pd.concat(plain, ignore_index=True)
    for name in ("src", "dst"):
        codes = np.concatenate([c[name].cat.codes.to_numpy() for c in chunks])
        table[name] = addresses.categorical(codes)
    table["flags"] = schema.flags_text_column(table["tcp_flags"].to_numpy())
    order = list(schema.PACKET_COLUMNS) + [c for c in table.columns if c not in schema.PACKET_COLUMNS]
    return table[order]


def _empty_annotated() -> pd.DataFrame:
    from .reader import empty_packet_table

    table = empty_packet_table()
    table["flow_id"] = pd.Series([], dtype="int64")
    table["dir"] = pd.Series([], dtype="int8")
    O = np.zeros((0, events.ts.N_O), dtype=np.int64)
    events._add_event_columns(table, O)
    return table
