"""pcapng: a compiled walk over packet blocks (EPB, SPB, obsolete PB); Python for the rest.

Section headers, interface descriptions and unknown blocks are rare, so the kernel
hands them back to Python (OTHER_BLOCK) and resumes after them. Interface ids are
global across sections, in the order their IDBs appear (tshark 4.0's
frame.interface_id restarts at 0 in each section; ours stay distinct). Simple Packet
Blocks carry no time: they get the previous packet's. Custom blocks and systemd
journal blocks are counted as records (Wireshark shows them as frames).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np
from ..jit import kernel

from .decode import decode_records, tcp_rows
from .linktypes import linktype_name
from .records import (BAD_CAPLEN, BAD_LENGTH, BAD_TRAILER, FULL, MAX_RECORD, NEED_MORE,
                      NOT_A_PACKET_BASE, OTHER_BLOCK, rd16, rd32)

SHB, IDB, PB, SPB, EPB = 0x0A0D0D0A, 1, 2, 3, 6
CUSTOM, CUSTOM_NOCOPY, JOURNAL = 0x00000BAD, 0x40000BAD, 9
BYTE_ORDER_MAGIC = 0x1A2B3C4D
OPT_END, OPT_IF_NAME, OPT_IF_DESCRIPTION, OPT_IF_TSRESOL, OPT_IF_TSOFFSET = 0, 2, 3, 9, 14
BAD_MAGIC = 6
BAD_VERSION = 7


@dataclass
class Interface:
    """One IDB, as `info` reports it."""
    id: int
    section: int
    linktype: int
    snaplen: int
    tsresol: str = "10^-6"
    tsoffset: int = 0
    name: str | None = None
    description: str | None = None
    # timestamp conversion: ns = ticks * mul // div (decimal) or ticks * 1e9 / 2^exp
    ts_binary: bool = field(default=False, repr=False)
    ts_exp: int = field(default=6, repr=False)

    @property
    def linktype_name(self) -> str:
        return linktype_name(self.linktype)

    @property
    def offset_ns(self) -> int | None:
        """if_tsoffset in ns; None when no time could carry it (int64 ns: 292 years)."""
        ns = self.tsoffset * 1_000_000_000
        return ns if -(1 << 63) <= ns < (1 << 63) else None

    def as_dict(self) -> dict:
        return {"id": self.id, "section": self.section, "linktype": self.linktype_name,
                "linktype_number": self.linktype, "snaplen": self.snaplen,
                "tsresol": self.tsresol, "tsoffset": self.tsoffset, "name": self.name,
                "description": self.description}


@kernel(inline="always")
def _ticks_to_ns(ticks, binary, exp, offset_ns):
    # if_tsresol comes from the file: any exponent 0..127 must give a number, never a
    # shift past 63 bits or a divisor that overflowed to 0 (a hardware trap when compiled).
    if binary:
        if exp >= 63:
            return np.int64(ticks * (1e9 / 2.0 ** exp)) + offset_ns
        whole = ticks >> exp
        part = ticks & ((np.int64(1) << exp) - 1)
        if exp <= 30:
            frac = (part * 1_000_000_000) >> exp
        else:
            frac = np.int64(part * 1e9 / 2.0 ** exp)
        return whole * 1_000_000_000 + frac + offset_ns
    if exp <= 9:
        mul = np.int64(1)
        for _ in range(9 - exp):
            mul *= 10
        return ticks * mul + offset_ns
    if exp - 9 > 18:  # 10^19 exceeds int64: such ticks are all below a nanosecond
        return offset_ns
    div = np.int64(1)
    for _ in range(exp - 9):
        div *= 10
    return ticks // div + offset_ns


@kernel
def walk_pcapng(buf, pos, end, big, if_global, if_binary, if_exp, if_offset_ns, if_snaplen,
                prev_ts, off, cap, wire, ts_ns, iface, n):
    """Append packet blocks from buf[pos:end]; (pos, n, status, value)."""
    limit = off.shape[0]
    n_if = if_global.shape[0]
    while True:
        if n >= limit:
            return pos, n, FULL, 0
        if pos + 12 > end:
            return pos, n, NEED_MORE, 12
        btype = rd32(buf, pos, big)
        if btype == SHB:
            return pos, n, OTHER_BLOCK, btype
        blen = rd32(buf, pos + 4, big)
        if blen < 12 or blen % 4 != 0 or blen > MAX_RECORD:
            return pos, n, BAD_LENGTH, blen
        if pos + blen > end:
            return pos, n, NEED_MORE, blen
        if rd32(buf, pos + blen - 4, big) != blen:
            return pos, n, BAD_TRAILER, rd32(buf, pos + blen - 4, big)
        if btype == EPB or btype == PB:
            if blen < 32:
                return pos, n, BAD_LENGTH, blen
            if btype == EPB:
                ifid = rd32(buf, pos + 8, big)
            else:
                ifid = rd16(buf, pos + 8, big)
            ticks = (rd32(buf, pos + 12, big) << 32) | rd32(buf, pos + 16, big)
            caplen = rd32(buf, pos + 20, big)
            origlen = rd32(buf, pos + 24, big)
            if caplen > blen - 32:
                return pos, n, BAD_CAPLEN, caplen
            data = pos + 28
        elif btype == SPB:
            if blen < 16:
                return pos, n, BAD_LENGTH, blen
            ifid = 0
            origlen = rd32(buf, pos + 8, big)
            caplen = min(origlen, blen - 16)
            if n_if > 0 and if_snaplen[0] > 0:
                caplen = min(caplen, if_snaplen[0])
            data = pos + 12
            ticks = -1
        elif btype == CUSTOM or btype == CUSTOM_NOCOPY or btype == JOURNAL:
            # Wireshark shows these as frames: count them as records so frame numbers
            # and the record count stay tshark's
            off[n] = pos
            cap[n] = 0
            wire[n] = 0
            iface[n] = NOT_A_PACKET_BASE - (1 if btype == JOURNAL else 0)
            ts_ns[n] = ts_ns[n - 1] if n > 0 else prev_ts
            n += 1
            pos += blen
            continue
        else:
            return pos, n, OTHER_BLOCK, btype
        if ifid < n_if:
            iface[n] = if_global[ifid]
            if ticks < 0:          # SPBs carry no time: keep the previous packet's
                ts_ns[n] = ts_ns[n - 1] if n > 0 else prev_ts
            else:
                ts_ns[n] = _ticks_to_ns(ticks, if_binary[ifid], if_exp[ifid], if_offset_ns[ifid])
        else:
            iface[n] = -1 - min(ifid, 1 << 30)
            ts_ns[n] = (ts_ns[n - 1] if n > 0 else prev_ts) if ticks < 0 else ticks * 1000
        off[n] = data
        cap[n] = caplen
        wire[n] = origlen
        n += 1
        pos += blen


class PcapngWalker:
    """Walks pcapng blocks; keeps sections and interfaces (CaptureInfo reads them)."""

    def __init__(self):
        self.big = False
        self.sections = 0
        self.interfaces: list[Interface] = []
        self.bad_detail = ""
        self.warnings: list[str] = []
        self.prev_ts = 0
        self._tables = SectionTables()   # this section's interfaces by local id

    # ---- the kernel loop ------------------------------------------------------------
    def walk(self, buf: np.ndarray, pos: int, end: int, out):
        """Packet records into `out` until it is full; (pos, n, status, value)."""
        n = 0
        while True:
            t = self._tables.columns()
            pos, n, status, value = walk_pcapng(buf, pos, end, self.big, *t, self.prev_ts,
                                                out.off, out.cap, out.wire, out.ts_ns,
                                                out.iface, n)
            pos, n, status, value = int(pos), int(n), int(status), int(value)
            if n:
                self.prev_ts = int(out.ts_ns[n - 1])
            if status != OTHER_BLOCK:
                return pos, n, status, value
            step = self._python_block(buf, pos, end)
            if step[0] != "ok":
                return pos, n, step[1], step[2]
            pos = step[1]

    def walk_decode(self, buf: np.ndarray, pos: int, end: int, out, frame_base: int):
        """walk(), then decode the records found (times, outcomes into `out`) and their
        TCP rows; (pos, n, rows, k, status, value). The records are walked first, so
        the rows are allotted for exactly their number."""
        pos, n, status, value = self.walk(buf, pos, end, out)
        rows = tcp_rows(n)
        iface = out.iface[:n]
        k = int(decode_records(buf, out.off[:n], out.cap[:n], out.wire[:n], out.ts_ns[:n],
                               iface, self.linktype_of(iface), n, frame_base,
                               out.outcome[:n], out.aux[:n], rows)) if n else 0
        return pos, n, rows, k, status, value

    def linktype_of(self, iface: np.ndarray) -> np.ndarray:
        table = np.array([i.linktype for i in self.interfaces] + [-1], np.int32)
        return table[np.where(iface >= 0, iface, len(self.interfaces))]

    # ---- blocks handled in Python ---------------------------------------------------
    def _python_block(self, buf, pos, end):
        """("ok", next pos) or ("stop", status, value)."""
        if pos + 12 > end:
            return ("stop", NEED_MORE, 12)
        raw = bytes(buf[pos:pos + 12])
        if struct.unpack("<I", raw[:4])[0] == SHB:
            bom = struct.unpack("<I", raw[8:12])[0]
            if bom == BYTE_ORDER_MAGIC:
                big = False
            elif bom == 0x4D3C2B1A:
                big = True
            else:
                self.bad_detail = f"byte-order magic 0x{bom:08x}"
                return ("stop", BAD_MAGIC, bom)
        else:
            big = self.big
        order = ">" if big else "<"
        btype, blen = struct.unpack(order + "II", raw[:8])
        if blen < 12 or blen % 4 or blen > MAX_RECORD or (btype == SHB and blen < 28):
            return ("stop", BAD_LENGTH, blen)
        if pos + blen > end:
            return ("stop", NEED_MORE, blen)
        block = bytes(buf[pos:pos + blen])
        trailer = struct.unpack(order + "I", block[-4:])[0]
        if trailer != blen:
            return ("stop", BAD_TRAILER, trailer)
        if btype == SHB:
            major = struct.unpack(order + "H", block[12:14])[0]
            if major != 1:
                self.bad_detail = f"version {major}"
                return ("stop", BAD_VERSION, major)
            self.big = big
            self.sections += 1
            self._tables = SectionTables()
        elif btype == IDB:
            if blen < 20:
                return ("stop", BAD_LENGTH, blen)
            self._add_interface(block, order)
        return ("ok", pos + blen)

    def _add_interface(self, block: bytes, order: str) -> None:
        linktype, _res, snaplen = struct.unpack(order + "HHI", block[8:16])
        itf = Interface(len(self.interfaces), self.sections - 1, linktype, snaplen)
        for code, value in _options(block[16:-4], order):
            if code == OPT_IF_TSRESOL and value:
                r = value[0]
                itf.ts_binary, itf.ts_exp = bool(r & 0x80), r & 0x7F
                itf.tsresol = f"2^-{itf.ts_exp}" if itf.ts_binary else f"10^-{itf.ts_exp}"
                if itf.ts_binary and itf.ts_exp > 62:
                    itf.ts_exp = 62     # finer than 1/2^62 s is below a nanosecond anyway
            elif code == OPT_IF_TSOFFSET and len(value) == 8:
                itf.tsoffset = struct.unpack(order + "q", value)[0]
            elif code == OPT_IF_NAME:
                itf.name = value.decode("utf-8", "replace").rstrip("\0")
            elif code == OPT_IF_DESCRIPTION:
                itf.description = value.decode("utf-8", "replace").rstrip("\0")
        if itf.offset_ns is None:
            self.warnings.append(f"interface {itf.id}: time offset (if_tsoffset) of {itf.tsoffset} s "
                                 "is beyond any time the capture could have: its times are read without it")
        self.interfaces.append(itf)
        self._tables.add(itf)


class SectionTables:
    """A section's interfaces as walk_pcapng reads them (by the section's local id):
    global id, binary resolution, exponent, offset in ns, snaplen. Grown by doubling, so
    an IDB adds a row instead of rebuilding the tables (40,000 IDBs took 140 s)."""

    def __init__(self):
        self.n = 0
        self._columns = tuple(np.empty(8, dtype) for dtype in
                              (np.int64, np.bool_, np.int64, np.int64, np.int64))

    def add(self, itf: Interface) -> None:
        if self.n == len(self._columns[0]):
            self._columns = tuple(np.concatenate([c, np.empty_like(c)]) for c in self._columns)
        values = (itf.id, itf.ts_binary, itf.ts_exp, itf.offset_ns or 0, itf.snaplen)
        for column, value in zip(self._columns, values):
            column[self.n] = value
        self.n += 1

    def columns(self) -> tuple[np.ndarray, ...]:
        return tuple(c[:self.n] for c in self._columns)


def _options(data: bytes, order: str):
    """(code, value) pairs of a pcapng option list; stops at opt_endofopt or damage."""
    p = 0
    while p + 4 <= len(data):
        code, length = struct.unpack(order + "HH", data[p:p + 4])
        if code == OPT_END or p + 4 + length > len(data):
            return
        yield code, data[p + 4:p + 4 + length]
        p += 4 + ((length + 3) & ~3)
