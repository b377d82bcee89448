"""Blocks of a byte source, each with free room in front of its data.

The incomplete record at the end of one block is copied into the room in front of the
next block's data, so a record that straddles two blocks costs a few hundred bytes of
copying, not the block. (A thread reading the next block ahead was measured: on two
cores it slowed the whole analysis by 5-10 %, the reader and the TCP rules already keep
both cores busy. Measured again on 2026-12-07, after the main thread's work shrank: the
reader alone took 0.39-0.44 s instead of 0.61 on 5M mixed, 0.71-0.75 instead of 1.11 on
5M bulk, but the whole run was 0.25-0.3 s slower on both, three threads on two cores.
Nor does it pay for the analysing thread to read the next blocks while it waits for
chunks (bulk: it waits 0.6 s of a 1.24 s loop): it read 150-220 of 533 blocks, and the
analysis took 1.92-2.07 s instead of 1.72-1.80, the walk then reading blocks copied on
the other core instead of the one it had just copied itself. Walking a read-only mmap of
the file instead of copying it was measured too, with and without MAP_POPULATE: the copy
is ~0.4 s of the reader thread's ~0.95 s on a 1.9 GB capture, but without it walk +
decode took 0.85-1.0 s instead of ~0.55 s, the decode reading its headers from memory
rather than from the L3 cache the copy had just filled; the reader thread went from
~0.95 to 1.13-1.31 s. Reading, walking and decoding 0.5-1 MiB pieces while they sit in
L2, handed over as 8 MiB chunks, was measured as well: the walk went from 0.20 to
0.05-0.08 s, but the decode stayed at 0.31 s, bound by writing its ~600 MB of rows
rather than by reading headers (into a buffer that stays in cache it took 0.18 s, and
copying the rows out 0.17-0.22 s), and in the two-thread run the loop was 0.1-0.2 s
slower: eight times the reader's GIL hand-offs. What did pay: the pcap walk decoding
each record as it finds it, walk + decode 0.27 s.)
"""
from __future__ import annotations

import numpy as np

HEADROOM = 256 << 10    # larger straddling records (rare: jumbo pcapng blocks) are joined


class Block:
    """`buf[start:end]` holds the data; `buf[:start]` is free room for a carried tail."""

    def __init__(self, buf: np.ndarray, start: int, end: int):
        self.buf, self.start, self.end = buf, start, end

    def prepend(self, tail: np.ndarray) -> Block:
        """This block's data preceded by `tail` (in place when it fits the room)."""
        n = tail.shape[0]
        if n <= self.start:
            self.buf[self.start - n:self.start] = tail
            self.start -= n
            return self
        joined = np.concatenate([tail, self.buf[self.start:self.end]])
        return Block(joined, 0, joined.shape[0])


class BlockReader:
    """Blocks of `size` bytes (the last may be shorter), all in one reused buffer: the
    caller copies what it keeps of a block before asking for the next."""

    def __init__(self, src, size: int):
        self._src = src
        self._buf = np.empty(HEADROOM + size, np.uint8)

    def next(self) -> Block | None:
        """The next block, or None at the end of the input."""
        got = self._src.readinto(memoryview(self._buf)[HEADROOM:])
        return Block(self._buf, HEADROOM, HEADROOM + got) if got else None
