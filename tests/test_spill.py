"""What the CLI path moves out of memory so a long capture does not grow the process
(spill.py): connection state of old connections, notable packets past a budget, the
JSON report's long lists. Each must leave the answer exactly as it was."""
from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import tempfile

import orjson
import pandas as pd
import pytest
from helpers import ROOT, SAMPLES, shared_pcaps

from capanalyze import spill
from capanalyze.pipeline import Settings, analyze
from capanalyze.report import build, jsonout, pieces

TABLES = ("flows", "notable", "gaps", "backoffs", "rsts", "zero_windows", "stalls")
# many connections that overlap in time, so old ones get packets after newer ones came
CAPTURES = [SAMPLES / "lab" / "mixed.client.pcap", SAMPLES / "lab" / "mixed.server.pcap",
            SAMPLES / "crafted" / "nat_gateway_350s.pcap"] + [
    p for p in shared_pcaps() if p.stem in ("http_espn", "ek_to_cryptowall4", "sessionhijacking",
                                            "tcp_ports", "synscan")]


def _same(expected, got):
    for name in TABLES:
        pd.testing.assert_frame_equal(getattr(expected, name), getattr(got, name), obj=name)
    assert expected.bracket == got.bracket


def _count_forgotten(monkeypatch) -> list[int]:
    """Keep one connection mapped; returns the sizes of the row ranges forgotten."""
    forgotten = []
    original = spill.MappedTable.forget

    def counted(self, lo, hi):
        forgotten.append(hi - lo)
        return original(self, lo, hi)
    monkeypatch.setattr(spill, "HOT_CONNECTIONS", 1)
    monkeypatch.setattr(spill.MappedTable, "forget", counted)
    return forgotten


@pytest.mark.parametrize("path", CAPTURES, ids=[p.name for p in CAPTURES])
def test_forgotten_connection_state_comes_back_unchanged(path, monkeypatch):
    """Rows of all but the newest connection are unmapped after every chunk and read
    back a connection at a time at the end: a late packet of an old connection finds
    its state as it was (a private or anonymous mapping would hand it zeros)."""
    settings = Settings(chunk_bytes=4096)
    expected = analyze(path, settings)
    forgotten = _count_forgotten(monkeypatch)
    got = analyze(path, settings)

    assert len(expected.flows) >= 2 and sum(forgotten) > 0
    _same(expected, got)


def test_connection_state_stays_in_memory_without_a_usable_temp_dir(tmp_path, monkeypatch):
    path = SAMPLES / "lab" / "mixed.client.pcap"
    expected = analyze(path, Settings(chunk_bytes=4096))
    monkeypatch.setattr(spill, "HOT_CONNECTIONS", 1)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "no-such-dir"))
    table = spill.MappedTable(4, 3)
    assert table._map is None   # fell back to an ordinary array
    _same(expected, analyze(path, Settings(chunk_bytes=4096)))


@pytest.mark.parametrize("budget", [1, 500], ids=["all_spilled", "last_rows_kept"])
@pytest.mark.parametrize("path", CAPTURES[:3], ids=[p.name for p in CAPTURES[:3]])
def test_notable_packets_spilled_past_the_budget_give_the_same_tables(path, budget, monkeypatch):
    """Past RowBuffer.MEMORY_BYTES the notable packets wait in a temporary file until
    the loop ends; read back, every column and row is where it was."""
    expected = analyze(path, Settings(chunk_bytes=4096))
    written = []
    original = spill.RowBuffer._write_out

    def counted(self):
        written.append(self.rows)
        return original(self)
    monkeypatch.setattr(spill.RowBuffer, "MEMORY_BYTES", budget)
    monkeypatch.setattr(spill.RowBuffer, "_write_out", counted)
    got = analyze(path, Settings(chunk_bytes=4096))

    assert len(written) >= 2 and 0 < sum(written) <= len(got.notable)
    _same(expected, got)


def test_a_large_json_report_is_written_in_slices_identical_to_one_encoding(monkeypatch):
    """Above INDENT_MAX_FLOWS connections the report is compact and its connections and
    stalls are encoded a slice at a time; joined, the slices are byte for byte the
    encoding of the whole report."""
    analysis = analyze(SAMPLES / "lab" / "mixed.client.pcap", Settings(idle_timeout=20))
    monkeypatch.setattr(jsonout, "INDENT_MAX_FLOWS", 0)
    monkeypatch.setattr(jsonout.Rows, "SLICE", 3)
    report = build([analysis])
    assert len(report["flows"]) > 6 and len(report["stalls"]) > 0

    parts = list(pieces(report, "json"))
    whole = orjson.dumps({**report, "flows": list(report["flows"])},
                         option=orjson.OPT_SERIALIZE_NUMPY)
    assert len(parts) > 6
    assert b"".join(parts) == whole
    assert json.loads(whole)["flows"] == list(report["flows"])


def test_the_cli_writes_a_streamed_report_whole_to_stdout_and_to_a_file(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from capanalyze import cli, commands  # noqa: F401  (registers the commands)

    path = SAMPLES / "lab" / "mixed.client.pcap"
    monkeypatch.setattr(jsonout, "INDENT_MAX_FLOWS", 0)
    monkeypatch.setattr(jsonout.Rows, "SLICE", 2)
    out = tmp_path / "report.json"
    to_stdout = CliRunner().invoke(cli.app, ["diagnose", str(path), "-f", "json"])
    to_file = CliRunner().invoke(cli.app, ["diagnose", str(path), "-f", "json", "-o", str(out)])

    assert to_stdout.exit_code == 0 and to_file.exit_code == 0, to_stdout.output
    report = json.loads(to_stdout.stdout_bytes)
    assert len(report["flows"]) > 2
    assert out.read_bytes() == to_stdout.stdout_bytes
    expected = build([analyze(path)])
    assert report["flows"] == list(expected["flows"])


def test_with_no_room_in_the_temp_dir_the_tables_stay_in_memory(monkeypatch):
    """Disk blocks are reserved before a file is mapped; when that fails (ENOSPC) the
    table is an ordinary array, and the answer is the same."""
    path = SAMPLES / "lab" / "mixed.client.pcap"
    expected = analyze(path, Settings(chunk_bytes=4096))

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(spill.os, "posix_fallocate", full)
    monkeypatch.setattr(spill, "HOT_CONNECTIONS", 1)
    assert spill.MappedTable(4, 3)._map is None
    _same(expected, analyze(path, Settings(chunk_bytes=4096)))


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_a_full_temp_dir_does_not_kill_the_command(tmp_path):
    """Through a mapping, a write to a file with no room left is a SIGBUS, not an
    error: with $TMPDIR on a one-page tmpfs the command must still finish, with the
    same report."""
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4k", "tmpfs", str(tiny)], check=False,
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        capture = str(SAMPLES / "lab" / "mixed.client.pcap")
        command = [sys.executable, "-m", "capanalyze", "diagnose", capture, "-f", "json"]
        roomy = subprocess.run(command, capture_output=True, cwd=ROOT, timeout=300, check=False)
        full = subprocess.run(command, capture_output=True, cwd=ROOT, timeout=300, check=False,
                              env={**os.environ, "TMPDIR": str(tiny)})
    finally:
        subprocess.run(["umount", str(tiny)], check=False)
    assert full.returncode == 0, full.stderr.decode()
    assert full.stdout == roomy.stdout
