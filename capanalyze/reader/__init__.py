"""Stage 1: capture file -> packet table (see capanalyze.schema.PACKET_COLUMNS).

Contract (other stages rely on exactly this):

    reader = open_capture(source)      # path, "-" for stdin, or a binary file object;
                                       # gzip detected by magic; raises CaptureError
    for chunk in reader.chunks():      # pandas DataFrames with PACKET_COLUMNS, file order,
        ...                            # bounded size (default 8 MiB of capture per chunk)
    reader.info                        # CaptureInfo, complete once chunks() is exhausted

    packets, info = read_capture(source)   # convenience: all chunks concatenated

`src`/`dst` categories are shared by all chunks of one reader (an address interner),
so chunks concatenate without re-encoding: codes are stable and each chunk's
categories are a prefix of the reader's final list (reader.addresses.categories()).

Invariant: info.tcp_packets + sum(info.skipped.values()) == info.records.

Modules: source (file/stdin/gzip bytes), pcap / pcapng (compiled record walks),
decode (compiled header decode), outcomes (skip reasons), addresses (interning),
info (CaptureInfo), stream (the chunk loop).
"""
from __future__ import annotations

import pandas as pd

from .info import CaptureInfo
from .stream import DEFAULT_CHUNK_BYTES, CaptureReader, concat_chunks, empty_packet_table

__all__ = ["CaptureInfo", "CaptureReader", "open_capture", "read_capture",
           "empty_packet_table"]


def open_capture(source, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> CaptureReader:
    """A reader over a capture; raises CaptureError when it is not a readable capture."""
    return CaptureReader(source, chunk_bytes=chunk_bytes)


def read_capture(source, chunk_bytes: int = DEFAULT_CHUNK_BYTES
                 ) -> tuple[pd.DataFrame, CaptureInfo]:
    """The whole packet table and the record accounting, in one call."""
    reader = open_capture(source, chunk_bytes=chunk_bytes)
    chunks = list(reader.chunks())
    return concat_chunks(chunks, reader.addresses), reader.info
