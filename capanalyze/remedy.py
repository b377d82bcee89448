"""The fix for a stall, in concrete settings: keepalive below the timeout, fail fast."""
from __future__ import annotations

from . import catalog

KEEPALIVE_INTERVAL_S = 10
KEEPALIVE_PROBES = 3


def keepalive_idle_for(timeout_s: float) -> int:
    """An idle time safely below the timeout, leaving room for the probes themselves."""
    target = timeout_s - KEEPALIVE_INTERVAL_S * KEEPALIVE_PROBES
    if target < timeout_s * 0.5:
        target = timeout_s * 0.5
    return max(1, int(target // 10 * 10) if target >= 20 else int(target))


def keepalive(timeout_s: float, side: str, server_port: int | None,
              sparse_probes_s: float | None = None) -> str:
    """Keepalive settings below the timeout. `sparse_probes_s`: probes were sent, but
    the last this long before the idle ended, too late to keep the middlebox's state:
    the setting to change is how often, not whether."""
    idle = keepalive_idle_for(timeout_s)
    intvl, count = min(KEEPALIVE_INTERVAL_S, max(1, idle // 2)), KEEPALIVE_PROBES
    sparse = [(f"Keepalive probes were sent, but the last one {sparse_probes_s:.1f} s before the "
               "idle ended: too late to keep the middlebox's state (its idle timeout is "
               "shorter). Send them more often:")] if sparse_probes_s else []
    lines = sparse + [
        f"Send TCP keepalives from the {side} with an idle time below {timeout_s:g} s "
        f"(e.g. {idle} s, interval {intvl} s, {count} probes):",
        f"Linux sysctls: net.ipv4.tcp_keepalive_time={idle} net.ipv4.tcp_keepalive_intvl={intvl} "
        f"net.ipv4.tcp_keepalive_probes={count} (only for sockets with SO_KEEPALIVE on).",
        f"Socket options: SO_KEEPALIVE=1, TCP_KEEPIDLE={idle}, TCP_KEEPINTVL={intvl}, "
        f"TCP_KEEPCNT={count} (Linux); TCP_KEEPALIVE={idle} (macOS); "
        f"SIO_KEEPALIVE_VALS (1, {idle * 1000}, {intvl * 1000}) (Windows).",
        "Python requests/urllib3: HTTPConnection.default_socket_options + "
        f"[(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1), (socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, {idle}), "
        f"(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, {intvl}), (socket.IPPROTO_TCP, socket.TCP_KEEPCNT, {count})].",
    ]
    server = catalog.server_remedies().get(server_port or -1)
    if server:
        lines.append(server["remedy"].format(idle=idle, intvl=intvl, count=count))
    return "\n".join(lines)


def fail_fast(give_up_s: float | None) -> str:
    wait = f"{give_up_s:.1f} s" if give_up_s else "up to 15 min"
    return (f"Fail fast instead of retransmitting for {wait}: set TCP_USER_TIMEOUT "
            "(e.g. 30000 ms) on the socket, or lower net.ipv4.tcp_retries2 (e.g. 8, ~100 s).")


def slow_app(side: str, wait_s: float) -> str:
    proxies = sorted(catalog.below_wait(wait_s), key=lambda m: m.timeout_s)
    text = (f"The {side} application took {wait_s:.1f} s; profile it, or make the wait "
            "asynchronous (job + polling / streaming progress).")
    if proxies:
        names = " / ".join(m.name for m in proxies if m.timeout_s == proxies[0].timeout_s)
        text += (f" Behind a proxy with a {proxies[0].timeout_s:g} s read timeout "
                 f"({names}) this wait would end in a 504.")
    return text


def zero_window(side: str) -> str:
    return (f"The {side} stopped reading its socket (zero window): find why the "
            f"{side}'s application is not draining its receive buffer (blocked consumer, "
            "backpressure, too small a buffer).")


def proxy_cut(timeout_s: float, names: list[str]) -> str:
    who = ", ".join(names) if names else "the proxy in front of the server"
    return (f"Raise the timeout of {who} above the stream's lifetime, or make the client "
            f"reconnect and resume before {timeout_s:g} s (SSE: Last-Event-ID; WebSocket "
            "if the proxy exempts it). Heartbeats do not help against a per-request timeout.")


def peer_unreachable() -> str:
    return ("The peer or the path died mid-conversation: check the peer host, routes and "
            "security groups at that time. " + fail_fast(None))
