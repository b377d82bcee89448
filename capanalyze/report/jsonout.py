"""The JSON report: stable field names, additive changes only (see README)."""
from __future__ import annotations

import math
import uuid
from collections.abc import Sequence

import numpy as np
import orjson
import pandas as pd

from .. import __version__

CAPTURE_FIELDS = ("path", "format", "linktypes", "records", "tcp_packets", "skipped",
                  "warnings", "first_ts", "last_ts")
FLOW_FIELDS = ("flow_id", "client", "server", "first_frame", "last_frame", "start_ts",
               "end_ts", "packets", "bytes", "state", "max_idle_s", "idle_at_end_s", "keepalives",
               "retransmissions", "rsts", "verdict", "role_inferred", "handshake",
               "zero_windows")
STALL_FIELDS = ("flow_id", "client", "server", "class", "factors", "confidence", "start_ts",
                "end_ts", "duration_s", "idle_before_s", "frames", "evidence", "backoff",
                "culprits", "remedy", "wireshark_filter", "waiting")


def build(analyses: list, matches: list[dict] | None = None) -> dict:
    """The report for one capture, or several vantages of the same connections."""
    report = {"tool": "capanalyze", "version": __version__, "captures": [], "flows": Rows(),
              "stalls": [], "eviction_threshold": None}
    for index, a in enumerate(analyses):
        report["captures"].append(_capture(a.info))
        report["flows"].add(a.flows, FLOW_FIELDS, index, len(analyses))
        report["stalls"] += _rows(a.stalls, STALL_FIELDS, index, len(analyses))
        if a.bracket and report["eviction_threshold"] is None:
            report["eviction_threshold"] = {k: a.bracket[k] for k in ("low_s", "high_s", "matches", "consistent", "text")}
            if len(analyses) > 1:
                report["eviction_threshold"]["capture"] = index
    if matches is not None:
        report["matches"] = clean(matches)
    report["captures"] = clean(report["captures"])
    return report


def _capture(info) -> dict:
    out = {name: getattr(info, name) for name in CAPTURE_FIELDS}
    out["out_of_order_ts"] = info.out_of_order_ts
    return out


class Rows(Sequence):
    """The report's connections: a list of dicts, made a slice at a time as they are
    read. The JSON report of a 20M-packet capture (75k connections) held them all as
    dicts, ~100 MB; written slice by slice (`json_pieces`) it holds 4096 at a time."""

    SLICE = 4096

    def __init__(self):
        self._parts: list[tuple] = []   # (frame, fields, capture index, captures)

    def add(self, frame, fields, index: int, n_captures: int) -> None:
        self._parts.append((frame, fields, index, n_captures))

    def slices(self):
        """The rows in order, as lists of at most SLICE dicts."""
        for frame, fields, index, n_captures in self._parts:
            # a column at a time: slicing the frame would consolidate it (a copy of it all)
            names = [f for f in fields if f in frame.columns]
            columns = [frame[name] for name in names]
            for start in range(0, len(frame), self.SLICE):
                piece = [c.iloc[start:start + self.SLICE] for c in columns]
                yield _plain_rows(names, piece, index, n_captures)

    def column(self, name: str) -> list:
        """One field of every row, without making the rows: counting the verdicts of 2M
        connections made 2M dicts."""
        return [value for frame, *_ in self._parts for value in _plain_column(frame[name])]

    def captures(self) -> np.ndarray:
        """The capture index of every row."""
        return np.repeat([part[2] for part in self._parts],
                         [len(part[0]) for part in self._parts]).astype(np.int64)

    def at(self, positions: list[int]) -> list[dict]:
        """The rows at these positions (counted over every part), in that order."""
        out: list = [None] * len(positions)
        start = 0
        for frame, fields, index, n_captures in self._parts:
            mine = [(k, p - start) for k, p in enumerate(positions) if start <= p < start + len(frame)]
            if mine:
                names = [f for f in fields if f in frame.columns]
                local = [p for _, p in mine]
                rows = _plain_rows(names, [frame[name].iloc[local] for name in names], index, n_captures)
                for (k, _), row in zip(mine, rows):
                    out[k] = row
            start += len(frame)
        return out

    def __len__(self) -> int:
        return sum(len(part[0]) for part in self._parts)

    def __iter__(self):
        for rows in self.slices():
            yield from rows

    def __getitem__(self, i):
        return list(self)[i]

    def __eq__(self, other) -> bool:
        return list(self) == list(other)

    def __repr__(self) -> str:
        return repr(list(self))


def _rows(frame, fields, index, n_captures) -> list[dict]:
    names = [f for f in fields if f in frame.columns]
    return _plain_rows(names, [frame[name] for name in names], index, n_captures)


def _plain_rows(names, columns, index, n_captures) -> list[dict]:
    """Rows as dicts of plain Python values, column by column (fast for 100k flows)."""
    columns = [_plain_column(c) for c in columns]
    rows = [dict(zip(names, values)) for values in zip(*columns)]
    if n_captures > 1:
        for row in rows:
            row["capture"] = index
    return rows


def _plain_column(series) -> list:
    if series.dtype.kind == "f":
        values = series.to_numpy()
        return [None if v != v else v for v in values.tolist()]
    if series.dtype.kind in "iub":
        return series.to_numpy().tolist()
    if isinstance(series.dtype, pd.StringDtype):   # str or missing: nothing to clean
        return series.to_numpy(dtype=object, na_value=None).tolist()
    if pd.api.types.infer_dtype(series, skipna=False) == "string":   # only str: as they are
        return series.tolist()
    return [clean(v) for v in series.tolist()]


def clean(value):
    """numpy/pandas scalars -> plain JSON values; NaN -> null."""
    kind = type(value)
    if kind is str or kind is int or value is None:   # most values: answer at once
        return value
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [clean(v) for v in value]
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return None if math.isnan(value) else float(value)
    if value is None or isinstance(value, (str, int)):
        return value
    try:
        import pandas as pd
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return str(value)


def to_json(report: dict, as_bytes: bool = False) -> str | bytes:
    data = b"".join(json_pieces(report))
    return data if as_bytes else data.decode()


STREAMED = ("flows", "stalls")   # the long lists of a report: encoded a slice at a time
INDENT_MAX_FLOWS = 2000          # larger reports are read by scripts: compact, streamed


def json_pieces(report: dict):
    """The JSON report as UTF-8 pieces to write in turn. Indented for people; a capture
    with thousands of connections is read by scripts, and its connections and stalls
    are encoded a slice at a time, so neither they nor the whole text are held at once
    (20M packets: 36 MB of connections, 6.5 MB of stalls).
    orjson: the stdlib encoder took 0.12 s for the 20k-connection report of a 5M capture."""
    if len(report["flows"]) <= INDENT_MAX_FLOWS:
        option = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_INDENT_2
        yield orjson.dumps({**report, "flows": list(report["flows"])}, option=option)
        return
    tag = uuid.uuid4().hex
    markers = {key: f'"{key}-{tag}"'.encode() for key in STREAMED}
    skeleton = orjson.dumps({**report, **{key: m[1:-1].decode() for key, m in markers.items()}},
                            option=orjson.OPT_SERIALIZE_NUMPY)
    pos = 0
    for at, key in sorted((skeleton.index(marker), key) for key, marker in markers.items()):
        yield skeleton[pos:at] + b"["
        yield from _list_pieces(report[key])
        yield b"]"
        pos = at + len(markers[key])
    yield skeleton[pos:]


def _list_pieces(rows, size: int = 256):
    """A list's items, comma-separated, encoded a slice at a time (without brackets)."""
    slices = rows.slices() if isinstance(rows, Rows) else (rows[i:i + size] for i in range(0, len(rows), size))
    separator = b""
    for piece in slices:
        if piece:
            yield separator
            yield memoryview(orjson.dumps(piece, option=orjson.OPT_SERIALIZE_NUMPY))[1:-1]
            separator = b","
