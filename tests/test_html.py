"""The HTML report: one self-contained file, the Markdown report's content, charts
embedded, every capture-derived string escaped."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

import capanalyze
from capanalyze.report import build, render
from capanalyze.pipeline import Settings, analyze
from capanalyze.vantage import match_report

CRAFTED = Path(__file__).resolve().parents[1] / "sample_pcaps" / "crafted"


class Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def parse(page: str) -> Tags:
    p = Tags()
    p.feed(page)
    return p


def cli_html(*captures, out: Path) -> str:
    run = subprocess.run([sys.executable, "-m", "capanalyze", "diagnose", *map(str, captures),
                          "-f", "html", "-o", str(out)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    return out.read_text()


@pytest.mark.parametrize("name", ["redis_retries2_924s", "nlb_350s", "sse_proxy_cut_15s"])
def test_html_has_every_stall_and_its_chart(tmp_path, name):
    page = cli_html(CRAFTED / f"{name}.pcap", out=tmp_path / "r.html")
    cap = capanalyze.load(CRAFTED / f"{name}.pcap")
    tags = parse(page)
    text = "".join(tags.text)
    for s in cap.diagnosis["stalls"]:
        assert s["class"] in text
        frames = ", ".join(str(f) for f in s["frames"][:20])
        assert f"frames {frames}" in text
        assert s["evidence"][0] in text
        assert s["remedy"].splitlines()[0] in text
    imgs = [a for t, a in tags.tags if t == "img"]
    stalled_flows = {s["flow_id"] for s in cap.diagnosis["stalls"]}
    assert len(imgs) == len(stalled_flows) + 1          # one per stalled flow + the overview
    assert all(a["src"].startswith("data:image/png;base64,") for a in imgs)
    assert text.count("connections stalled") == 1
    # the connections table: one row per connection
    assert sum(1 for t, _ in tags.tags if t == "tr") >= len(cap.flows) + 1


def test_html_is_self_contained(tmp_path):
    page = cli_html(CRAFTED / "nlb_350s.pcap", out=tmp_path / "r.html")
    for tag, attrs in parse(page).tags:
        assert tag not in ("script", "link", "iframe")
        for key in ("src", "href"):
            value = attrs.get(key) or ""
            assert not value.startswith(("http:", "https:", "//")), (tag, attrs)
    assert page.count("<html") == 1 and page.rstrip().endswith("</html>")


@pytest.mark.parametrize("hostile", ["<script>x.pcap", "\"><img src=x onerror=alert(1)>.pcap"])
def test_hostile_file_name_is_escaped(tmp_path, hostile):
    odd = tmp_path / hostile
    shutil.copy(CRAFTED / "redis_retries2_924s.pcap", odd)
    page = cli_html(odd, out=tmp_path / "r.html")
    assert "<script" not in page
    assert "<img src=x" not in page
    assert "onerror=alert(1)>" not in page.replace("&gt;", ">").split("<body>")[0]
    tags = parse(page)
    assert all(t != "script" for t, _ in tags.tags)
    assert [a for t, a in tags.tags if t == "img" and not a["src"].startswith("data:")] == []
    assert hostile in "".join(tags.text)              # shown to the reader, as text


def test_two_vantages_chart_each_capture(tmp_path):
    page = cli_html(CRAFTED / "nat_gateway_350s.pcap", CRAFTED / "nat_gateway_350s.server.pcap",
                    out=tmp_path / "r.html")
    tags = parse(page)
    text = "".join(tags.text)
    assert "capture 0" in text and "capture 1" in text
    settings = Settings(keep_packets=True)
    analyses = [analyze(CRAFTED / n, settings) for n in ("nat_gateway_350s.pcap", "nat_gateway_350s.server.pcap")]
    report = build(analyses, match_report(analyses))
    charted = {(s.get("capture", 0), s["flow_id"]) for s in report["stalls"]}
    imgs = [a for t, a in tags.tags if t == "img"]
    assert len(imgs) == len(charted) + 2                 # + one overview per capture


def test_html_without_packets_still_renders():
    settings = Settings()
    analyses = [analyze(CRAFTED / "nlb_350s.pcap", settings)]
    page = render(build(analyses), "html", None)
    assert "silent_middlebox_eviction" in page and "<img" not in page
    # with only the notable packets, the charts still draw (from the event packets)
    page = render(build(analyses), "html", analyses)
    assert page.count("data:image/png;base64,") == 3


@pytest.mark.parametrize("name", ["lab/mixed.client.pcap", "crafted/redis_retries2_924s.pcap"])
def test_a_second_read_for_the_charts_gives_the_charts_of_the_whole_packet_table(name):
    """`diagnose -f html` diagnoses once, then reads the capture again for the packets
    of the connections it charts and every idle gap of those and of the overview's rows.
    Its page must be the page drawn from the whole packet table. Small chunks, so the
    connections' state crosses chunks in the second read too."""
    from capanalyze.pipeline import with_packets
    from capanalyze.plot.gantt import overview_rows
    from capanalyze.report.html import charted_flows

    path = CRAFTED.parent / name
    whole = [analyze(path, Settings(keep_packets=True))]
    first = [analyze(path, Settings(slim_notable=True, chunk_bytes=4096))]
    report = build(first)
    assert report == build(whole)
    [flows] = charted_flows(report, 1)
    assert flows and len(flows) < len(first[0].flows)
    gap_flows = overview_rows(first[0], max_rows=5)
    second = with_packets(path, first[0], flows, gap_flows)
    assert sorted(set(second.packets["flow_id"])) == sorted(flows)
    wanted = set(flows) | set(gap_flows)
    of = whole[0].gaps[whole[0].gaps["flow_id"].isin(wanted)].reset_index(drop=True)
    assert second.gaps[second.gaps["flow_id"].isin(wanted)].reset_index(drop=True).equals(of)
    assert render(report, "html", [second]) == render(report, "html", whole)


def _pair_report():
    settings = Settings(keep_packets=True)
    analyses = [analyze(CRAFTED / f"nat_gateway_350s{end}.pcap", settings) for end in ("", ".server")]
    return build(analyses, match_report(analyses)), analyses


TWO_CORES = pytest.mark.skipif(
    sys.platform != "linux" or len(getattr(os, "sched_getaffinity", lambda _: [])(0)) < 2,
    reason="charts are drawn by forked workers on Linux with 2+ cores only")


@TWO_CORES
def test_charts_drawn_by_workers_are_the_charts_drawn_one_by_one(monkeypatch):
    from capanalyze.report import html
    report, analyses = _pair_report()
    forked = []
    real_forked = html._forked
    monkeypatch.setattr(html, "_forked", lambda jobs: forked.append(len(jobs)) or real_forked(jobs))
    parallel = render(report, "html", analyses)
    assert forked and forked[0] >= 4          # two overviews and the stalled connections

    def no_fork(jobs):
        raise OSError("fork refused")
    monkeypatch.setattr(html, "_forked", no_fork)
    assert render(report, "html", analyses) == parallel
    assert parallel.count("data:image/png;base64,") == forked[0]


@TWO_CORES
def test_a_chart_worker_killed_mid_report_still_gives_every_chart(monkeypatch):
    from capanalyze.report import html
    report, analyses = _pair_report()
    whole = render(report, "html", analyses)
    parent, real_draw = os.getpid(), html._draw

    def dying(job):   # the OOM killer's way: SIGKILL in a worker
        if os.getpid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)
        return real_draw(job)
    dying.__module__, dying.__qualname__ = html.__name__, "_draw"   # found by name in the worker
    monkeypatch.setattr(html, "_draw", dying)
    assert render(report, "html", analyses) == whole


def test_a_process_with_other_threads_is_not_forked(monkeypatch):
    """A Jupyter kernel runs threads; a lock one holds at a fork would stay held in the
    workers, so its report's charts are drawn one by one."""
    import threading

    from capanalyze.report import html
    report, analyses = _pair_report()
    forked = []
    monkeypatch.setattr(html, "_forked", lambda jobs: forked.append(len(jobs)) or [])
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        page = render(report, "html", analyses)
    finally:
        stop.set()
        other.join()
    assert not forked
    assert page.count("data:image/png;base64,") >= 4
