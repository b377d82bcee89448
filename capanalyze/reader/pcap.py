"""Classic pcap: the 24-byte file header and a compiled walk over 16-byte record headers."""
from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np
from ..jit import kernel

from ..errors import CaptureError
from .linktypes import LINKTYPE_MASK
from .decode import decode_one, tcp_rows
from .records import BAD_LENGTH, FULL, MAX_RECORD, NEED_MORE, PCAP_MAX_SNAPLEN, rd32

# magic as read little-endian -> (big-endian file, nanosecond timestamps)
MAGICS = {
    0xA1B2C3D4: (False, False), 0xD4C3B2A1: (True, False),
    0xA1B23C4D: (False, True), 0x4D3CB2A1: (True, True),
}
MODIFIED_MAGICS = (0xA1B2CD34, 0x34CDB2A1)
HEADER_LEN = 24
RECORD_HEADER_LEN = 16


@dataclass
class PcapHeader:
    big_endian: bool
    nanosecond: bool
    version: tuple[int, int]
    snaplen: int
    linktype: int

    @property
    def max_caplen(self) -> int:
        """Largest record length we believe: the file's snaplen, at least libpcap's."""
        return min(max(self.snaplen, PCAP_MAX_SNAPLEN), MAX_RECORD)


def parse_header(name: str, head: bytes) -> PcapHeader:
    magic = struct.unpack("<I", head[:4])[0]
    big, nsec = MAGICS[magic]
    if len(head) < HEADER_LEN:
        raise CaptureError(f"{name}: pcap file header cut short ({len(head)} of 24 bytes)")
    order = ">" if big else "<"
    vmaj, vmin, _zone, _sigfigs, snaplen, linktype = struct.unpack(order + "HHiIII", head[4:24])
    return PcapHeader(big, nsec, (vmaj, vmin), snaplen, linktype & LINKTYPE_MASK)


@kernel
def walk_pcap(buf, pos, end, big, nsec, max_caplen, linktype, frame_base, ts_ns, outcome, aux,
              rows):
    """Walk the records in buf[pos:end] and decode each one as it is found, while its
    bytes are in cache (the next header is read while this one decodes): TCP rows into
    `rows`, every record's time and outcome. Stops when the arrays are full.

    Returns (pos, records, TCP rows, status, value)."""
    frac_ns = 1 if nsec else 1000
    limit = ts_ns.shape[0]
    row_limit = rows.frame.shape[0]
    n = k = 0
    while True:
        if n >= limit or k >= row_limit:
            return pos, n, k, FULL, 0
        if pos + 16 > end:
            return pos, n, k, NEED_MORE, 16
        caplen = rd32(buf, pos + 8, big)
        if caplen > max_caplen:
            return pos, n, k, BAD_LENGTH, caplen
        if pos + 16 + caplen > end:
            return pos, n, k, NEED_MORE, 16 + caplen
        ts = rd32(buf, pos, big) * 1_000_000_000 + rd32(buf, pos + 4, big) * frac_ns
        ts_ns[n] = ts
        outcome[n], aux[n], written = decode_one(buf, pos + 16, caplen, rd32(buf, pos + 12, big),
                                                 ts, 0, linktype, frame_base + n + 1, rows, k)
        k += written
        n += 1
        pos += 16 + caplen


class PcapWalker:
    """Walks classic pcap records; the reader calls walk() on each filled buffer."""

    def __init__(self, header: PcapHeader):
        self.header = header
        self.skip_header = True
        # TCP rows allotted per walk: about what the block before had (the reader cuts off
        # the rest), as the packets an 8 MiB block holds range from ~5k to ~120k
        self.rows_hint = 1 << 15
        self._block_rows = 0   # decoded so far from the block being walked

    def walk_decode(self, buf: np.ndarray, pos: int, end: int, out, frame_base: int):
        """Records of buf[pos:end] (times, outcomes into `out`) and their TCP rows, until
        either is full; (pos, n, rows, k, status, value)."""
        if self.skip_header:
            pos += HEADER_LEN
            self.skip_header = False
        h = self.header
        max_rows = min(out.capacity, self.rows_hint)
        rows = tcp_rows(max_rows)
        pos, n, k, status, value = walk_pcap(buf, pos, end, h.big_endian, h.nanosecond,
                                             h.max_caplen, h.linktype, frame_base, out.ts_ns,
                                             out.outcome, out.aux, rows)
        self._block_rows += k
        if k == max_rows:        # the rest of this block needs more
            self.rows_hint = 2 * max_rows
        elif status != FULL:     # the next block is much like this one, all of it: sized
            # from its last walk alone, a block cut into several kept the next one cut too
            self.rows_hint = max(1024, self._block_rows + self._block_rows // 4)
            self._block_rows = 0
        return int(pos), int(n), rows, int(k), int(status), int(value)
