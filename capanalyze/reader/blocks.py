"""Blocks of a byte source, read one ahead in a second thread.

Copying a multi-GB capture out of the page cache takes as long as walking and decoding
it (0.12 s per GB here), so a thread that only reads lets the two overlap. Each block
has free room in front of its data: the incomplete record at the end of the previous
block is copied there, so a record that straddles two blocks costs a few hundred bytes
of copying, not the whole block.
"""
from __future__ import annotations

import threading
from queue import Queue

import numpy as np

HEADROOM = 256 << 10    # larger straddling records (rare: jumbo pcapng blocks) are joined


class Block:
    """`buf[start:end]` holds the data; `buf[:start]` is free room for a carried tail."""

    def __init__(self, buf: np.ndarray, start: int, end: int):
        self.buf, self.start, self.end = buf, start, end

    def prepend(self, tail: np.ndarray) -> "Block":
        """This block's data preceded by `tail` (in place when it fits the room)."""
        n = tail.shape[0]
        if n <= self.start:
            self.buf[self.start - n:self.start] = tail
            self.start -= n
            return self
        joined = np.concatenate([tail, self.buf[self.start:self.end]])
        return Block(joined, 0, joined.shape[0])


class BlockReader:
    """Yields Blocks of `size` bytes (the last may be shorter); `threaded` reads ahead."""

    def __init__(self, src, size: int, threaded: bool):
        self._src, self._size = src, size
        self._free: Queue = Queue()
        self._full: Queue = Queue()
        self._stop = threading.Event()
        for _ in range(3 if threaded else 1):
            self._free.put(np.empty(HEADROOM + size, np.uint8))
        self._thread = None
        if threaded:
            self._thread = threading.Thread(target=self._run, daemon=True,
                                            name="capanalyze-io")
            self._thread.start()

    def next(self) -> Block | None:
        """The next block, or None at the end of the input."""
        if self._thread is None:
            item = self._read_one()
        else:
            item = self._full.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def release(self, block: Block) -> None:
        """The caller is done with a block's bytes: its buffer may be filled again."""
        if block.buf.shape[0] == HEADROOM + self._size:
            self._free.put(block.buf)

    def close(self) -> None:
        self._stop.set()
        self._free.put(None)   # wakes a thread waiting for a buffer
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                item = self._read_one()
            except BaseException as exc:  # handed to the caller, raised there
                item = exc
            self._full.put(item)
            if item is None or isinstance(item, BaseException):
                return

    def _read_one(self) -> Block | None:
        buf = self._free.get()
        if buf is None or self._stop.is_set():
            return None
        got = self._src.readinto(memoryview(buf)[HEADROOM:])
        if got == 0:
            return None
        return Block(buf, HEADROOM, HEADROOM + got)
