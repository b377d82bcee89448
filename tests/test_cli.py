"""The command line as a user runs it: formats, stdin, gzip, exports, errors."""
from __future__ import annotations

import gzip
import importlib.util
import json
import os
import struct
import subprocess
import sys

import pandas as pd
import pytest

from capanalyze.craft import Conversation, write_pcap
from helpers import ROOT, SAMPLES, diagnose_json, run_cli

REDIS = SAMPLES / "crafted" / "redis_retries2_924s.pcap"


def test_diagnose_without_argument_uses_the_bundled_demo_and_says_so():
    proc = run_cli("diagnose", "--format", "json")
    assert "bundled demo" in proc.stderr
    report = json.loads(proc.stdout)
    assert report["captures"][0]["path"].endswith("demo.pcap")
    assert {f["verdict"] for f in report["flows"]} >= {"silent_middlebox_eviction"}
    demo = ROOT / "capanalyze" / "data" / "demo.pcap"
    assert demo.read_bytes() == (SAMPLES / "crafted" / "nlb_350s.pcap").read_bytes()


def test_stdin_and_gzip_give_the_same_report_as_the_file(tmp_path):
    direct = json.loads(run_cli("diagnose", str(REDIS), "-f", "json").stdout)
    gz = tmp_path / "redis.pcap.gz"
    gz.write_bytes(gzip.compress(REDIS.read_bytes()))
    zipped = json.loads(run_cli("diagnose", str(gz), "-f", "json").stdout)
    piped = subprocess.run([sys.executable, "-m", "capanalyze", "diagnose", "-", "-f", "json"],
                           input=REDIS.read_bytes(), capture_output=True, cwd=ROOT, timeout=300)
    assert piped.returncode == 0, piped.stderr
    from_stdin = json.loads(piped.stdout)
    for other in (zipped, from_stdin):
        assert other["stalls"] == direct["stalls"]
        assert other["flows"] == direct["flows"]
    assert "gzip" in zipped["captures"][0]["format"]


def test_markdown_report_names_frames_filter_and_fix():
    md = run_cli("diagnose", str(REDIS), "-f", "md").stdout
    assert "silent_middlebox_eviction" in md
    assert "tcp.port==6379" in md and "frames 15, 16, 17" in md
    assert "TCP_KEEPIDLE" in md and "924.6 s" in md


def test_markdown_report_shows_the_capture_path_and_filter_as_they_are(tmp_path):
    """Rendered as CommonMark (markdown-it, which rich already installs), the capture's
    path reads as it is on disk: escaped inside its code span, it showed backslashes
    ("incident\\_42")."""
    import html

    from markdown_it import MarkdownIt

    odd = tmp_path / "incident_42`*[x].pcap"
    odd.write_bytes(REDIS.read_bytes())
    page = MarkdownIt().render(run_cli("diagnose", str(odd), "-f", "md").stdout)
    assert f"<code>{html.escape(str(odd), quote=False)}</code>" in page
    wanted = "ip.addr==10.0.1.23 &amp;&amp; tcp.port==40112 &amp;&amp; ip.addr==10.0.3.45 &amp;&amp; tcp.port==6379"
    assert f"<code>{wanted}</code>" in page


def test_packet_times_are_the_capture_times_to_the_nanosecond_rounded_once():
    """ts is ts_ns in seconds, correctly rounded: made a float first, 1700000001002000000
    ns lost ~100 ns and the CSV read 1700000001.0019999 for a packet at .002."""
    rows = run_cli("packets", str(REDIS), "-f", "csv").stdout.splitlines()
    header = rows[0].split(",")
    at_ns, at_s = header.index("ts_ns"), header.index("ts")
    times = [(int(r.split(",")[at_ns]), r.split(",")[at_s]) for r in rows[1:]]
    assert len(times) == 40 and all(text == repr(ns / 10**9) for ns, text in times)
    assert (1700000001002000000, "1700000001.002") in times
    report = json.loads(run_cli("diagnose", str(REDIS), "-f", "json").stdout)
    assert report["flows"][1]["start_ts"] == 1700002726.1035   # 1700002726103500000 ns


def test_json_durations_have_no_float_noise_digits():
    """A stall's duration and the idle before it, on microsecond captures, are whole
    microseconds: they read 1079.8970398902893 and 1079.8670399188995 for the demo's
    1079.89704 s stall after a 1079.86704 s idle (float epochs subtracted)."""
    demo = diagnose_json(str(ROOT / "capanalyze" / "data" / "demo.pcap"))["stalls"][0]
    assert (demo["duration_s"], demo["idle_before_s"]) == (1079.89704, 1079.86704)
    captures = [SAMPLES / "lab" / "mixed.client.pcap", SAMPLES / "lab" / "zero_window.client.pcap",
                SAMPLES / "lab" / "peer_unreachable.client.pcap", REDIS]
    stalls = [s for c in captures for s in diagnose_json(str(c))["stalls"]]
    durations = [s[k] for s in stalls for k in ("duration_s", "idle_before_s") if s[k] is not None]
    assert len(durations) >= 10
    assert all(d == round(d, 6) for d in durations)


def test_one_of_a_thing_is_not_plural(tmp_path):
    """A capture with one connection and one keepalive probe read "1 connections" and
    "1 keepalive probes"; the packet a RST answered is named with its time too."""
    conv = Conversation(("192.0.2.10", 50123), ("198.51.100.20", 443))
    conv.handshake(0.0)
    conv.send("c", b"GET", at=0.1)
    conv.send("s", b"OK", at=0.2)
    conv.keepalive("c", at=100.0)
    request = conv.send("c", b"GET", at=400.0)[0]
    conv.rst("s", at=400.05)
    path = tmp_path / "one.pcap"
    write_pcap(path, conv)
    text = run_cli("diagnose", str(path)).stdout
    assert "1 of 1 connection stalled" in text
    assert "with 1 keepalive probe from the client" in " ".join(text.split())
    frame = next(i for i, p in enumerate(conv.packets, start=1) if p is request)
    assert f"frame {frame} (22:20:00.000): the first packet after" in text
    flows = run_cli("flows", str(path)).stdout
    assert "1 connection" in flows and "1 connections" not in flows


def test_a_saved_json_report_renders_as_the_diagnose_command_does():
    """The reports render the JSON report's dict, so a report kept in a ticket as JSON
    can be turned into Markdown or text later, without the capture (HTML too, without
    the charts, which need the packets)."""
    from capanalyze.report import render

    saved = json.loads(run_cli("diagnose", str(REDIS), "-f", "json").stdout)
    for fmt in ("md", "text"):
        assert render(saved, fmt) == run_cli("diagnose", str(REDIS), "-f", fmt).stdout
    page = render(saved, "html")
    assert "silent_middlebox_eviction" in page and "tcp.port==6379" in page and "<img" not in page


def test_text_report_writes_to_the_named_file_only(tmp_path):
    out = tmp_path / "report.txt"
    proc = run_cli("diagnose", str(REDIS), "-o", str(out))
    assert proc.stdout == ""
    text = out.read_text()
    assert "silent_middlebox_eviction" in text and "frame 16" in text


def test_flows_csv_and_json_agree(tmp_path):
    csv = run_cli("flows", str(REDIS), "-f", "csv").stdout
    table = pd.read_csv(pd.io.common.StringIO(csv))
    rows = json.loads(run_cli("flows", str(REDIS), "-f", "json").stdout)
    assert len(table) == len(rows) == 2
    assert list(table["client"]) == [r["client"] for r in rows]
    assert table.loc[0, "retransmissions"] == 15 and table.loc[0, "max_idle_s"] > 1799


def test_packets_export_filters_one_flow_to_parquet(tmp_path):
    out = tmp_path / "p.parquet"
    run_cli("packets", str(REDIS), "--flow", "0", "-f", "parquet", "-o", str(out))
    table = pd.read_parquet(out)
    assert set(table["flow_id"]) == {0}
    assert table["retransmission"].sum() == 15
    assert table["frame"].min() >= 1
    for col in ("keepalive", "zero_window_probe", "duplicate_capture", "retrans_kind", "rel_seq"):
        assert col in table.columns


def test_packets_of_some_flows_are_their_rows_of_the_whole_table():
    """`--flow` keeps only those connections' rows while reading (a whole 20M-packet
    table is 3.4 GB); what it writes is the whole table's rows of them."""
    mixed = SAMPLES / "lab" / "mixed.client.pcap"
    whole = run_cli("packets", str(mixed), "-f", "csv", jit="1").stdout.splitlines()
    some = run_cli("packets", str(mixed), "--flow", "2", "--flow", "40", "-f", "csv", jit="1").stdout.splitlines()
    flow_id = whole[0].split(",").index("flow_id")
    assert some[0] == whole[0]
    assert some[1:] == [row for row in whole[1:] if row.split(",")[flow_id] in ("2", "40")]
    assert {row.split(",")[flow_id] for row in some[1:]} == {"2", "40"}
    missing = run_cli("packets", str(mixed), "--flow", "9999", check_exit=2)
    assert missing.stderr == "capanalyze: error: no connection with flow id 9999 (see `capanalyze flows`)\n"


@pytest.mark.parametrize("content, message", [
    (b"", "empty"),
    (b"hello, this is not a capture at all\n" * 4, "not a pcap or pcapng file"),
])
def test_unreadable_input_is_one_line_and_exit_2(tmp_path, content, message):
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(content)
    proc = run_cli("diagnose", str(bad), check_exit=2)
    assert proc.stderr.count("\n") == 1 and message in proc.stderr


def test_missing_file_is_one_line_and_exit_2(tmp_path):
    proc = run_cli("diagnose", str(tmp_path / "nope.pcap"), check_exit=2)
    assert proc.stderr.count("\n") == 1


def test_keeping_only_some_flows_changes_nothing_but_the_packet_rows():
    from capanalyze.pipeline import Settings, analyze
    path = SAMPLES / "lab" / "mixed.client.pcap"
    full = analyze(path, Settings(keep_packets=True))
    some = analyze(path, Settings(keep_packets=True, keep_flows=frozenset({0, 2})))
    assert set(some.packets["flow_id"]) == {0, 2}
    expected = full.packets[full.packets["flow_id"].isin([0, 2])].reset_index(drop=True)
    got = some.packets.reset_index(drop=True)
    for table in (got, expected):  # a categorical's categories follow the rows present
        table["flags"] = table["flags"].astype(str)
    pd.testing.assert_frame_equal(got, expected)
    pd.testing.assert_frame_equal(some.stalls, full.stalls)
    pd.testing.assert_frame_equal(some.flows, full.flows)
    # every idle gap of the kept connections (their charts draw them); of the others
    # only what the diagnosis reads: all 112 made `plot --flow` grow with the capture
    # (5M packets: 334 MiB against 246 MiB peak RSS)
    kept_gaps = some.gaps["flow_id"].isin([0, 2])
    pd.testing.assert_frame_equal(some.gaps[kept_gaps].reset_index(drop=True),
                                  full.gaps[full.gaps["flow_id"].isin([0, 2])].reset_index(drop=True))
    assert len(some.gaps) < len(full.gaps) / 5


def test_plot_of_the_stalled_flows_writes_a_png(tmp_path):
    out = tmp_path / "stalls.png"
    run_cli("plot", str(SAMPLES / "lab" / "mixed.client.pcap"), "--stalls", "--idle-timeout", "20",
            "-o", str(out))
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.skipif(importlib.util.find_spec("pyarrow") is None,
                    reason="pyarrow is not installed (it comes with the test extra)")
@pytest.mark.parametrize("args", [("diagnose", "-f", "json"), ("diagnose",), ("flows", "-f", "json")])
def test_reports_are_the_same_whether_pandas_stores_strings_in_pyarrow_or_not(args):
    """The command line keeps pyarrow away from pandas (start-up); a run that loaded it
    first, as any process with pyarrow imported does, must print the same bytes."""
    capture = str(SAMPLES / "lab" / "mixed.client.pcap")
    without = run_cli(*args, capture, "--idle-timeout", "20").stdout
    preloaded = subprocess.run(
        [sys.executable, "-c", "import pyarrow, runpy; runpy.run_module('capanalyze', run_name='__main__')",
         *args, capture, "--idle-timeout", "20"],
        capture_output=True, text=True, cwd=ROOT, timeout=600, check=True)
    assert without == preloaded.stdout
    assert "eviction" in without


def _syn_per_connection_pcap(path, n: int):
    """n connections, one SYN each: a JSON report of more than INDENT_MAX_FLOWS
    connections, written in slices."""
    records = []
    for i in range(n):
        tcp = struct.pack("!HHIIBBHHH", 10000 + i, 80, 1000, 0, 5 << 4, 0x02, 65535, 0, 0)
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, i, 0, 64, 6, 0,
                         bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]))
        frame = b"\x02" * 12 + b"\x08\x00" + ip + tcp
        records.append(struct.pack("<IIII", i, 0, len(frame), len(frame)) + frame)
    path.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1) + b"".join(records))
    return path


@pytest.mark.parametrize("command, fmt", [("diagnose", "json"), ("flows", "json"), ("flows", "csv")])
def test_a_reader_that_stops_early_ends_the_output_quietly(command, fmt, tmp_path):
    """`capanalyze diagnose big.pcap -f json | head`: the rest is not wanted. No error
    message, no traceback, the usual exit status."""
    fcntl = pytest.importorskip("fcntl")
    if not hasattr(fcntl, "F_SETPIPE_SZ"):
        pytest.skip("needs Linux pipes whose size can be set")
    capture = _syn_per_connection_pcap(tmp_path / "many.pcap", 2500)
    r, w = os.pipe()
    fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, 4096)   # the report (> 100 kB) does not fit
    proc = subprocess.Popen([sys.executable, "-m", "capanalyze", command, str(capture), "-f", fmt],
                            stdout=w, stderr=subprocess.PIPE, cwd=ROOT)
    os.close(w)
    assert os.read(r, 100)
    os.close(r)
    stderr = proc.communicate(timeout=300)[1].decode()
    assert stderr == ""
    assert proc.returncode == 0


@pytest.mark.parametrize("args", [("info",), ("diagnose", "-f", "json"), ("diagnose",), ("flows", "-f", "csv")])
def test_output_to_a_full_disk_is_a_one_line_error(args):
    """A report redirected to a full disk must not be lost in silence (exit 0) or end in
    a traceback: one line, exit 2."""
    if not os.path.exists("/dev/full"):
        pytest.skip("needs /dev/full (Linux)")
    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, "-m", "capanalyze", args[0], str(REDIS), *args[1:]],
                              stdout=full, stderr=subprocess.PIPE, cwd=ROOT, timeout=300, check=False)
    stderr = proc.stderr.decode()
    assert proc.returncode == 2, stderr
    assert stderr.strip().splitlines() == [
        "capanalyze: error: cannot write to standard output: No space left on device"]


def test_parquet_export_errors_are_one_line(tmp_path):
    """To a directory that does not exist, and without pyarrow (not a dependency: a
    plain `pip install .` lacks it): one line, exit 2."""
    proc = run_cli("packets", str(REDIS), "-f", "parquet", "-o", str(tmp_path / "no" / "p.parquet"),
                   check_exit=2)
    assert proc.stderr.startswith("capanalyze: error: cannot write ")
    assert len(proc.stderr.strip().splitlines()) == 1

    code = ("import sys\n"
            "sys.modules['pyarrow'] = sys.modules['fastparquet'] = None   # not installed\n"
            "from capanalyze.cli import main\n"
            f"sys.argv = ['capanalyze', 'flows', {str(REDIS)!r}, '-f', 'parquet', '-o', "
            f"{str(tmp_path / 'f.parquet')!r}]\n"
            "main()\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          timeout=300, check=False)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == "capanalyze: error: --format parquet needs pyarrow (pip install pyarrow)\n"


@pytest.mark.parametrize("option, value", [("--idle-timeout", "-5"), ("--idle-timeout", "0"),
                                           ("--gap", "0"), ("--min-stall", "nan"),
                                           ("--min-stall", "-1"), ("--gap", "inf")])
def test_a_duration_option_out_of_range_is_a_one_line_error(option, value):
    """`--idle-timeout -5` was taken as given: the remedy advised keepalives "below -5 s".
    A zero gap would make every interval between packets an idle gap."""
    proc = run_cli("diagnose", str(REDIS), option, value, check_exit=2)
    assert proc.stderr.startswith(f"capanalyze: error: {option} must be a number of seconds")
    assert len(proc.stderr.strip().splitlines()) == 1
    assert proc.stdout == ""


def test_the_python_api_refuses_the_same_durations():
    """capanalyze.load takes the command line's options, and checks them the same way
    (the check lives in the analysis settings both build)."""
    import capanalyze
    from capanalyze.errors import CaptureError

    with pytest.raises(CaptureError, match="--idle-timeout must be a number of seconds, more than 0"):
        capanalyze.load(str(REDIS), idle_timeout=-5)


def test_zero_min_stall_is_accepted():
    report = json.loads(run_cli("diagnose", str(REDIS), "--min-stall", "0", "-f", "json").stdout)
    assert [s["class"] for s in report["stalls"]] == ["silent_middlebox_eviction"]


def _slow_answer(port: int, seed: int) -> Conversation:
    """A request the server answers after 8 s of think time (app_slowness)."""
    conv = Conversation(client=("10.0.1.23", port), server=("203.0.113.50", 443), rtt=0.02,
                        t0=1_700_000_000.0 + 10 * seed, seed=seed)
    conv.handshake(at=0.0)
    conv.send("c", b"GET /slow HTTP/1.1\r\n\r\n", at=0.1)
    conv.send("s", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", at=8.1)
    conv.close("c", at=8.2)
    return conv


def test_text_report_details_the_first_20_stalls_of_a_class_and_counts_the_rest(tmp_path):
    """23 slow answers: the terminal gets the first 20 (by time) in full and a line
    naming the 3 left out; --all and the JSON report have every one."""
    capture = tmp_path / "slow23.pcap"
    write_pcap(capture, *[_slow_answer(41000 + i, i) for i in range(23)])
    every = json.loads(run_cli("diagnose", str(capture), "-f", "json").stdout)["stalls"]
    assert [s["class"] for s in every] == ["app_slowness"] * 23
    text = run_cli("diagnose", str(capture)).stdout
    detailed = [s for s in every if f"flow {s['flow_id']}: app_slowness" in text]
    assert detailed == every[:20]
    assert "3 more stalls not detailed here (3 app_slowness)" in " ".join(text.split())
    full = run_cli("diagnose", str(capture), "--all").stdout
    assert all(f"flow {s['flow_id']}: app_slowness" in full for s in every)
    assert "not detailed" not in full


def test_flows_table_shows_1000_connections_and_counts_the_rest(tmp_path):
    capture = tmp_path / "syn1003.pcap"
    convs = []
    for i in range(1003):
        conv = Conversation(client=("10.0.1.23", 20000 + i), server=("203.0.113.50", 443),
                            rtt=0.001, t0=1_700_000_000.0 + i / 100, seed=i)
        conv.handshake(at=0.0)
        convs.append(conv)
    write_pcap(capture, *convs)
    table = run_cli("flows", str(capture)).stdout
    assert "1003 connections" in table
    assert "10.0.1.23:20999" in table and "10.0.1.23:21000" not in table
    assert "(3 more connections not shown: the first 1000 are;" in table
    csv = run_cli("flows", str(capture), "-f", "csv").stdout
    assert len(csv.splitlines()) == 1 + 1003


@pytest.mark.parametrize("fmt, rows", [("md", 50), ("html", 200)])
def test_connection_tables_count_the_stalled_and_healthy_rows_they_leave_out(tmp_path, fmt, rows):
    """3 more stalled connections than the table has rows, and 2 healthy ones: stalled
    ones are listed first, and what is left out is 3 stalled and 2 healthy, not
    "5 more healthy"."""
    capture = tmp_path / "slow.pcap"
    healthy = [Conversation(client=("10.0.1.24", 30000 + i), server=("203.0.113.50", 443),
                            rtt=0.02, t0=1_700_000_000.0 + i, seed=100 + i) for i in range(2)]
    for conv in healthy:
        conv.handshake(at=0.0)
    write_pcap(capture, *[_slow_answer(41000 + i, i) for i in range(rows + 3)], *healthy)
    report = run_cli("diagnose", str(capture), "-f", fmt).stdout
    assert "5 more connections not shown: 3 stalled, 2 healthy" in report
    assert "more healthy connections" not in report


def test_text_report_table_of_stalled_connections_counts_the_rows_it_leaves_out(tmp_path):
    capture = tmp_path / "slow43.pcap"
    write_pcap(capture, *[_slow_answer(41000 + i, i) for i in range(43)])
    text = " ".join(run_cli("diagnose", str(capture)).stdout.split())
    assert "3 more stalled connections not shown: `capanalyze flows -f csv` lists every connection" in text
    assert "23 more stalls not detailed here (23 app_slowness)" in text
