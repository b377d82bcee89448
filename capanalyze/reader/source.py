"""Byte sources: a file path, "-" for stdin, or a binary file object; gzip by magic.

A source fills a caller's buffer (readinto) so the reader can keep one large numpy
buffer per capture and never copy chunk data through Python bytes more than once.
"""
from __future__ import annotations

import os
import sys
import zlib

from ..errors import CaptureError

GZIP_MAGIC = b"\x1f\x8b"
_COMPRESSED_BLOCK = 1 << 20


class RawStream:
    """Bytes of a file object, with the few bytes already peeked at served first."""

    def __init__(self, fileobj, head: bytes):
        self._f = fileobj
        self._head = head
        self.bytes_read = len(head)

    def read(self, n: int) -> bytes:
        if self._head:
            out, self._head = self._head[:n], self._head[n:]
            return out
        data = self._f.read(n) or b""
        self.bytes_read += len(data)
        return data

    def readinto(self, view: memoryview) -> int:
        """Fill `view` completely unless the input ends first; returns bytes written."""
        done = 0
        if self._head:
            k = min(len(self._head), len(view))
            view[:k] = self._head[:k]
            self._head = self._head[k:]
            done = k
        readinto = getattr(self._f, "readinto", None)
        while done < len(view):
            if readinto is not None:
                got = readinto(view[done:])
            else:
                data = self._f.read(len(view) - done) or b""
                view[done:done + len(data)] = data
                got = len(data)
            if not got:
                break
            done += got
            self.bytes_read += got
        return done


class GzipStream:
    """Decompresses a (possibly multi-member) gzip stream into the caller's buffer.

    zlib's max_length bounds each output, so a tiny highly-compressed input can never
    make us allocate more than the caller asked for. A stream that ends early is not an
    error: what was decompressed is delivered and `cut_short` is set.
    """

    def __init__(self, raw: RawStream):
        self._raw = raw
        self._d = zlib.decompressobj(zlib.MAX_WBITS | 16)
        self._tail = b""          # compressed bytes not yet fed to zlib
        self.cut_short = False
        self.damage: str | None = None
        self.produced = 0

    @property
    def bytes_read(self) -> int:
        return self._raw.bytes_read

    def readinto(self, view: memoryview) -> int:
        done = 0
        while done < len(view) and not (self.cut_short or self.damage):
            out = self._step(len(view) - done)
            if out is None:
                break
            view[done:done + len(out)] = out
            done += len(out)
        self.produced += done
        return done

    def _step(self, want: int) -> bytes | None:
        """Next piece of output (maybe empty); None at the end of the input."""
        if self._d.eof:
            rest = self._d.unused_data + self._raw.read(2)
            if not rest:
                return None
            if not rest.startswith(GZIP_MAGIC):
                return None          # trailing padding after the last member: ignore
            self._d = zlib.decompressobj(zlib.MAX_WBITS | 16)
            self._tail = rest
        if not self._tail:
            self._tail = self._raw.read(_COMPRESSED_BLOCK)
            if not self._tail:
                self.cut_short = True
                return None
        try:
            out = self._d.decompress(self._tail, want)
        except zlib.error as exc:
            if self.produced == 0:
                raise CaptureError(f"damaged gzip data at the start ({exc})") from None
            self.damage = str(exc)
            return None
        self._tail = self._d.unconsumed_tail
        return out


class ByteSource:
    """Where capture bytes come from, plus what a progress bar needs to know."""

    def __init__(self, name: str, fileobj, owned: bool):
        self.name = name
        self._f = fileobj
        self._owned = owned
        self.bytes_total = _size_of(fileobj)
        head = _read_exactly(fileobj, 2)
        raw = RawStream(fileobj, head)
        self.compressed = head == GZIP_MAGIC
        self._stream = GzipStream(raw) if self.compressed else raw
        self._raw = raw

    @property
    def bytes_read(self) -> int:
        return self._raw.bytes_read

    def readinto(self, view: memoryview) -> int:
        return self._stream.readinto(view)

    def end_warnings(self) -> list[str]:
        """Why the (gzip) stream ended early, if it did."""
        s = self._stream
        if isinstance(s, GzipStream):
            if s.damage:
                return [f"gzip data damaged after {s.produced} uncompressed bytes ({s.damage}): "
                        "records read so far are kept"]
            if s.cut_short and s.produced:
                return [f"gzip stream cut short after {s.produced} uncompressed bytes: "
                        "records read so far are kept"]
        return []

    def close(self) -> None:
        if self._owned:
            self._f.close()


def open_source(source) -> ByteSource:
    """A ByteSource for a path, "-" (stdin) or a readable binary file object."""
    if isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
        if name == "-":
            return ByteSource("<stdin>", sys.stdin.buffer, owned=False)
        try:
            f = open(name, "rb", buffering=0)
        except OSError as exc:
            raise CaptureError(f"{name}: cannot open ({exc.strerror or exc})") from None
        if os.path.isdir(name):
            f.close()
            raise CaptureError(f"{name}: is a directory")
        return ByteSource(name, f, owned=True)
    if hasattr(source, "read"):
        return ByteSource(getattr(source, "name", None) or "<file object>", source, owned=False)
    raise CaptureError(f"cannot read a capture from a {type(source).__name__}")


def _read_exactly(f, n: int) -> bytes:
    """Up to n bytes, looping because pipes return short reads."""
    out = b""
    while len(out) < n:
        try:
            data = f.read(n - len(out))
        except OSError as exc:
            raise CaptureError(f"cannot read input ({exc.strerror or exc})") from None
        if not data:
            break
        out += data
    return out


def _size_of(f) -> int | None:
    try:
        st = os.fstat(f.fileno())
    except (OSError, AttributeError, ValueError):
        return None
    import stat
    return st.st_size if stat.S_ISREG(st.st_mode) else None
