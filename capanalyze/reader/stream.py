"""The chunked reader: fill a large buffer, walk records, decode, yield DataFrames.

One numpy buffer per reader; incomplete trailing bytes move to its front before the
next fill. A record bigger than the buffer grows it (up to records.MAX_RECORD).
"""
from __future__ import annotations

import struct

import numpy as np
import pandas as pd

from .. import schema
from ..errors import CaptureError
from . import outcomes, pcap, pcapng
from .addresses import AddressInterner
from .blocks import Block, BlockReader
from .decode import TCP_FIELDS, TcpRows
from .info import CaptureInfo
from .linktypes import linktype_name
from .records import (BAD_CAPLEN, BAD_LENGTH, BAD_TRAILER, FULL, NEED_MORE, RecordArrays)
from .source import open_source

DEFAULT_CHUNK_BYTES = 8 << 20    # fits in L3: copy, walk and decode hit cache (0.58 -> 0.36 s per 1M packets)
MAX_ROWS = 1 << 20          # records per walk/decode batch: bounds every chunk's rows
_HEAD_BYTES = 4096

class CaptureReader:
    """open_capture()'s result: .chunks() yields packet-table DataFrames, .info counts."""

    def __init__(self, source, chunk_bytes: int = DEFAULT_CHUNK_BYTES, max_rows: int = MAX_ROWS):
        self._src = open_source(source)
        name = self._src.name
        self.info = CaptureInfo(path=name, bytes_total=self._src.bytes_total)
        self.addresses = AddressInterner()
        self._max_rows = max_rows
        # tiny chunk sizes are allowed (tests use them to split records across chunks)
        self._chunk_bytes = max(chunk_bytes, 64)
        self._buf = np.empty(min(_HEAD_BYTES, self._chunk_bytes), np.uint8)
        self._fill = self._src.readinto(memoryview(self._buf))
        self._buf_offset = 0                # file offset (uncompressed) of buf[0]
        self._started = False
        self._last_ts: int | None = None
        try:
            self._walker = self._detect_format()
        except CaptureError:
            self._src.close()
            raise

    # ---- format detection -----------------------------------------------------------
    def _detect_format(self):
        name, head = self.info.path, bytes(self._buf[:min(self._fill, 24)])
        gz = " (gzip)" if self._src.compressed else ""
        if not head:
            if self._src.compressed:
                raise CaptureError(f"{name}: empty capture (the gzip data holds no bytes)")
            raise CaptureError(f"{name}: empty file (0 bytes)")
        if len(head) < 4:
            raise CaptureError(f"{name}: too short to be a capture ({len(head)} bytes)")
        magic = struct.unpack("<I", head[:4])[0]
        if magic in pcap.MAGICS:
            header = pcap.parse_header(name, head)
            self.info.format = ("pcap (nanosecond)" if header.nanosecond else "pcap") + gz
            self.info.linktypes = [linktype_name(header.linktype)]
            self.info.interfaces = [{"id": 0, "linktype": linktype_name(header.linktype),
                                     "linktype_number": header.linktype,
                                     "snaplen": header.snaplen}]
            self.info.snaplen = header.snaplen or None
            return pcap.PcapWalker(header)
        if magic == pcapng.SHB:
            self.info.format = "pcapng" + gz
            return pcapng.PcapngWalker()
        if magic in pcap.MODIFIED_MAGICS:
            raise CaptureError(f"{name}: modified (Kuznetzov) pcap format is not supported")
        what = "gzip data that does not hold" if gz else "not"
        raise CaptureError(f"{name}: {what} a pcap or pcapng file "
                           f"(starts with 0x{head[:4].hex()})")

    # ---- the chunk loop -------------------------------------------------------------
    def chunks(self):
        """Packet-table DataFrames in file order; each at most max_rows rows."""
        for cols in self.columns():
            yield self.to_frame(self.add_codes(cols))

    def columns(self):
        """The same chunks as dicts of numpy arrays (TCP_FIELDS; add_codes() turns the
        address words into src_code/dst_code): the fast path, with no pandas work per chunk."""
        if self._started:
            raise RuntimeError("chunks() can be iterated only once per reader")
        self._started = True
        try:
            yield from self._chunks()
        finally:
            self._finish()

    def _chunks(self):
        out = RecordArrays(min(self._max_rows, self._chunk_bytes // 16 + 1))
        blocks = BlockReader(self._src, self._chunk_bytes)
        tail, offset = self._buf[:self._fill].copy(), 0   # the head read to detect the format
        while True:
            block = blocks.next()
            eof = block is None
            block = Block(tail, 0, tail.shape[0]) if eof else block.prepend(tail)
            self._buf_offset = offset - block.start
            self.info.bytes_read = self._src.bytes_read
            pos, status, value = yield from self._walk_block(block, out)
            if status != NEED_MORE:
                self._stop_damaged(status, value, pos)
                return
            if eof:
                if pos < block.end:
                    self._warn_truncated(block.end - pos, value)
                return
            tail, offset = block.buf[pos:block.end].copy(), self._buf_offset + pos

    def _walk_block(self, block: Block, out: RecordArrays):
        """Walk and decode a block's complete records; returns where and why it stopped."""
        pos = block.start
        while True:
            pos, n, rows, k, status, value = self._walker.walk_decode(
                block.buf, pos, block.end, out, self.info.records)
            if n:
                self._account(out, n, k)
            if k:
                yield self._columns(rows, k)
            if status != FULL:
                return pos, status, value

    # ---- accounting -----------------------------------------------------------------
    def _account(self, out: RecordArrays, n: int, k: int) -> None:
        info = self.info
        info.records += n
        info.tcp_packets += k
        before = outcomes.NO_TIME if self._last_ts is None else self._last_ts
        lo, hi, backwards, skipped = (int(v) for v in outcomes.walk_summary(
            out.ts_ns[:n], out.outcome[:n], out.aux[:n], before, out.skipped_keys))
        if skipped:
            info.add_skipped(outcomes.skipped_reasons(out.skipped_keys[:skipped]))
        info.first_ts_ns = lo if info.first_ts_ns is None else min(info.first_ts_ns, lo)
        info.last_ts_ns = hi if info.last_ts_ns is None else max(info.last_ts_ns, hi)
        info.out_of_order_ts += backwards
        self._last_ts = int(out.ts_ns[n - 1])

    def _columns(self, rows: TcpRows, k: int) -> dict:
        """The k rows decoded, as columns: cut in place (realloc), so the capacity left
        unused is given back and the chunk holds only its rows."""
        for column in rows:
            column.resize(k, refcheck=False)   # safe: no view of the rows is out yet
        return dict(zip(TCP_FIELDS, rows))

    def add_codes(self, col: dict) -> dict:
        """src_code/dst_code in place of the 128-bit address words: each address as a
        code into the reader's categories. Rows kept later are 32 bytes smaller for it
        (20M packets: 10 MB of notable rows)."""
        for side in ("src", "dst"):   # sources first: codes are given in that order
            col[f"{side}_code"] = self.addresses.codes(col.pop(f"{side}_hi"), col.pop(f"{side}_lo"))
        return col

    def to_frame(self, col: dict, extra: tuple[str, ...] = ()) -> pd.DataFrame:
        """A column chunk (or several concatenated) as a packet-table DataFrame: the
        packet-table columns `col` has, or can be derived from what it has."""
        out = {name: col[name] for name in schema.PACKET_COLUMNS if name in col}
        derived = {"src": ("src_code", self.addresses.categorical),
                   "dst": ("dst_code", self.addresses.categorical),
                   "flags": ("tcp_flags", schema.flags_text_column),
                   "ts": ("ts_ns", schema.epoch_seconds)}
        for name, (source, derive) in derived.items():
            if source in col:
                out[name] = derive(col[source])
        table = pd.DataFrame({name: out[name] for name in schema.PACKET_COLUMNS if name in out},
                             copy=False)
        for name in extra:
            table[name] = col[name]
        return table

    # ---- endings --------------------------------------------------------------------
    def _warn_truncated(self, present: int, needed: int) -> None:
        unit = "record" if isinstance(self._walker, pcap.PcapWalker) else "block"
        self.info.warnings.append(
            f"capture truncated mid-{unit} after frame {self.info.records} "
            f"({present} of {needed} bytes present): the last {unit} was ignored")

    def _stop_damaged(self, status: int, value: int, pos: int) -> None:
        frame, at = self.info.records, self._buf_offset + pos
        tail = f"damaged file, stopped reading after frame {frame}"
        if isinstance(self._walker, pcap.PcapWalker):
            snap = self._walker.header.snaplen
            msg = (f"record {frame + 1} at byte {at} claims {value} captured bytes, more than "
                   f"the snaplen {snap} allows: {tail}")
        elif status == BAD_LENGTH:
            msg = (f"pcapng block at byte {at} has an impossible length {value} (must be a "
                   f"multiple of 4, at least 12): {tail}")
        elif status == BAD_TRAILER:
            msg = (f"pcapng block at byte {at}: trailing length {value} differs from its "
                   f"leading length: {tail}")
        elif status == BAD_CAPLEN:
            msg = (f"pcapng packet block at byte {at} claims {value} captured bytes, more "
                   f"than the block holds: {tail}")
        else:
            msg = f"pcapng section header at byte {at} has an unsupported " \
                  f"{self._walker.bad_detail}: {tail}"
        self.info.warnings.append(msg)

    def _finish(self) -> None:
        info = self.info
        info.bytes_read = self._src.bytes_read
        info.warnings.extend(self._src.end_warnings())
        if isinstance(self._walker, pcapng.PcapngWalker):
            self._describe_interfaces(self._walker)
        info.complete = True
        self._src.close()

    def _describe_interfaces(self, walker: pcapng.PcapngWalker) -> None:
        info = self.info
        info.sections = walker.sections
        info.warnings.extend(walker.warnings)
        info.interfaces = [i.as_dict() for i in walker.interfaces]
        info.linktypes = list(dict.fromkeys(i.linktype_name for i in walker.interfaces))
        snaps = [i.snaplen for i in walker.interfaces if i.snaplen]
        info.snaplen = min(snaps) if snaps else None


def empty_packet_table() -> pd.DataFrame:
    """A zero-row packet table with the schema's dtypes."""
    return pd.DataFrame({name: pd.Series([], dtype=dtype)
                         for name, dtype in schema.PACKET_COLUMNS.items()})


def concat_chunks(chunks: list[pd.DataFrame], addresses: AddressInterner) -> pd.DataFrame:
    """One table from a reader's chunks, with the reader's final address categories."""
    if not chunks:
        return empty_packet_table()
    plain = [c.drop(columns=["src", "dst", "flags"]) for c in chunks]
    table = plain[0] if len(plain) == 1 else pd.concat(plain, ignore_index=True)
    for name in ("src", "dst"):
        codes = np.concatenate([c[name].cat.codes.to_numpy() for c in chunks])
        table[name] = addresses.categorical(codes)
    table["flags"] = schema.flags_text_column(table["tcp_flags"].to_numpy())
    return table[list(schema.PACKET_COLUMNS)]
