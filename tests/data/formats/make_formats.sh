#!/usr/bin/env bash
# Recreate the small reader test captures in this directory with real tools.
#
# Needs root (network namespaces), tcpdump, dumpcap, editcap, mergecap, curl, python3
# with scapy. Two namespaces joined by a veth pair carry short HTTP exchanges to
# python's http.server; tcpdump/dumpcap capture them. VLAN tags, pings (no ping binary
# here) and a few packets no everyday tool sends (IPv6 extension-header chains,
# fragmented TCP, odd TCP options) are sent onto the wire with scapy and captured by
# tcpdump, so the bytes still come from a real capture; the peer's kernel answers the
# pings (reassembling and fragmenting itself for the 3000-byte ones). Files no tool can write (big-endian pcap
# and pcapng, BSD NULL/LOOP link types) are rewritten from tool captures by craft.py.
#
#   sudo tests/data/formats/make_formats.sh
set -euo pipefail
OUT="$(cd "$(dirname "$0")" && pwd)"
WORK="$(mktemp -d /tmp/capr-mk.XXXXXX)"
A=capr-a; B=capr-b
PIDS=()

CAP_PID=
cleanup() {
    [ -n "$CAP_PID" ] && kill "$CAP_PID" 2>/dev/null || true
    for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
    ip netns del $A 2>/dev/null || true
    ip netns del $B 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

ina() { ip netns exec $A "$@"; }
inb() { ip netns exec $B "$@"; }

setup_net() {
    ip netns add $A; ip netns add $B
    ip link add veth-a netns $A type veth peer name veth-b netns $B
    for ns in $A $B; do ip -n $ns link set lo up; done
    ip -n $A addr add 10.99.0.1/24 dev veth-a; ip -n $B addr add 10.99.0.2/24 dev veth-b
    ip -n $A addr add fd99::1/64 dev veth-a nodad; ip -n $B addr add fd99::2/64 dev veth-b nodad
    ip -n $A link set veth-a up; ip -n $B link set veth-b up
    # offloads off so captured packets look like wire packets (no 64 KB TSO frames)
    ina ethtool -K veth-a tso off gso off gro off >/dev/null 2>&1 || true
    inb ethtool -K veth-b tso off gso off gro off >/dev/null 2>&1 || true
    mkdir -p "$WORK/www"; echo "hello from capanalyze's test server" > "$WORK/www/hello.txt"
    ip netns exec $B python3 -m http.server 8080 --bind :: --directory "$WORK/www" \
        >/dev/null 2>&1 &
    PIDS+=($!)
    sleep 1
}

# start_capture FILE CMD...: run a capture tool in namespace A until stop_capture
start_capture() {
    local file=$1; shift
    # not via ina(): `ip netns exec` execs the tool, so $! is the tool's own pid
    ip netns exec $A "$@" -w "$WORK/$file" >/dev/null 2>&1 &
    CAP_PID=$!
    sleep 1.5
}
stop_capture() { sleep 0.5; kill -INT $CAP_PID; wait $CAP_PID || true; }

get() { ina curl -s -o /dev/null --max-time 5 "$@"; }

tcp_exchange() { get http://10.99.0.2:8080/hello.txt; }

capture_all() {
    # Ethernet, microseconds: one HTTP GET, ARP, a ping, one UDP datagram
    ina ip neigh flush dev veth-a
    start_capture eth_ipv4.pcap tcpdump -Z root -U -i veth-a
    tcp_exchange
    ina python3 "$OUT/craft.py" ping 10.99.0.2 56
    ina python3 -c "import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('10.99.0.2', 5353))"
    stop_capture

    # Ethernet, nanosecond pcap
    start_capture eth_nsec.pcap tcpdump -Z root -U -i veth-a --time-stamp-precision=nano
    tcp_exchange
    stop_capture

    # Linux cooked v1 and v2 (tcpdump -i any)
    start_capture sll.pcap tcpdump -Z root -U -i any -y LINUX_SLL
    tcp_exchange
    stop_capture
    start_capture sll2.pcap tcpdump -Z root -U -i any -y LINUX_SLL2
    tcp_exchange
    stop_capture

    # VLAN 802.1Q and QinQ (802.1ad + 802.1Q). This kernel has neither the 8021q module
    # nor tc's vlan action, so the frames of a real exchange (eth_ipv4.pcap's TCP
    # frames) are re-sent by scapy with the tags inserted, and captured by tcpdump.
    start_capture vlan.pcap tcpdump -Z root -U -i veth-a
    ina python3 "$OUT/craft.py" send-vlan veth-a "$WORK/eth_ipv4.pcap"
    stop_capture

    # IPv6: a real exchange, real fragments (ping6 of 3000 bytes), and TCP segments
    # with extension-header chains / odd options sent by scapy
    start_capture ipv6.pcap tcpdump -Z root -U -i veth-a ip6
    get -g "http://[fd99::2]:8080/hello.txt"
    ina python3 "$OUT/craft.py" ping fd99::2 3000
    ina python3 "$OUT/craft.py" send-ipv6 veth-a "$(peer_mac)"
    stop_capture

    # IPv4 options, fragmented TCP, SACK blocks, malformed option lengths, ICMP frags
    start_capture ipv4_odd.pcap tcpdump -Z root -U -i veth-a ip
    ina python3 "$OUT/craft.py" ping 10.99.0.2 3000
    ina python3 "$OUT/craft.py" send-ipv4 veth-a "$(peer_mac)"
    stop_capture

    # small snaplen: headers cut inside the TCP options / payload
    start_capture snap64.pcap tcpdump -Z root -U -i veth-a -s 64
    tcp_exchange
    stop_capture

    # pcapng from dumpcap on two interfaces with different link types (Ethernet + any)
    ip netns exec $A dumpcap -q -i veth-a -i any -w "$WORK/two_if.pcapng" >/dev/null 2>&1 &
    CAP_PID=$!; sleep 2
    tcp_exchange
    stop_capture
}

peer_mac() { ip -n $B -br link show veth-b | awk '{print $3}'; }

convert_all() {
    cd "$WORK"
    # pcapng from editcap (nanosecond -> if_tsresol 9)
    editcap -F pcapng eth_nsec.pcap eth_nsec.pcapng
    # raw IP: strip the 14-byte Ethernet header of an IP-only capture
    editcap -F pcap -C 14 -T rawip ipv6.pcap rawip6_101.pcap
    editcap -F pcap -C 14 -T rawip ipv4_odd.pcap rawip_101.pcap
    editcap -F pcap -C 14 -T rawip4 ipv4_odd.pcap rawip4_228.pcap
    editcap -F pcap -C 14 -T rawip6 ipv6.pcap rawip6_229.pcap
    # several sections: concatenated pcapng files are a valid multi-section file
    editcap -F pcapng eth_ipv4.pcap eth_ipv4.pcapng
    cat eth_ipv4.pcapng two_if.pcapng > sections.pcapng
    # gzip (as tcpdump -z gzip would leave it)
    gzip -n -9 -c eth_ipv4.pcap > eth_ipv4.pcap.gz
    gzip -n -9 -c two_if.pcapng > two_if.pcapng.gz
    # rewritten by craft.py: big-endian pcap / pcapng, BSD NULL and LOOP link types
    python3 "$OUT/craft.py" bigendian-pcap eth_ipv4.pcap bigendian.pcap
    python3 "$OUT/craft.py" bigendian-pcapng sections.pcapng bigendian.pcapng
    python3 "$OUT/craft.py" null rawip_101.pcap rawip6_101.pcap null.pcap
    python3 "$OUT/craft.py" loop rawip_101.pcap rawip6_101.pcap loop.pcap
    rm -f eth_ipv4.pcapng
    cp ./*.pcap ./*.pcapng ./*.gz "$OUT/"
}

setup_net
capture_all
convert_all
ls -l "$OUT"
