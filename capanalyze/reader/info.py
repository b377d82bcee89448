"""CaptureInfo: what the file is and what happened to every record in it."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

from ..schema import epoch_seconds


@dataclass
class CaptureInfo:
    path: str
    format: str = ""                 # "pcap", "pcap (nanosecond)", "pcapng", + " (gzip)"
    linktypes: list[str] = field(default_factory=list)   # distinct names, first seen first
    interfaces: list[dict] = field(default_factory=list)  # per interface (pcapng: per IDB)
    sections: int = 1
    snaplen: int | None = None       # smallest non-zero snaplen; None when unlimited
    records: int = 0                 # packet records in the file (tshark's frame count)
    tcp_packets: int = 0             # rows of the packet table
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> records not in it
    warnings: list[str] = field(default_factory=list)
    first_ts_ns: int | None = None   # earliest and latest record time
    last_ts_ns: int | None = None
    out_of_order_ts: int = 0         # records earlier than the record before them
    bytes_total: int | None = None   # size of the input file when known (compressed size)
    bytes_read: int = 0              # input bytes consumed so far (for a progress bar)
    complete: bool = False           # True once every record has been read

    @property
    def first_ts(self) -> float | None:
        return None if self.first_ts_ns is None else epoch_seconds(self.first_ts_ns)

    @property
    def last_ts(self) -> float | None:
        return None if self.last_ts_ns is None else epoch_seconds(self.last_ts_ns)

    @property
    def duration(self) -> float | None:
        if self.first_ts_ns is None:
            return None
        return (self.last_ts_ns - self.first_ts_ns) / 1e9

    def add_skipped(self, counts: dict[str, int]) -> None:
        for reason, n in counts.items():
            self.skipped[reason] = self.skipped.get(reason, 0) + n

    def as_dict(self) -> dict:
        d = asdict(self)
        d["first_ts"], d["last_ts"], d["duration"] = self.first_ts, self.last_ts, self.duration
        d["first_time"], d["last_time"] = iso_utc(self.first_ts_ns), iso_utc(self.last_ts_ns)
        return d


def iso_utc(ts_ns: int | None) -> str | None:
    """ISO 8601 UTC with microseconds (nanoseconds when they are not zero)."""
    if ts_ns is None:
        return None
    sec, ns = divmod(ts_ns, 1_000_000_000)
    try:
        base = datetime.fromtimestamp(sec, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    except (OverflowError, OSError, ValueError):
        return f"{ts_ns / 1e9:.9f} s since the epoch"
    frac = f"{ns:09d}" if ns % 1000 else f"{ns // 1000:06d}"
    return f"{base}.{frac}Z"
