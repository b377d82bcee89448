"""The JSON report: stable field names, additive changes only (see README)."""
from __future__ import annotations

import math

import numpy as np
import orjson
import pandas as pd

from .. import __version__

CAPTURE_FIELDS = ("path", "format", "linktypes", "records", "tcp_packets", "skipped",
                  "warnings", "first_ts", "last_ts")
FLOW_FIELDS = ("flow_id", "client", "server", "first_frame", "last_frame", "start_ts",
               "end_ts", "packets", "bytes", "state", "max_idle_s", "keepalives",
               "retransmissions", "rsts", "verdict", "role_inferred", "handshake",
               "zero_windows")
STALL_FIELDS = ("flow_id", "client", "server", "class", "factors", "confidence", "start_ts",
                "end_ts", "duration_s", "idle_before_s", "frames", "evidence", "backoff",
                "culprits", "remedy", "wireshark_filter", "waiting")


def build(analyses: list, matches: list[dict] | None = None) -> dict:
    """The report for one capture, or several vantages of the same connections."""
    report = {"tool": "capanalyze", "version": __version__, "captures": [], "flows": [],
              "stalls": [], "eviction_threshold": None}
    for index, a in enumerate(analyses):
        report["captures"].append(_capture(a.info))
        report["flows"] += _rows(a.flows, FLOW_FIELDS, index, len(analyses))
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


def _rows(frame, fields, index, n_captures) -> list[dict]:
    """Rows as dicts of plain Python values, column by column (fast for 100k flows)."""
    names = [f for f in fields if f in frame.columns]
    columns = [_plain_column(frame[name]) for name in names]
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
    # Indented for people; a capture with thousands of connections is read by scripts.
    # orjson: the stdlib encoder took 0.12 s for the 20k-connection report of a 5M capture.
    option = orjson.OPT_SERIALIZE_NUMPY | (orjson.OPT_INDENT_2 if len(report["flows"]) <= 2000 else 0)
    data = orjson.dumps(report, option=option)
    return data if as_bytes else data.decode()
