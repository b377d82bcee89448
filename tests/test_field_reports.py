"""The four field reports (shared/docs/field-reports.md), crafted at their real time
scale in sample_pcaps/crafted/, diagnosed through the real command line."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from helpers import SAMPLES, diagnose_json, run_cli

CRAFTED = SAMPLES / "crafted"

# capture -> {client port: expected verdict}; from sample_pcaps/crafted/README.md
EXPECTED = {
    "sse_proxy_cut_15s.pcap": {52101: "middlebox_cut", 52102: "healthy", 52104: "middlebox_cut"},
    "nat_gateway_350s.pcap": {41822: "missing_keepalive", 41830: "app_slowness", 41846: "healthy"},
    "nat_gateway_350s.server.pcap": {23415: "silent_middlebox_eviction", 23431: "app_slowness"},
    "nat_gateway_350s_fixed.pcap": {41822: "app_slowness", 41830: "app_slowness"},
    "redis_retries2_924s.pcap": {40112: "silent_middlebox_eviction", 40118: "healthy"},
    "nlb_350s.pcap": {51514: "silent_middlebox_eviction", 51530: "app_slowness"},
}


def by_port(report: dict) -> dict[int, dict]:
    return {int(f["client"].rsplit(":", 1)[1]): f for f in report["flows"]}


def stall_of(report: dict, flow_id: int, capture: int | None = None) -> dict:
    found = [s for s in report["stalls"] if s["flow_id"] == flow_id
             and (capture is None or s.get("capture") == capture)]
    assert found, f"no stall for flow {flow_id}"
    return found[0]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_flow_gets_its_expected_verdict(name):
    report = diagnose_json(str(CRAFTED / name))
    flows = by_port(report)
    assert {p: flows[p]["verdict"] for p in EXPECTED[name]} == EXPECTED[name]
    healthy = {f["flow_id"] for f in report["flows"] if f["verdict"] == "healthy"}
    assert not [s for s in report["stalls"] if s["flow_id"] in healthy]


def test_redis_set_matches_tcp_retries2_15_and_its_924_6_s_give_up():
    report = diagnose_json(str(CRAFTED / "redis_retries2_924s.pcap"))
    stall = stall_of(report, by_port(report)[40112]["flow_id"])
    chain = stall["backoff"]
    assert chain["retransmissions"] == 15
    assert chain["model"] == "linux" and chain["retries2"] == 15 and not chain["retries2_at_least"]
    assert chain["give_up_s"] == pytest.approx(924.6, abs=0.01)
    assert chain["ended_by"] == "gave_up" and chain["capped"]
    assert stall["idle_before_s"] == pytest.approx(1800, abs=1)
    assert {"no_keepalive", "retries2_exhausted"} <= set(stall["factors"])
    assert "tcp-keepalive" in stall["remedy"]          # Redis on 6379: the server-side knob
    assert "TCP_USER_TIMEOUT" in stall["remedy"]


def test_nlb_forged_rst_is_named_with_its_ttl_and_the_350_s_culprit():
    report = diagnose_json(str(CRAFTED / "nlb_350s.pcap"))
    stall = stall_of(report, by_port(report)[51514]["flow_id"])
    assert "forged_rst" in stall["factors"]
    assert any("TTL 64" in e and "TTL 52" in e for e in stall["evidence"])
    assert "AWS Network Load Balancer" in [c["name"] for c in stall["culprits"]]
    assert "TCP_KEEPIDLE" in stall["remedy"]


def test_an_idle_ended_by_a_fin_that_a_box_resets_is_not_a_survivor():
    """The NLB client closes after 18 min idle and its FIN is answered by a forged RST:
    that idle was the eviction. Counted as survived, it made the bracket claim that no
    single idle timeout explains the evictions."""
    report = diagnose_json(str(CRAFTED / "nlb_350s.pcap"))
    bracket = report["eviction_threshold"]
    assert bracket["consistent"]
    assert bracket["low_s"] < 350 <= bracket["high_s"]
    assert "AWS Network Load Balancer" in bracket["matches"]


def test_sse_cut_at_15_s_names_envoy_and_the_websocket_survives():
    report = diagnose_json(str(CRAFTED / "sse_proxy_cut_15s.pcap"))
    flows = by_port(report)
    for port, kind in ((52101, "cut_by_fin"), (52104, "cut_by_rst")):
        stall = stall_of(report, flows[port]["flow_id"])
        assert kind in stall["factors"]
        assert stall["duration_s"] == pytest.approx(15.05, abs=0.1)
        assert any(c["timeout_s"] == 15 and "Envoy" in c["name"] for c in stall["culprits"])
    assert flows[52102]["verdict"] == "healthy"


def test_two_vantages_through_nat_are_matched_and_bracket_the_350_s_timeout():
    report = diagnose_json(str(CRAFTED / "nat_gateway_350s.pcap"),
                           str(CRAFTED / "nat_gateway_350s.server.pcap"))
    assert len(report["captures"]) == 2
    assert sorted(tuple(m["flows"]) for m in report["matches"]) == [(0, 0), (1, 1)]
    assert all(m["nat"] for m in report["matches"])
    client_side = stall_of(report, 0, capture=0)
    assert client_side["class"] == "missing_keepalive"
    assert "answer_black_holed" in client_side["factors"]
    server_side = stall_of(report, 0, capture=1)
    assert any("never reached the client" in e for e in server_side["evidence"])
    bracket = report["eviction_threshold"]
    assert bracket["low_s"] < 350 <= bracket["high_s"]
    assert "AWS NAT gateway" in bracket["matches"]


def test_fail_on_gives_exit_1_only_for_the_named_classes():
    from helpers import run_cli
    path = str(CRAFTED / "sse_proxy_cut_15s.pcap")
    run_cli("diagnose", path, "--fail-on", "middlebox_cut", check_exit=1)
    run_cli("diagnose", path, "--fail-on", "silent_middlebox_eviction", check_exit=0)
    bad = run_cli("diagnose", path, "--fail-on", "nonsense", check_exit=2)
    assert bad.stderr.count("\n") == 1 and "unknown class" in bad.stderr


def test_a_connection_that_hung_until_the_capture_ended_shows_that_idle_in_the_tables():
    # flow 0 waits 1200 s for an answer that never comes, then the capture stops: its
    # longest gap between packets is 0.1 s, which the tables used to show
    path = str(CRAFTED / "nat_gateway_350s.pcap")
    flows = {f["flow_id"]: f for f in diagnose_json(path)["flows"]}
    assert flows[0]["verdict"] == "missing_keepalive" and flows[0]["max_idle_s"] < 1
    assert flows[0]["idle_at_end_s"] == pytest.approx(1200.1, abs=0.1)
    assert flows[1]["idle_at_end_s"] == 0.0 and flows[1]["state"] == "closed"

    text = run_cli("diagnose", path).stdout
    row = next(line for line in text.splitlines() if "41822" in line and "missing_keepalive" in line)
    assert "1200.1 s to end" in row
    markdown = run_cli("diagnose", path, "--format", "md").stdout
    assert "| open | 1200.1 s to end | 0 | 0 | missing_keepalive |" in markdown
    table = run_cli("flows", path).stdout
    assert "1200.1 to end" in table and "300.0" in table


def test_the_tables_never_cut_a_verdict_or_a_number():
    # rich shortened cells to fit: "silent_middlebox_evic…" in the report's table, and
    # "107…" for 1079.9 s in `flows` on a 120-column terminal
    path = str(CRAFTED / "nlb_350s.pcap")
    row = next(line for line in run_cli("diagnose", path).stdout.splitlines() if "│ 10.0.1.50:51514 " in line)
    assert "1079.9 s" in row and "silent_middlebox_eviction │" in row
    narrow = subprocess.run([sys.executable, "-m", "capanalyze", "flows", path], capture_output=True,
                            text=True, env=dict(os.environ, COLUMNS="80"), check=True).stdout
    rows = [line for line in narrow.splitlines() if "10.0.1.50:" in line]
    assert "1079.9" in rows[0] and "silent_middlebox_eviction" in rows[0] and "reset by server" in rows[0]
    assert "10446" in rows[1] and "960.0" in rows[1]


def test_the_terminal_report_wraps_each_bullet_with_a_hanging_indent():
    # rich wrapped at 110 columns flush left, so a bullet's second line read as a new
    # item, and "1080.0" could end a line with its "s" on the next
    text = run_cli("diagnose", str(CRAFTED / "nlb_350s.pcap")).stdout
    lines = [line for line in text.splitlines()
             if not any(c in line for c in "┃│┏┡└━") and line.strip() != "stalled connections"]
    assert max(map(len, lines)) <= 110
    first = next(k for k, line in enumerate(lines) if line.startswith("  - frame 10 "))
    assert lines[first + 1].startswith("    ") and "no keepalive probes" in lines[first + 1]
    assert all(line.startswith(("  - ", "    ")) for line in lines[first:first + 4])
    assert not re.search(r"\d\n *(s|ms|min)\b", text) and not re.search(r"frames?\n", text)
    assert "  this capture: threshold <= 1079.9 s" in text   # the threshold's second line


def test_two_vantages_name_the_capture_of_each_flow_in_the_terminal_and_markdown():
    # flow ids count per capture: both vantages have a "flow 0", and the terminal report
    # named neither's capture
    pair = (str(CRAFTED / "nat_gateway_350s.pcap"), str(CRAFTED / "nat_gateway_350s.server.pcap"))
    text = run_cli("diagnose", *pair).stdout
    assert "flow 0 (capture 0): missing_keepalive" in text
    assert "flow 0 (capture 1): silent_middlebox_eviction" in text
    rows = [[cell.strip() for cell in line.split("│")[1:4]] for line in text.splitlines()
            if line.startswith("│")]
    assert rows == [["0", "0", "10.0.1.23:41822"], ["0", "1", "10.0.1.23:41830"],
                    ["1", "0", "198.51.100.7:23415"], ["1", "1", "198.51.100.7:23431"]]
    markdown = run_cli("diagnose", *pair, "--format", "md").stdout
    assert "| capture | flow | client |" in markdown
    assert "| 1 | 0 | 198.51.100.7:23415 | 203.0.113.50:443 | 26 | open |" in markdown
    assert "| capture |" not in run_cli("diagnose", pair[0], "--format", "md").stdout
