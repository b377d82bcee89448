"""Charts: what is drawn (markers, lines, labels), not only that a file appears."""
from __future__ import annotations

import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

import capanalyze
from capanalyze import plot
from capanalyze.craft import Conversation, write_pcap
from capanalyze.plot import timeaxis
from capanalyze.plot.flow import DENSE_PACKETS

CRAFTED = Path(__file__).resolve().parents[1] / "sample_pcaps" / "crafted"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def redis():
    return capanalyze.load(CRAFTED / "redis_retries2_924s.pcap")


@pytest.fixture(scope="module")
def nlb():
    return capanalyze.load(CRAFTED / "nlb_350s.pcap")


def artist(ax, gid):
    found = [a for a in ax.get_children() if a.get_gid() == gid]
    return found


def offsets(ax, kind) -> np.ndarray:
    found = artist(ax, f"kind:{kind}")
    assert len(found) <= 1
    return found[0].get_offsets() if found else np.zeros((0, 2))


def texts(ax, gid) -> list[str]:
    return [t.get_text() for t in ax.texts if t.get_gid() == gid]


def line_xs(ax, gid) -> list[float]:
    return [float(np.asarray(line.get_xdata())[0]) for line in ax.lines if line.get_gid() == gid]


# ------------------------------------------------------------------ flow timeline
def test_redis_backoff_markers_gap_and_give_up(redis):
    fig = redis.flow(0).plot()
    ax = fig.axes[0]
    start = redis.flows.loc[0, "start_ts"]
    retrans = offsets(ax, "retransmission")
    assert len(retrans) == 15 == redis.flows.loc[0, "retransmissions"]
    # each marker at its frame's time, in the client->server lane (above)
    expected = redis.flow(0).packets.query("retransmission")["ts"].to_numpy() - start
    assert np.allclose(np.sort(retrans[:, 0]), np.sort(expected))
    assert (retrans[:, 1] > 0.5).all()
    labels = texts(ax, "gap-label")
    assert any("1800.0 s" in t and "30 min" in t and "no keepalive" in t for t in labels), labels
    chain = redis.backoffs.iloc[0]
    assert line_xs(ax, "give-up") == pytest.approx([chain.give_up_ts - start])
    assert any("924.6" in t and "tcp_retries2=15" in t for t in texts(ax, "give-up-label"))
    # the intervals of the capped part are written between the markers
    assert texts(ax, "interval").count("120 s") >= 5
    assert "15 retransmissions" in texts(ax, "backoff-caption")[0]


def test_redis_axis_is_broken_across_the_30_min_idle(redis):
    ax = redis.flow(0).plot().axes[0]
    scale = ax.xaxis.get_transform()
    # 1.5 s of commands before the gap get a sizable share of the width, not one pixel
    lo, hi = ax.get_xlim()
    share = (scale.transform([1.6])[0] - scale.transform([lo])[0]) / (
        scale.transform([hi])[0] - scale.transform([lo])[0])
    assert share > 0.08
    assert sum(t.get_text() == "//" for t in ax.texts) == 2


def test_nlb_timeout_line_350_s_after_idle_start(nlb):
    ax = nlb.flow(0).plot().axes[0]
    start = nlb.flows.loc[0, "start_ts"]
    idle_start = nlb.flow(0).gaps.iloc[0]["start_ts"] - start
    xs = line_xs(ax, "timeout")
    assert any(abs(x - (idle_start + 350)) < 1e-6 for x in xs), xs
    assert any(t.startswith("350 s idle: AWS Network Load Balancer") for t in texts(ax, "timeout-label"))
    assert len(offsets(ax, "rst")) == 1
    assert any("forged RST" in t for t in texts(ax, "forged-rst"))


def test_nlb_keepalive_markers(nlb):
    ax = nlb.flow(1).plot().axes[0]
    row = nlb.flows.loc[1]
    assert row["client_port"] == 51530
    assert len(offsets(ax, "keepalive")) == row["keepalives"] == 15
    assert len(offsets(ax, "keepalive_ack")) == 15
    assert len(offsets(ax, "retransmission")) == 0
    # one gap label with the 960 s wait and its keepalives; no axis cut (probes every 60 s)
    assert any("960.0 s" in t and "15 keepalives" in t for t in texts(ax, "gap-label"))
    assert not any(t.get_text() == "//" for t in ax.texts)


def test_sse_cut_line_at_15_s_age():
    cap = capanalyze.load(CRAFTED / "sse_proxy_cut_15s.pcap")
    ax = cap.flow(0).plot().axes[0]
    assert line_xs(ax, "timeout") == pytest.approx([15.0])
    assert len(offsets(ax, "fin")) == 2
    # the stream closed: no "idle until the capture ended" after the FINs
    assert texts(ax, "gap-label") == []


def test_every_packet_is_drawn_once(nlb):
    ax = nlb.flow(0).plot().axes[0]
    n = sum(len(a.get_offsets()) for a in ax.collections if str(a.get_gid()).startswith("kind:"))
    assert n == nlb.flows.loc[0, "packets"]


def test_dense_flow_is_aggregated(tmp_path):
    conv = Conversation(client=("192.0.2.10", 50123), server=("198.51.100.20", 443), rtt=0.02)
    conv.handshake(at=0.0)
    conv.send("c", b"GET /big HTTP/1.1\r\n\r\n", at=0.1)
    for i in range(40):
        conv.send("s", b"x" * 1448 * 50, at=0.2 + i * 0.05)
    for i in range(40):
        conv.send("s", b"y" * 1448 * 50, at=900.2 + i * 0.05)
    conv.close("c", at=905.0)
    write_pcap(tmp_path / "dense.pcap", conv)
    cap = capanalyze.load(tmp_path / "dense.pcap")
    n = int(cap.flows.loc[0, "packets"])
    assert n > DENSE_PACKETS
    ax = cap.flow(0).plot().axes[0]
    assert offsets(ax, "data").size == 0 and offsets(ax, "ack").size == 0
    density = [a for a in ax.get_children() if str(a.get_gid()).startswith("density:")]
    assert len(density) == 2
    counted = sum(float(np.sum(a.get_data()[0] - a.get_data().baseline)) for a in density)
    assert counted > 0
    assert len(offsets(ax, "syn")) == 2 and len(offsets(ax, "fin")) == 2
    path = tmp_path / "dense.png"
    plot.save(ax.figure, path)
    assert path.read_bytes()[:8] == PNG_MAGIC


def test_zero_window_probes_and_closed_window(tmp_path):
    conv = Conversation(client=("192.0.2.10", 50123), server=("198.51.100.20", 443), rtt=0.02)
    conv.handshake(at=0.0)
    conv.send("c", b"GET / HTTP/1.1\r\n\r\n", at=0.1)
    conv.send("s", b"x" * 3000, at=0.2)
    conv.zero_window("c", at=0.5)
    for i in range(6):
        conv.zero_window_probe("s", at=1 + 2 ** i)
    conv.window_update("c", at=70)
    conv.send("s", b"y" * 1000, at=70.1)
    conv.close("c", at=71)
    write_pcap(tmp_path / "zw.pcap", conv)
    cap = capanalyze.load(tmp_path / "zw.pcap")
    ax = cap.flow(0).plot().axes[0]
    probes = offsets(ax, "zero_window_probe")
    assert len(probes) == 6 == int(cap.flow(0).packets["zero_window_probe"].sum())
    assert (probes[:, 1] < 0.5).all()                       # sent by the server (lower lane)
    assert len(offsets(ax, "zero_window")) > 0
    # the probe waits are not idle gaps and the axis is not cut across them
    assert texts(ax, "gap-label") == []
    assert not any(t.get_text() == "//" for t in ax.texts)


def test_dollar_signs_in_names_are_not_mathtext(tmp_path, redis):
    odd = tmp_path / "cost$1$ and $x^2$.pcap"
    shutil.copy(CRAFTED / "redis_retries2_924s.pcap", odd)
    cap = capanalyze.load(odd)
    path = tmp_path / "odd.png"
    plot.save(cap.flow(0).plot(), path)
    assert path.read_bytes()[:8] == PNG_MAGIC


# ------------------------------------------------------------------ several flows, overview
def test_flows_figure_one_panel_per_flow_capped(redis):
    fig = plot.flows_figure(redis.main, [0, 1])
    assert len(fig.axes) == 2
    fig = plot.flows_figure(redis.main, [0] * 13)
    assert len(fig.axes) == plot.MAX_PANELS
    assert "12 of 13" in fig._suptitle.get_text()


@pytest.mark.parametrize("name", ["nlb_350s", "sse_proxy_cut_15s", "nat_gateway_350s",
                                  "redis_retries2_924s"])
def test_overview_one_row_per_connection(name):
    cap = capanalyze.load(CRAFTED / f"{name}.pcap")
    ax = cap.plot_overview().axes[0]
    lifespans = [c for c in ax.containers if _container_gid(c) == "lifespans"]
    assert len(lifespans) == 1
    assert len(lifespans[0].patches) == len(cap.flows)
    stalls = [c for c in ax.containers if _container_gid(c) == "stalls"]
    assert sum(len(c.patches) for c in stalls) == len(cap.stalls)
    # stalled connections come first
    labels = [t.get_text() for t in ax.get_yticklabels()]
    stalled = set(cap.flows.index[cap.flows["verdict"] != "healthy"])
    first = {int(label.split(":")[0]) for label in labels[:len(stalled)]}
    assert first == stalled


def test_overview_draws_the_silence_until_the_capture_ends(redis):
    """The stalled Redis connection never closed: its row is idle from the last request,
    through the retransmissions, to the end of the capture (the reconnect)."""
    ax = redis.plot_overview().axes[0]
    [gaps] = [c for c in ax.collections if c.get_gid() == "gaps"]
    row0 = [path.vertices for path in gaps.get_paths() if abs(path.vertices[:, 1].mean()) < 0.3]
    span = redis.main.info.last_ts - redis.main.info.first_ts
    assert min(v[:, 0].min() for v in row0) < 2.0          # the request was ACKed at 1.5 s
    assert max(v[:, 0].max() for v in row0) == pytest.approx(span, abs=1e-6)
    assert sum(np.ptp(v[:, 0]) for v in row0) > 0.95 * span   # all but the shortest backoff intervals


def _container_gid(container):
    return container.patches[0].get_gid() if container.patches else None


def test_cli_overview_draws_every_idle_gap_as_the_notebook_does(tmp_path):
    """The CLI diagnosis keeps only the idle gaps it reads; its overview drew only
    those (5 of the 107 gaps long enough to show on this capture's rows)."""
    capture = CRAFTED.parent / "lab" / "mixed.client.pcap"
    cli, notebook = tmp_path / "cli.png", tmp_path / "notebook.png"
    run = subprocess.run([sys.executable, "-m", "capanalyze", "plot", str(capture), "--overview",
                          "-o", str(cli)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    plot.save(capanalyze.load(capture).plot_overview(), notebook)
    assert cli.read_bytes() == notebook.read_bytes()


def test_capture_without_a_connection_is_charted_without_warnings(tmp_path):
    """A capture of UDP only: the overview is an empty chart that says so. Matplotlib
    warned on stderr about its zero-height y range."""
    from scapy.all import IP, UDP, Ether, wrpcap
    capture = tmp_path / "dns.pcap"
    packet = Ether() / IP(src="10.0.0.1", dst="10.0.0.53") / UDP(sport=40000, dport=53)
    packet.time = 1_700_000_000
    wrpcap(str(capture), [packet])
    for command, out in (["plot", "--overview"], tmp_path / "o.png"), (["diagnose", "-f", "html"], tmp_path / "r.html"):
        run = subprocess.run([sys.executable, "-m", "capanalyze", command[0], str(capture), *command[1:],
                              "-o", str(out)], capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        assert run.stderr == f"capanalyze: wrote {out}\n"
    ax = plot.overview(capanalyze.load(capture).main).axes[0]
    assert ax.get_title(loc="left") == "dns.pcap: 0 connections, 0 stalled"


def test_overview_caps_rows(nlb):
    fig = plot.overview(nlb.main, max_rows=1)
    ax = fig.axes[0]
    assert len(ax.get_yticks()) == 1
    assert "first 1 of 2" in ax.get_title(loc="left")


# ------------------------------------------------------------------ files
def test_save_png_and_svg(tmp_path, nlb):
    png, svg = tmp_path / "a.png", tmp_path / "a.svg"
    plot.save(nlb.flow(0).plot(), png)
    plot.save(nlb.plot_overview(), svg)
    assert png.read_bytes()[:8] == PNG_MAGIC
    root = ET.parse(svg).getroot()
    assert root.tag.endswith("svg")
    with pytest.raises(capanalyze.errors.CaptureError):
        plot.save(nlb.flow(0).plot(), tmp_path / "a.jpg")


def test_cli_plot_stalls(tmp_path):
    out = tmp_path / "stalls.svg"
    run = subprocess.run([sys.executable, "-m", "capanalyze", "plot", str(CRAFTED / "nlb_350s.pcap"),
                          "--stalls", "-o", str(out)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    root = ET.parse(out).getroot()
    assert root.tag.endswith("svg")
    bad = subprocess.run([sys.executable, "-m", "capanalyze", "plot", str(CRAFTED / "nlb_350s.pcap"),
                          "--flow", "99", "-o", str(tmp_path / "x.png")], capture_output=True, text=True)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr


# ------------------------------------------------------------------ the broken axis
def test_time_axis_cuts_only_long_silences():
    backoff = 1801.5 + np.array([0, 0.2, 0.6, 1.4, 3.0, 6.2, 12.6, 25.4, 51.0, 102.2, 204.6,
                                 324.6, 444.6, 564.6, 684.6, 804.6, 924.6])
    axis = timeaxis.build(np.concatenate([[0.0, 0.5, 1.0, 1.5], backoff]))
    assert len(axis.breaks) == 1
    a, b = axis.breaks[0]
    assert 1.5 < a < b < 1801.5
    t = np.linspace(-10, 2800, 500)
    v = axis.forward(t)
    assert np.all(np.diff(v) > 0)
    assert np.allclose(axis.inverse(v), t)
    steady = timeaxis.build(np.arange(0, 900, 60.0))
    assert steady.breaks == []


def _drawn(fig):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return canvas.get_renderer()


def test_titles_fit_above_the_chart_with_ipv6_addresses(tmp_path):
    """The connection (left) and where its times come from (right) share the line above
    each panel. With IPv6 addresses and a long file name the title ran over the details
    and off the figure; the two must be apart and inside it, in the notebook's chart
    and the CLI's panels alike."""
    conv = Conversation(("2001:db8:1234:5678:9abc:def0:1234:5678", 50949),
                        ("2001:db8:abcd:ef01:2345:6789:abcd:ef01", 443))
    conv.handshake(0.0)
    conv.send("c", b"GET /", at=0.1)
    conv.send("c", b"GET /next", at=400.0)
    conv.rst("s", at=400.05)
    path = tmp_path / "incident-4711-prod-frontend-nlb.client.pcap"
    write_pcap(path, conv)
    cap = capanalyze.load(path)
    short = capanalyze.load(CRAFTED / "nat_gateway_350s.pcap")
    for fig in (cap.flow(0).plot(), plot.flows_figure(cap.main, [0]), short.flow(0).plot()):
        renderer = _drawn(fig)
        page = fig.bbox
        for ax in fig.axes:
            left = ax._left_title.get_window_extent(renderer)
            right = ax._right_title.get_window_extent(renderer)
            assert left.x1 + 5 < right.x0, (left, right)
            assert page.x0 <= left.x0 and right.x1 <= page.x1 and max(left.y1, right.y1) <= page.y1
    one_line = short.flow(0).plot().axes[0]   # room to spare: one line each, as before
    assert "\n" not in one_line._left_title.get_text() + one_line._right_title.get_text()


def test_labels_along_lines_keep_clear_of_them(redis, nlb):
    """The middlebox timeout and give-up labels are written up their lines: set flush
    against them, the dots ran through the tops of the letters."""
    for cap in (redis, nlb):
        fig = cap.flow(0).plot()
        renderer = _drawn(fig)
        ax = fig.axes[0]
        labels = [t for t in ax.texts if t.get_gid() in ("timeout-label", "give-up-label")]
        lines = [ax.transData.transform((x, 0))[0]
                 for gid in ("timeout", "give-up") for x in line_xs(ax, gid)]
        assert len(labels) == len(lines) >= 3
        for label in labels:
            box = label.get_window_extent(renderer)
            assert all(x <= box.x0 - 2 or x >= box.x1 + 2 for x in lines), label.get_text()


def test_gap_labels_fit_their_gaps(tmp_path):
    """A gap's label (its length and keepalives) is written only where it fits inside
    the gap, shortened to the length when only that fits: on a chatty connection with
    gaps of ~2 s, the labels ran out of their gaps and over each other."""
    conv = Conversation(("192.0.2.10", 50123), ("198.51.100.20", 80))
    conv.handshake(0.0)
    at = 0.1
    for pause in (1.6, 9.3, 1.8, 2.3, 1.8, 100.0):   # request, answer, then a pause
        conv.send("c", b"GET", at=at)
        conv.send("s", b"OK", at=at + 0.02)
        at += 0.04 + pause
    conv.close("c", at=at)
    path = tmp_path / "chatty.pcap"
    write_pcap(path, conv)
    cap = capanalyze.load(path)
    fig = cap.flow(0).plot()
    renderer = _drawn(fig)
    ax = fig.axes[0]
    t0 = cap.flows["start_ts"][0]
    spans = [(ax.transData.transform((a - t0, 0))[0], ax.transData.transform((b - t0, 0))[0])
             for a, b in zip(cap.gaps["start_ts"], cap.gaps["end_ts"])]
    labels = [t for t in ax.texts if t.get_gid() == "gap-label"]
    for label in labels:
        box = label.get_window_extent(renderer)
        a, b = next((a, b) for a, b in spans if a <= (box.x0 + box.x1) / 2 <= b)
        assert a <= box.x0 and box.x1 <= b, label.get_text()
    texts = sorted(t.get_text() for t in labels)
    assert "idle 9.3 s\nno keepalive" in texts and "1.8 s" in texts   # in full / the length alone


def test_tick_labels_of_a_flow_chart_never_overlap():
    """Flow 2 of the lab capture hangs until the capture ends; the axis gives the
    capture's end alone a narrow slot, and its two ticks were printed over each other
    ("55.99" on "55.995"). Every pair of labels must now be apart."""
    cap = capanalyze.load(CRAFTED.parent / "lab" / "mixed.client.pcap")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    fig = cap.flow(2).plot()
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    for ax in fig.axes:
        boxes = [label.get_window_extent(renderer) for label in ax.get_xticklabels()
                 if label.get_visible() and label.get_text()]
        assert all(a.x1 < b.x0 for a, b in zip(boxes, boxes[1:])), [str(b) for b in boxes]
        assert boxes
