"""Record-walk output arrays and the status codes the walk kernels return.

A walk kernel appends one entry per packet record to these arrays (offset of the
packet bytes in the chunk buffer, captured and wire length, time, interface) and stops
when the buffer runs out, the arrays are full, or the file's framing is damaged.
"""
from __future__ import annotations

import numpy as np
from ..jit import kernel

NEED_MORE = 0      # the next record/block is not complete in the buffer
FULL = 1           # output arrays full: decode what is there, call again
BAD_LENGTH = 2     # a record/block length that cannot be right: stop reading
OTHER_BLOCK = 3    # pcapng: a block the Python side handles (SHB, IDB, unknown)
BAD_TRAILER = 4    # pcapng: trailing block length differs from the leading one
BAD_CAPLEN = 5     # pcapng: packet's captured length overruns its block

# iface marker of a record that is a pcapng block but not a packet (see decode.py)
NOT_A_PACKET_BASE = -(1 << 31) + 16

# No record can be larger than this, whatever its header says: lengths are untrusted.
MAX_RECORD = 256 << 20
# libpcap's own ceiling for a pcap record (and what tshark accepts) unless the file's
# snaplen is larger.
PCAP_MAX_SNAPLEN = 262144


class RecordArrays:
    """Preallocated walk outputs; `n` entries of each are valid after a walk. The decode
    adds each record's outcome and its detail (aux); pcap's walk decodes as it goes and
    fills only ts_ns, outcome and aux."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.off = np.empty(capacity, np.int64)
        self.cap = np.empty(capacity, np.int64)
        self.wire = np.empty(capacity, np.int64)
        self.ts_ns = np.empty(capacity, np.int64)
        self.iface = np.empty(capacity, np.int32)
        self.outcome = np.empty(capacity, np.int8)
        self.aux = np.empty(capacity, np.int64)
        self.skipped_keys = np.empty(capacity, np.int64)   # walk_summary's


@kernel(inline="always")
def rd16(buf, p, big):
    if big:
        return (np.int64(buf[p]) << 8) | np.int64(buf[p + 1])
    return (np.int64(buf[p + 1]) << 8) | np.int64(buf[p])


@kernel(inline="always")
def rd32(buf, p, big):
    if big:
        return ((np.int64(buf[p]) << 24) | (np.int64(buf[p + 1]) << 16)
                | (np.int64(buf[p + 2]) << 8) | np.int64(buf[p + 3]))
    return ((np.int64(buf[p + 3]) << 24) | (np.int64(buf[p + 2]) << 16)
            | (np.int64(buf[p + 1]) << 8) | np.int64(buf[p]))
