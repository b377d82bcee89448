"""The whole pipeline for one capture, chunk by chunk:

    capture file -> packet table -> connections -> TCP events -> gaps / backoffs / RSTs
                 -> stalls and diagnosis

Per-connection state is carried between chunks, so the CLI keeps only the notable
packets (events) and the idle gaps the diagnosis reads; `keep_packets=True` (Jupyter,
charts) keeps the full packet table and every gap as well. Both paths run the same
code and give the same flows, events and stalls. What grows with the capture (the
state of old connections, gap records, notable packets) waits in temporary files
while the loop runs (spill.py).
"""
from __future__ import annotations

import ctypes
import math
import threading
from dataclasses import dataclass, field, replace
from queue import Queue

import numpy as np
import pandas as pd

from . import diagnose as dg
from . import events, jit, spill, timeline
from .errors import CaptureError
from .flows import FlowKeys, assign_flows, flows_table
from .reader import CaptureInfo, open_capture


@dataclass
class Settings:
    gap_s: float = 1.0                 # idle gaps shorter than this are not recorded
    idle_timeout: float | None = None  # the middlebox idle timeout, when the user knows it
    min_stall: float = 5.0             # waits shorter than this are not stalls
    keep_packets: bool = False
    keep_flows: frozenset | None = None  # with keep_packets: only these connections' rows
    slim_notable: bool = False         # notable packets: only the columns derived tables read
    chunk_bytes: int | None = None

    def keeps_everything(self) -> bool:
        """Every packet and every gap in memory (Jupyter). With `keep_flows` only those
        connections' are: the rest spills and is chosen as on the CLI path."""
        return self.keep_packets and self.keep_flows is None

    def __post_init__(self):
        _check_seconds("--idle-timeout", self.idle_timeout, zero_ok=False)
        _check_seconds("--min-stall", self.min_stall, zero_ok=True)
        _check_seconds("--gap", self.gap_s, zero_ok=False)

    def options(self) -> dg.Options:
        return dg.Options(idle_timeout=self.idle_timeout, min_stall=self.min_stall)


def _check_seconds(option: str, value: float | None, zero_ok: bool) -> None:
    """A duration option (named as on the command line; capanalyze.load takes the same)
    must be a finite number of seconds, above zero where zero would mean nothing: a -5 s
    idle timeout gave keepalive advice of "below -5 s", and a zero gap threshold makes
    every interval between packets a gap."""
    if value is None or (math.isfinite(value) and (value > 0 or (zero_ok and value == 0))):
        return
    least = "0 or more" if zero_ok else "more than 0"
    raise CaptureError(f"{option} must be a number of seconds, {least} (got {value:g})")


@dataclass
class Analysis:
    """Everything known about one capture, as DataFrames. Without `keep_packets`,
    `notable` holds the packets with an event and `gaps` only the idle gaps the
    diagnosis reads; with it, `packets` and every gap (of the `keep_flows` connections
    only, when given). `with_packets` adds the packets and every gap of a few
    connections to an analysis made without."""
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
    reader = _open(source, settings)
    jit.choose(reader.info.bytes_total)
    keys = FlowKeys()
    everything = settings.keeps_everything()
    state = events.TcpState(settings.gap_s, spill_gaps=not everything)
    kept, notable = spill.RowBuffer(), spill.RowBuffer(spill=not everything)

    for cols in _with_events(reader, keys, state, progress):
        # positions, not a mask: ~2 % of rows are notable, and a mask is walked per column
        notable.append(cols, np.flatnonzero(events.notable_mask(cols["events"])))
        if settings.keep_packets:
            kept.append(cols, _rows_of(cols, settings.keep_flows))
    release_freed_memory(after_loop=True)
    info = reader.info
    n_flows = int(keys.count[0])
    capture_end = info.last_ts if info.last_ts is not None else 0.0
    summary = state.finish(n_flows, info.last_ts_ns or 0)
    flows = flows_table(keys, summary, reader.addresses.categories(),
                        info.last_ts_ns or 0).set_index("flow_id", drop=False)
    del keys, summary
    packets = packet_table(kept.arrays(), reader) if settings.keep_packets else None
    notable_rows = packet_table(notable.arrays(DERIVED_READ if settings.slim_notable else None), reader)
    release_freed_memory()
    return _derive(info, flows, state, notable_rows, packets, capture_end, settings)


def with_packets(source, analysis: Analysis, flows, gap_flows=(), progress=None) -> Analysis:
    """`analysis` (of `source`, without its packet table) with the packet table of the
    connections `flows`, and every idle gap of those and of `gap_flows`: what charts of
    a few connections of a multi-GB capture need, read again from the capture.

    Only the wanted connections go through the TCP rules (they are per connection, so
    their events are those of a full run), and the diagnosis is not redone: on 5M
    packets with 254k connections this read took about a third of a full one."""
    reader = _open(source, analysis.settings)
    jit.choose(reader.info.bytes_total)
    wanted, charted = frozenset(flows) | frozenset(gap_flows), frozenset(flows)
    keys, state, kept = FlowKeys(), events.TcpState(analysis.settings.gap_s), spill.RowBuffer()
    for cols in _with_events(reader, keys, state, progress, only=wanted):
        kept.append(cols, _rows_of(cols, charted))
    state.finish(int(keys.count[0]), reader.info.last_ts_ns or 0)
    gaps = _every_gap_of(wanted, analysis.gaps, timeline.gaps_table(state.gap_records(), state.high_ack))
    state.release()
    return replace(analysis, packets=packet_table(kept.arrays(), reader), gaps=gaps,
                   settings=replace(analysis.settings, keep_packets=True, keep_flows=charted))


def _with_events(reader, keys: FlowKeys, state, progress=None, only: frozenset | None = None):
    """Each chunk's columns with the connection and TCP event columns added; with
    `only`, just the rows of those connections go through the rules and are given."""
    for cols in _prefetch(reader.columns()):
        assign_flows(reader.add_codes(cols), keys)   # here: the reader thread is the busier one
        if only is not None:
            rows = _rows_of(cols, only)
            cols = {name: column[rows] for name, column in cols.items()}
        cols.update(events.run(cols, state, int(keys.count[0])))
        yield cols
        if progress:
            progress(reader.info.bytes_read, reader.info.bytes_total)


def _every_gap_of(flows: frozenset, gaps: pd.DataFrame, every: pd.DataFrame) -> pd.DataFrame:
    """`gaps` with those of `flows` replaced by `every` one of theirs, in the gap table's
    order (connection, then time)."""
    gaps = pd.concat([gaps[~gaps["flow_id"].isin(list(flows))], every], ignore_index=True)
    order = np.lexsort((gaps["start_ts"].to_numpy(), gaps["flow_id"].to_numpy()))
    return gaps.take(order).reset_index(drop=True)


def _open(source, settings: Settings):
    kwargs = {"chunk_bytes": settings.chunk_bytes} if settings.chunk_bytes else {}
    return open_capture(source, **kwargs)


def _rows_of(cols: dict, flows: frozenset | None) -> np.ndarray | None:
    """Charts of a few connections of a multi-GB capture need only their packets."""
    if flows is None:
        return None
    return np.flatnonzero(np.isin(cols["flow_id"], np.fromiter(flows, dtype=np.int64)))


def _prefetch(chunks, depth: int = 2):
    """Read and decode the next chunks in a second thread while this one analyses:
    compiled kernels release the GIL, so both cores work. Interpreted: run inline.

    Started only here, once pandas is imported. Starting it first, so the reader would
    use the core that is idle during start-up, was measured on 5M mixed packets: the
    imports hold the GIL, which the reader takes ~10 times per chunk between its calls,
    so it decoded 12-24 chunks in the 0.18 s instead of ~45 (also with a 50 us switch
    interval), and the run was no faster (median 1.74 against 1.73 s) for 25 MiB more."""
    if not jit.is_compiled():
        yield from chunks
        return
    queue: Queue = Queue(maxsize=depth)
    done = object()

    def produce():
        try:
            for item in chunks:
                queue.put(item)
            queue.put(done)
        except BaseException as exc:  # handed to the consumer, raised there
            queue.put(exc)

    worker = threading.Thread(target=produce, daemon=True, name="capanalyze-reader")
    worker.start()
    while (item := queue.get()) is not done:
        if isinstance(item, BaseException):
            raise item
        yield item
    worker.join()


def _derive(info, flows, state, notable, packets, capture_end, settings) -> Analysis:
    rsts = timeline.rst_table(state.rst_records(), state.last_ts)
    backoffs = timeline.backoff_chains(notable, capture_end)
    gaps, survived = _gaps(state, notable, rsts, backoffs, settings)
    state.release()   # the tables hold what the diagnosis needs: free the records first
    release_freed_memory()
    zero_windows = dg.zero_window_episodes(notable, capture_end)
    tables = dg.Tables(flows, gaps, backoffs, rsts, notable, capture_end, zero_windows, survived)
    stalls, bracket = dg.diagnose(tables, settings.options())
    flows["verdict"] = dg.verdicts(flows, stalls)
    release_freed_memory()
    return Analysis(info, flows, gaps, backoffs, rsts, zero_windows, stalls, bracket,
                    notable, packets, settings)


def _gaps(state, notable, rsts, backoffs, settings: Settings):
    """The idle-gap table and the survived idles. With every packet kept (Jupyter)
    every gap; on the CLI path only the gaps the diagnosis reads, which gives the same
    stalls from a table 10-100x smaller, chosen one block of records at a time (the
    blocks wait in a temporary file: see spill.RecordBuffer), and every gap of the
    connections whose packets are kept (`keep_flows`: a chart of one flow)."""
    if settings.keeps_everything():
        gaps = timeline.gaps_table(state.gap_records(), state.high_ack)
        return gaps, dg.survived_idles(gaps, rsts)
    lookups = dg.Lookups(notable, rsts, backoffs)
    charted = list(settings.keep_flows or ()) if settings.keep_packets else []
    read, survived = [], np.empty(0)
    for records in state.gaps.drain():
        facts = timeline.gaps_table(records, state.high_ack, columns=dg.GAP_FACTS, ordered=False)
        read.append(records[dg.gaps_read(facts, lookups) | facts["flow_id"].isin(charted).to_numpy()])
        survived = _appended(survived, dg.survivor_durations(facts, rsts))
    gaps = timeline.gaps_table(np.concatenate(read), state.high_ack)
    survived.sort()
    return gaps, survived


def _appended(a: np.ndarray, values: np.ndarray) -> np.ndarray:
    """`a` with `values` appended, in place (most gaps are survived think time: 1.2M
    durations in 20M packets, which a list of pieces, joined then sorted, held 3 times)."""
    n = len(a)
    a = spill.resized(a, n + len(values))
    a[n:] = values
    return a


# The decoded columns the derived tables, the diagnosis, the reports and the matching
# of two vantages read of the notable packets: `diagnose` keeps only these and what
# derives from them (timestamps, flag text, event booleans): ~100 of 175 bytes a row
# (20M packets: 394k notable rows).
DERIVED_READ = ("frame", "ts_ns", "tcp_flags", "seq", "flow_id", "dir", "events", "rel_seq",
                "rel_ack", "win", "orig_frame", "orig_ts_ns")

EVENT_FIELDS = ("events", "rel_seq", "rel_ack", "win", "orig_frame", "orig_ts_ns")


def packet_table(cols: dict | None, reader) -> pd.DataFrame:
    """Packet columns (with connection and event columns) -> a packet-table DataFrame."""
    if cols is None:
        return _empty_table(reader)
    table = reader.to_frame(cols, extra=("flow_id", "dir"))
    events.add_event_columns(table, cols)
    return table


def _empty_table(reader) -> pd.DataFrame:
    from .reader.decode import TCP_FIELDS

    cols = {name: np.zeros(0, dtype) for name, dtype in TCP_FIELDS.items()}
    cols.update(src_code=np.zeros(0, np.int32), dst_code=np.zeros(0, np.int32),
                flow_id=np.zeros(0, np.int64), dir=np.zeros(0, np.int8))
    cols.update(events.no_events())
    return packet_table(cols, reader)


try:   # glibc only; other allocators return freed memory their own way
    _LIBC = ctypes.CDLL(None)
    _MALLOC_TRIM, _MALLOPT = _LIBC.malloc_trim, _LIBC.mallopt
except (OSError, AttributeError, TypeError):
    _MALLOC_TRIM = _MALLOPT = None
_M_MMAP_THRESHOLD = -3
_one_run = False


def one_shot_process() -> None:
    """This process runs its analyses and exits (the command line): after a chunk loop,
    arrays of 1 MB and more get mappings of their own (see release_freed_memory). Not
    for a Jupyter session, whose allocator is left as it is."""
    global _one_run
    _one_run = True


def release_freed_memory(after_loop: bool = False) -> None:
    """Hand the heap memory freed so far back to the system. glibc keeps it for reuse,
    but the chunk loop leaves it in thousands of small holes (each chunk's arrays) that
    the tables built next do not fit: RSS grew while the live data did not. Called
    after each stage that frees much; a few ms each.

    The stages after the loop make and drop tables of 1-10 MB, which glibc places in
    its heap once a large block was freed (its threshold adapts up to 32 MB), where they
    leave holes too: 20M packets, +35 MB of RSS with the live data flat. With
    `one_shot_process`, they are mapped on their own from then on, and their
    memory goes back when they do (time measured unchanged)."""
    if after_loop and _one_run and _MALLOPT is not None:
        _MALLOPT(_M_MMAP_THRESHOLD, 1 << 20)
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)
