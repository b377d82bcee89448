"""Tables that grow with the capture, and where they go when RAM is not the place.

Besides the chunks in flight, the chunk loop keeps only what grows with connections or
with time: per-connection state (MappedTable), the idle-gap and RST records the TCP
rules emit (RecordBuffer) and the notable packets (RowBuffer). The connection state
lives in an unlinked temporary file ($TMPDIR), and on the CLI path (no packet table)
the records and notable packets go to such files as they grow, so a longer capture
does not make a much larger process (20M packets: ~15 % more than 5M, with 3.6x the
connections). Without a usable temporary directory, or with no room left in it, they
stay in memory: the same results, more RAM. On a tmpfs $TMPDIR the files are memory
too, but not the process's.
"""
from __future__ import annotations

import mmap
import os
import tempfile

import numpy as np

# Per-connection rows of the newest connections stay mapped (MappedTable.forget_old):
# most of the active connections are among them. 4096: 4.7 MB of TCP state.
HOT_CONNECTIONS = 4096


def grown(rows: int, needed: int) -> int:
    """The size a growing table in memory is resized to (RowBuffer, and MappedTable
    without a temporary file): an eighth more (at least 64 rows), or what is needed.
    resize() zero-fills what it adds, so all of it is resident, and realloc remaps
    rather than copies, so small steps cost little (the TCP state of 90k connections
    took 35 MB less than growing by half)."""
    return max(needed, rows + max(rows // 8, 64))


def resized(a: np.ndarray, rows: int) -> np.ndarray:
    """`a` with `rows` rows, in place: realloc remaps a large block's pages instead of
    copying them, so a growing table is never held twice (at 82k connections D alone
    is 67 MB). Added rows are zero. Safe because no view of `a` is kept across a call."""
    a.resize((rows, *a.shape[1:]), refcheck=False)
    return a


class RowBuffer:
    """Chunk rows appended into one array per column, each grown in place (resized).
    Joining the chunks at the end held every row twice, and their freed pieces were
    too small for the tables built next to reuse (20M packets: 60-80 MB of peak RSS).

    With `spill`, the rows past MEMORY_BYTES wait in a temporary file until `arrays()`:
    the notable packets grow with the capture (332k rows, 47 MB, in 20M packets) and
    are read only once the loop is done."""

    INITIAL_ROWS = 1024
    MEMORY_BYTES = 16 << 20

    def __init__(self, spill: bool = False):
        self.columns: dict[str, np.ndarray] = {}
        self.rows = 0
        self._spill = spill
        self._file = None
        self._blocks: list[tuple[int, int]] = []   # (file offset, rows), columns one after another
        self._layout: dict[str, int] = {}          # where each column starts in a block, per row

    def append(self, cols: dict, rows: np.ndarray | None = None) -> None:
        """All of a chunk's rows, or those at `rows` (positions)."""
        end = self.rows + (len(cols["frame"]) if rows is None else len(rows))
        if not self.columns:
            self.columns = {name: np.empty(max(end, self.INITIAL_ROWS), c.dtype) for name, c in cols.items()}
        size = len(self.columns["frame"])
        if end > size:
            for column in self.columns.values():
                resized(column, grown(size, end))
        for name, column in self.columns.items():
            into, values = column[self.rows:end], cols[name]
            if values.dtype != column.dtype:   # np.take would cast silently
                raise TypeError(f"column {name}: {values.dtype}, earlier chunks {column.dtype}")
            if rows is None:
                into[:] = values
            else:
                np.take(values, rows, out=into)
        self.rows = end
        if self._spill and self.rows * self._row_bytes() >= self.MEMORY_BYTES:
            self._write_out()

    def arrays(self, names=None) -> dict[str, np.ndarray] | None:
        """The columns of every row appended (only `names`, when given); the buffer is
        left empty."""
        if names is not None:
            self.columns = {name: c for name, c in self.columns.items() if name in names}
        if self._blocks:
            return self._joined()
        for column in self.columns.values():
            resized(column, self.rows)
        columns, self.columns, self.rows = self.columns, {}, 0
        return columns or None

    def _row_bytes(self) -> int:
        return sum(column.itemsize for column in self.columns.values())

    def _write_out(self) -> None:
        try:
            self._file = self._file or SpillFile("capanalyze-rows-")
            offset = self._file.append([column[:self.rows] for column in self.columns.values()])
            self._layout = dict(zip(self.columns, np.cumsum(
                [0] + [c.itemsize for c in self.columns.values()][:-1]).tolist()))
        except OSError:   # no room or no temp dir: keep the rows in memory
            self._spill = False
            return
        self._blocks.append((offset, self.rows))
        self.rows = 0

    def _joined(self) -> dict[str, np.ndarray]:
        """Each column whole, read back block by block (the rows in memory come last);
        one column at a time, so the buffer's own copy goes as the whole one comes."""
        total = self.rows + sum(rows for _, rows in self._blocks)
        columns = {}
        for name, skipped in self._layout.items():   # skipped: bytes per row before it
            if name not in self.columns:
                continue
            column = self.columns.pop(name)
            whole = np.empty(total, column.dtype)
            pos = 0
            for offset, rows in self._blocks:
                self._file.read_into(offset + rows * skipped, whole[pos:pos + rows])
                pos += rows
            whole[pos:] = column[:self.rows]
            columns[name] = whole
        self._file.close()
        self._file, self._blocks, self.rows = None, [], 0
        return columns


class SpillFile:
    """An unlinked temporary file ($TMPDIR) that arrays are appended to and read back
    from. Writing and reading back cost ~1.3 ms per MB (page cache)."""

    def __init__(self, prefix: str):
        self._file = _temporary_file(prefix)

    def append(self, arrays) -> int:
        """Write the arrays one after the other; their offset."""
        offset = self._file.seek(0, os.SEEK_END)
        for a in arrays:
            self._file.write(memoryview(np.ascontiguousarray(a)).cast("B"))
        return offset

    def read_into(self, offset: int, out: np.ndarray) -> None:
        self._file.seek(offset)
        self._file.readinto(memoryview(out).cast("B"))

    def close(self) -> None:
        self._file.close()


class RecordBuffer:
    """Rows the kernel appends (idle gaps, RSTs), in blocks: none is copied to grow.

    Idle gaps grow with the capture's time, not its connections (1.3M of them, 196 MB,
    in 20M packets), and the CLI reads only a few of them, after the loop. With `spill`,
    each block is a region of an unlinked temporary file ($TMPDIR) mapped shared, and
    every full block past MEMORY_BYTES is forgotten (unmapped, see MappedTable): it
    stays in the file and comes back, unchanged, when `blocks()` or `drain()` reads it.
    Forgetting copies nothing and reading back costs a page fault per 64 KB, so no full
    block stays (writing blocks out and reading them back cost ~1.3 ms per MB, so the
    first 32 MB of them stayed in memory before: the 5M-packet runs took as long with
    either). Without a usable temporary directory every block is an ordinary array."""

    BLOCK_ROWS = 1 << 16
    MEMORY_BYTES = 0

    def __init__(self, width: int, spill: bool = False):
        self.width = width
        self._done: list = []          # full blocks: (rows, their mapped region or None)
        self._current = np.zeros((0, width), dtype=np.int64)
        self._region = None            # the current block's, when mapped
        self._used = 0
        self._regions = None
        self._spill = spill
        self._held = 0   # bytes of full blocks kept mapped

    def room(self, at_least: int) -> np.ndarray:
        """Free rows for the kernel (at least `at_least`); tell added() how many it used."""
        if len(self._current) - self._used < at_least:
            self._retire_current()
            self._current = self._new_block(max(self.BLOCK_ROWS, at_least))
            self._used = 0
        return self._current[self._used:]

    def added(self, rows: int) -> None:
        self._used += rows

    def blocks(self):
        """The records in order, one block at a time."""
        for block, _ in self._done:
            yield block
        yield self._current[:self._used]

    def drain(self):
        """blocks(), each let go of once the caller moves on to the next, so memory
        falls as the records are read; the buffer is empty afterwards."""
        self._retire_current()
        done, self._done, self._held = self._done[::-1], [], 0
        self._current, self._region, self._used = self._current[:0], None, 0
        if not done:
            yield self._current
        while done:
            block, region = done.pop()
            yield block
            if region is not None:
                region.madvise(mmap.MADV_DONTNEED)

    def array(self) -> np.ndarray:
        blocks = list(self.blocks())
        return blocks[0] if len(blocks) == 1 else np.concatenate(blocks)

    def close(self) -> None:
        if self._regions is not None:
            self._regions.close()   # the regions stay mapped while a view of them lives
        self._done, self._current, self._region, self._regions = [], self._current[:0], None, None

    def _new_block(self, rows: int) -> np.ndarray:
        self._region = None
        if self._spill:
            try:
                self._regions = self._regions or FileRegions("capanalyze-gaps-")
                self._region = self._regions.map(rows * self.width * 8)
                return np.frombuffer(self._region, np.int64, rows * self.width).reshape(rows, self.width)
            except OSError:   # no room or no temp dir: this block and the rest in memory
                self._spill = False
        return np.zeros((rows, self.width), np.int64)

    def _retire_current(self) -> None:
        # a view: the block's unused rows were never written, so they take no memory
        block = self._current[:self._used]
        if not len(block):
            return
        if self._region is not None and self._held >= self.MEMORY_BYTES:
            block = self._spilled(block)
        else:
            self._held += block.nbytes
        self._done.append((block, self._region))

    def _spilled(self, block: np.ndarray) -> np.ndarray:
        """Forget a full block: its rows stay in the file until read."""
        self._region.madvise(mmap.MADV_DONTNEED)
        return block


class FileRegions:
    """Regions of an unlinked temporary file, each mapped shared on its own."""

    def __init__(self, prefix: str):
        self._file = _temporary_file(prefix)
        self._end = 0

    def map(self, nbytes: int) -> mmap.mmap:
        size = -(-max(nbytes, 1) // mmap.PAGESIZE) * mmap.PAGESIZE
        _reserve(self._file, self._end, size)
        region = mmap.mmap(self._file.fileno(), size, offset=self._end)
        self._end += size
        return region

    def close(self) -> None:
        self._file.close()


class MappedTable:
    """A growing int64 table (`array`: rows x width) kept in an unlinked temporary file
    mapped shared, so rows the process is done with can leave its memory.

    Per-connection state takes 1.2 KB a connection, and connections grow with the
    capture (75k in 20M packets: 87 MB), but few are active at a time. `forget(lo, hi)`
    unmaps rows (MADV_DONTNEED): their bytes stay in the file, whose pages the system
    writes back and frees as it needs, and a late packet that touches a forgotten row
    maps it back in unchanged (a page fault, no copy by us). So what was forgotten never
    changes the analysis.

    Growing maps the longer file anew, without copying. Rows never written take no
    memory, so the table doubles instead of growing by an eighth (fewer remaps, each of
    which faults the active rows in again). Without a temporary file it is an ordinary
    array, grown like the other tables, and forgets nothing.
    """

    def __init__(self, rows: int, width: int):
        self.width = width
        self._map = None
        self._forgotten_below = 0
        try:
            self._file = _temporary_file("capanalyze-state-")
        except OSError:
            self._file = None
        self.array = np.zeros((0, width), np.int64)
        self.array = self._mapped(rows) if self._file else np.zeros((rows, width), np.int64)

    def resize(self, rows: int) -> None:
        """At least `rows` rows; rows kept keep their values, new rows are zero."""
        if rows <= len(self.array):
            return
        if self._file is None:
            self.array = resized(self.array, grown(len(self.array), rows))
        else:
            self.array = self._mapped(max(rows, 2 * len(self.array)))

    def forget_old(self, rows: int, hot: int) -> None:
        """Forget all but the last `hot` of the first `rows` rows, each time `hot` more
        have come: rows are per connection, in order of first appearance, and the
        newest connections are most of the active ones."""
        if rows - self._forgotten_below >= 2 * hot:
            self._forgotten_below = rows - hot
            self.forget(0, self._forgotten_below)

    def forget(self, lo: int, hi: int) -> None:
        """Unmap the whole pages within rows [lo, hi); touched again, they come back."""
        row_bytes = self.width * 8
        start = -(-lo * row_bytes // mmap.PAGESIZE) * mmap.PAGESIZE
        end = hi * row_bytes // mmap.PAGESIZE * mmap.PAGESIZE
        if self._map is not None and end > start:
            self._map.madvise(mmap.MADV_DONTNEED, start, end - start)

    def close(self) -> None:
        self.array = self._map = None   # unmapped once no view of it is left
        if self._file is not None:
            self._file.close()
            self._file = None

    def _mapped(self, rows: int) -> np.ndarray:
        nbytes = max(rows, 1) * self.width * 8
        try:
            _reserve(self._file, 0, nbytes)
            self._map = mmap.mmap(self._file.fileno(), nbytes)
        except OSError:   # no room left in $TMPDIR: in memory from now on
            array = np.zeros((rows, self.width), np.int64)
            array[:len(self.array)] = self.array
            self.close()
            return array
        return np.frombuffer(self._map, np.int64, rows * self.width).reshape(rows, self.width)


def _reserve(file, offset: int, length: int) -> None:
    """Give the file its disk blocks (or tmpfs pages) before they are mapped: with
    $TMPDIR full this raises OSError here, where the caller keeps the table in memory
    instead, and not SIGBUS later at the first write through the mapping."""
    os.posix_fallocate(file.fileno(), offset, length)


def _temporary_file(prefix: str):
    # kept open until its table is closed: no context manager
    return tempfile.TemporaryFile(prefix=prefix)
