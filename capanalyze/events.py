"""Stage 3 driver: run the TCP rules (tcpstate.py) over packet-table chunks.

`TcpState` carries every connection's per-direction state from one chunk to the next,
so a capture of any size is analysed in bounded memory; `annotate` adds the event
columns to a chunk and collects the idle-gap and RST records the kernel emits.
"""
from __future__ import annotations

import os
import tempfile

import numpy as np
import pandas as pd

from . import tcpstate as ts

RETRANS_KINDS = ["", "rto", "fast", "spurious", "tail_probe"]
MIN_ROOM = 1024   # free gap/RST rows the kernel gets at least per call (it stops when
                  # they run out and is called again with a fresh block)


class TcpState:
    """Per-connection TCP state plus the gap/RST records found so far. With
    `spill_gaps`, full blocks of gap records wait in a temporary file (see RecordBuffer)."""

    INITIAL_FLOWS = 1024

    def __init__(self, gap_s: float = 1.0, spill_gaps: bool = False):
        self.gap_ns = int(round(gap_s * 1e9))
        capacity = self.INITIAL_FLOWS
        self.D = np.zeros((2 * capacity, ts.N_D), dtype=np.int64)
        self.T = np.zeros((capacity, ts.N_T), dtype=np.int64)
        self.gaps = RecordBuffer(ts.N_G, spill=spill_gaps)
        self.rsts = RecordBuffer(ts.N_R)

    def ensure_flows(self, n_flows: int):
        if n_flows <= len(self.T):
            return
        cap = grown(len(self.T), n_flows)
        self.T = resized(self.T, cap)
        self.D = resized(self.D, 2 * cap)

    def close(self, n_flows: int, capture_end_ns: int):
        """Emit the gaps still open at the capture's end."""
        G = self.gaps.room(max(n_flows, 1))
        self.gaps.added(ts._close_open_gaps(self.T, G, self.D, n_flows, capture_end_ns,
                                            self.gap_ns))

    def keep_for_tables(self) -> None:
        """Once the flows table is built, the RST and gap tables read one number per
        direction each: keep those and drop the rest of the per-connection state
        (20M packets, 90k connections: ~100 MB of the peak)."""
        self.last_ts = self.D[:, ts.D_LAST_TS].copy()
        self.high_ack = self.D[:, ts.D_HIGHACK].copy()
        self.D = self.T = None

    def release(self) -> None:
        """Drop the per-connection state and records once the tables are built."""
        self.D = self.T = self.last_ts = self.high_ack = None
        for records in (self.gaps, self.rsts):
            if records is not None:
                records.close()
        self.gaps = self.rsts = None

    def gap_records(self) -> np.ndarray:
        return self.gaps.array()

    def rst_records(self) -> np.ndarray:
        return self.rsts.array()


class RecordBuffer:
    """Rows the kernel appends (idle gaps, RSTs), in blocks: none is copied to grow.

    Idle gaps grow with the capture's time, not its connections (1.3M of them, 196 MB,
    in 20M packets), and the CLI reads only a few: with `spill`, the full blocks past
    MEMORY_BYTES are written to an unlinked temporary file ($TMPDIR) and read back one
    at a time by `blocks()`. Below that they stay in memory: writing and reading them
    back costs ~1.3 ms per MB (page cache). 32 MB, not more: with the connections held
    fixed, RSS from 5M to 20M packets grows by what is held here and little else.
    Without a usable temporary directory every block stays in memory."""

    BLOCK_ROWS = 1 << 16
    MEMORY_BYTES = 32 << 20

    def __init__(self, width: int, spill: bool = False):
        self.width = width
        self._done: list = []          # full blocks: arrays, or (file offset, rows) when spilled
        self._current = np.zeros((0, width), dtype=np.int64)
        self._used = 0
        self._file = None
        self._spill = spill
        self._held = 0   # bytes of full blocks kept in memory

    def room(self, at_least: int) -> np.ndarray:
        """Free rows for the kernel (at least `at_least`); tell added() how many it used."""
        if len(self._current) - self._used < at_least:
            self._retire_current()
            self._current = np.zeros((max(self.BLOCK_ROWS, at_least), self.width), np.int64)
            self._used = 0
        return self._current[self._used:]

    def added(self, rows: int) -> None:
        self._used += rows

    def blocks(self):
        """The records in order, one block at a time."""
        for block in self._done:
            yield self._read(*block) if isinstance(block, tuple) else block
        yield self._current[:self._used]

    def array(self) -> np.ndarray:
        blocks = list(self.blocks())
        return blocks[0] if len(blocks) == 1 else np.concatenate(blocks)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        self._done, self._current, self._file = [], self._current[:0], None

    def _retire_current(self) -> None:
        block = self._current[:self._used]
        if not len(block):
            return
        # a view: the block's unused rows were never written, so they take no memory
        if self._spill and self._held >= self.MEMORY_BYTES:
            self._done.append(self._spilled(block))
        else:
            self._done.append(block)
            self._held += block.nbytes

    def _spilled(self, block: np.ndarray):
        try:
            if self._file is None:
                # kept open across calls (closed by close()): no context manager
                self._file = tempfile.TemporaryFile(prefix="capanalyze-gaps-")  # noqa: SIM115
            offset = self._file.seek(0, os.SEEK_END)
            self._file.write(memoryview(block).cast("B"))
            return offset, len(block)
        except OSError:   # no room or no temp dir: keep this block and the rest in memory
            self._spill = False
            return block

    def _read(self, offset: int, rows: int) -> np.ndarray:
        block = np.empty((rows, self.width), np.int64)
        self._file.seek(offset)
        self._file.readinto(memoryview(block).cast("B"))
        return block


def grown(rows: int, needed: int) -> int:
    """The size a growing table is resized to: an eighth more (at least 64 rows), or what
    is needed. resize() zero-fills what it adds, so all of it is resident, and realloc
    remaps rather than copies, so small steps cost little (20M packets, 90k connections:
    35 MB less than growing by half)."""
    return max(needed, rows + max(rows // 8, 64))


def resized(a: np.ndarray, rows: int) -> np.ndarray:
    """`a` with `rows` rows, in place: realloc remaps a large block's pages instead of
    copying them, so a growing table is never held twice (at 82k connections D alone
    is 67 MB). Added rows are zero. Safe because no view of `a` is kept across a call."""
    a.resize((rows, *a.shape[1:]), refcheck=False)
    return a


PACKET_COLUMNS = ("frame", "ts_ns", "flow_id", "dir", "tcp_flags", "seq", "ack", "window",
                  "payload_len", "wscale", "ttl", "ip_id", "tsval")
EVENT_COLUMNS = {"events": np.uint32, "rel_seq": np.int64, "rel_ack": np.int64,
                 "win": np.int64, "orig_frame": np.int64, "orig_ts_ns": np.int64}


def annotate(packets: pd.DataFrame, state: TcpState, n_flows: int) -> pd.DataFrame:
    """Add event columns to a DataFrame chunk that already has flow_id/dir."""
    add_event_columns(packets, run(packets, state, n_flows))
    return packets


def run(packets, state: TcpState, n_flows: int) -> dict[str, np.ndarray]:
    """The TCP rules over one chunk's columns -> its event columns (EVENT_COLUMNS)."""
    state.ensure_flows(n_flows)
    cols = [np.asarray(packets[name]) for name in PACKET_COLUMNS]
    n = len(cols[0])
    out = {name: np.empty(n, dtype) for name, dtype in EVENT_COLUMNS.items()}
    scratch = np.empty(ts.N_P, np.int64), np.empty(ts.N_O, np.int64)
    pos = 0
    while pos < n:   # the kernel stops early when a record buffer is full
        G, R = state.gaps.room(MIN_ROOM), state.rsts.room(MIN_ROOM)
        pos, ng, nr = ts._annotate_kernel(*cols, *out.values(), *scratch, state.D, state.T,
                                          G, R, pos, state.gap_ns)
        state.gaps.added(ng)
        state.rsts.added(nr)
    return out


def no_events() -> dict[str, np.ndarray]:
    return {name: np.zeros(0, dtype) for name, dtype in EVENT_COLUMNS.items()}


def add_event_columns(table: pd.DataFrame, arrays: dict[str, np.ndarray]):
    """Expand the event bits into the documented boolean columns of the packet table."""
    ev = np.asarray(arrays["events"])
    table["events"] = ev
    for name, bit in ts.EVENT_BITS.items():
        table[name] = (ev & bit) != 0
    table["retrans_kind"] = retrans_kind(ev)
    for name in ("rel_seq", "rel_ack", "win", "orig_frame"):
        table[name] = arrays[name]
    table["orig_ts"] = np.asarray(arrays["orig_ts_ns"]) / 1e9


def retrans_kind(ev: np.ndarray) -> pd.Categorical:
    code = np.zeros(len(ev), dtype=np.int8)
    retrans = (ev & ts.EV_RETRANS) != 0
    code[retrans] = 1
    code[retrans & ((ev & ts.EV_TAIL_PROBE) != 0)] = 4
    code[(ev & ts.EV_FAST) != 0] = 2
    code[(ev & ts.EV_SPURIOUS) != 0] = 3
    return pd.Categorical.from_codes(code, categories=RETRANS_KINDS)


def notable_mask(events: np.ndarray) -> np.ndarray:
    """The rows a diagnosis needs when the full packet table is not kept."""
    return (np.asarray(events) & ts.EV_NOTABLE) != 0
