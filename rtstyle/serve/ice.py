"""Which of this machine's addresses a viewer's WebRTC media may use.

aiortc's ICE agent (aioice) offers a host candidate on every address of every interface that
`ifaddr` lists, loopback excepted, and asks Google's STUN server for the public one. A server whose
HTTP side listens on loopback only would so still take media on the LAN. With `loopback_only()`
around the answer, the candidates are 127.0.0.1 and ::1 and nothing else, and no STUN server is
asked (`ice_configuration`). A browser on this machine reaches those; one on another machine needs
`--ice-any-interface`.

aioice has no setting for the addresses, so `install()` wraps its `get_host_addresses` once per
process; the wrapper changes nothing outside `loopback_only()` (a context variable, which the
tasks aiortc gathers in inherit). `loopback_candidates_only()` then checks the answer itself and
drops any other candidate line, should an aioice of another shape not call the wrapper.
"""

from __future__ import annotations

import contextlib
import contextvars
import ipaddress
import logging
from collections.abc import Iterator

from aioice import ice
from aiortc import RTCConfiguration

log = logging.getLogger(__name__)
LOOPBACK_ADDRESSES = ("127.0.0.1", "::1")
_addresses: contextvars.ContextVar[tuple[str, ...] | None] = contextvars.ContextVar("rtstyle_ice_addresses",
                                                                                    default=None)


def install() -> None:
    """Let `loopback_only()` choose the addresses aioice gathers on (idempotent)."""
    original = getattr(ice, "get_host_addresses", None)
    if original is None:
        log.warning("this aioice has no get_host_addresses: its UDP ports listen on every interface, and the "
                    "answers offer the loopback ones only")
        return
    if getattr(original, "rtstyle_wrapped", False):
        return

    def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        chosen = _addresses.get()
        if chosen is None:
            return original(use_ipv4, use_ipv6)
        return [a for a in chosen if (use_ipv4 if ipaddress.ip_address(a).version == 4 else use_ipv6)]

    get_host_addresses.rtstyle_wrapped = True
    ice.get_host_addresses = get_host_addresses


@contextlib.contextmanager
def loopback_only(active: bool = True) -> Iterator[None]:
    """ICE candidates gathered inside this block (in this task and those it starts) are loopback ones."""
    reset = _addresses.set(LOOPBACK_ADDRESSES if active else None)
    try:
        yield
    finally:
        _addresses.reset(reset)


def ice_configuration(loopback: bool) -> RTCConfiguration:
    """No STUN server on loopback (there is no NAT to cross, and asking one tells it our public address);
    aiortc's default (Google's) otherwise."""
    return RTCConfiguration(iceServers=[]) if loopback else RTCConfiguration()


def candidate_address(line: str) -> str | None:
    """The address of an `a=candidate:` SDP line (foundation component transport priority address port ...)."""
    fields = line.split()
    return fields[4] if line.startswith("a=candidate:") and len(fields) > 5 else None


def _loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:  # a name (mDNS .local and the like): not one of ours
        return False


def loopback_candidates_only(sdp: str) -> str:
    """`sdp` without candidate lines for addresses other than loopback ones."""
    lines = sdp.split("\r\n")
    kept = [line for line in lines if candidate_address(line) is None or _loopback(candidate_address(line))]
    if len(kept) != len(lines):
        log.warning("aioice offered %d candidates off loopback; they are left out of the answer",
                    len(lines) - len(kept))
    return "\r\n".join(kept)
