"""Who may talk to `rtstyle serve`: the checks every request passes before a handler sees it.

The idea is jupyter_server's (`check_host`, `check_origin` in its base handler): a server on
loopback is still reachable from every web page the user opens, so it answers only requests that
name it by a loopback name (a DNS-rebinding page names it by the attacker's domain) and that come
from its own page (a cross-site page's requests carry its own Origin). In order:

1. Host: on loopback, the Host header must be `localhost` or a loopback address (any port, so an
   SSH tunnel to another local port still works). Listening on other interfaces the token is the
   guard instead, as with jupyter_server's allow_remote_access: a rebinding page has no token.
2. Origin: a request that carries one (browsers add it to every POST and cross-origin fetch) must
   come from this server's own origin: its scheme, and the host and port the request was sent to.
   Sec-Fetch-Site, where the browser sends it, must be same-origin or none (typed, bookmarked),
   except for a top-level page load from a link elsewhere: another site cannot embed our thumbnails
   or config either.
3. The token, when there is one: `?token=` (then a cookie, and a redirect to the same address
   without it, so it leaves the address bar and the history), the X-Rtstyle-Token header or the
   cookie; compared in constant time.

Refusals are 403 with one line of text, counted by reason in `Guard.refused`; the first of each
reason is logged at info level, the rest at debug.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from aiohttp import web

log = logging.getLogger(__name__)
TOKEN_HEADER = "X-Rtstyle-Token"
TOKEN_COOKIE = "rtstyle_token"
MIN_TOKEN_CHARS = 16  # the made-up one has 22 (128 bits); fewer is a password someone can guess
DEFAULT_PORTS = {"http": 80, "https": 443}


def is_loopback(host: str) -> bool:
    """Whether `host` (a name or an address, IPv6 with or without brackets) is this machine's loopback."""
    host = host.lower().strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host_and_port(netloc: str, default_port: int) -> tuple[str, int] | None:
    """(host, port) of a Host header or an origin's netloc; None when it does not parse."""
    try:
        parts = urlsplit(f"//{netloc}")
        if not parts.hostname or parts.username is not None or parts.password is not None:
            return None
        return parts.hostname, parts.port or default_port
    except ValueError:  # a port that is not a number, or out of range
        return None


def same_origin(origin: str, host_header: str, scheme: str = "http") -> bool:
    """Whether the Origin header names this server (`scheme`) at the address the request was sent to (Host)."""
    parts = urlsplit(origin)
    if parts.scheme != scheme or parts.path or parts.query:
        return False  # "null" (sandboxed frames, file: pages) included
    default = DEFAULT_PORTS[scheme]
    theirs, ours = _host_and_port(parts.netloc, default), _host_and_port(host_header, default)
    return theirs is not None and theirs == ours


def check_token(token: str) -> str:
    """A --token that is long enough and fits in an address, else ValueError."""
    if len(token) < MIN_TOKEN_CHARS:
        raise ValueError(f"the token must have at least {MIN_TOKEN_CHARS} characters, got {len(token)} (leave "
                         "--token out and one is made up)")
    if not all(c.isascii() and (c.isalnum() or c in "-_.~") for c in token):
        raise ValueError("the token may have letters, digits and - _ . ~ only (it goes in an address and a cookie)")
    return token


@dataclass
class Guard:
    """The checks, as aiohttp middleware (`Guard.middleware`)."""

    token: str | None
    loopback: bool  # listening on loopback only: the Host must say so
    https: bool = False
    refused: Counter = field(default_factory=Counter)

    def refuse(self, request: web.Request, reason: str, text: str) -> web.HTTPForbidden:
        self.refused[reason] += 1
        # The first of each reason at info, the rest at debug: a page can send thousands.
        log.log(logging.INFO if self.refused[reason] == 1 else logging.DEBUG,
                "refused %s %s (%s): Host %r, Origin %r, Sec-Fetch-Site %r%s", request.method, request.path[:100],
                reason, request.headers.get("Host", "")[:100], request.headers.get("Origin", "")[:100],
                request.headers.get("Sec-Fetch-Site"), "; more are logged at debug level" * (self.refused[reason] == 1))
        return web.HTTPForbidden(text=text + "\n")

    @web.middleware
    async def middleware(self, request: web.Request, handler):
        host = request.headers.get("Host", "")
        # An absolute request target (GET http://name/ ..., which proxies are sent) names a host of its own.
        absolute = not request.raw_path.startswith("/")
        if self.loopback and (absolute or not self._local_host(host)):
            raise self.refuse(request, "host", f"this rtstyle server answers to localhost only, not {host[:100]!r}")
        origins = request.headers.getall("Origin", [])
        if origins and (len(origins) > 1 or not same_origin(origins[0], host, "https" if self.https else "http")):
            raise self.refuse(request, "origin", "this rtstyle server takes requests from its own page only")
        if not self._fetch_allowed(request):
            raise self.refuse(request, "cross-site", "this rtstyle server takes requests from its own page only")
        if self.token:
            return await self._with_token(request, handler)
        return await handler(request)

    def _local_host(self, host: str) -> bool:
        parsed = _host_and_port(host, 0)
        return parsed is not None and is_loopback(parsed[0])

    @staticmethod
    def _fetch_allowed(request: web.Request) -> bool:
        """Sec-Fetch-Site (sent by browsers, not by scripts): our own page, or a page load the user asked for."""
        site = request.headers.get("Sec-Fetch-Site")
        if site in (None, "same-origin", "none"):
            return True
        return (request.method == "GET" and request.headers.get("Sec-Fetch-Mode") == "navigate"
                and request.headers.get("Sec-Fetch-Dest", "document") == "document")

    async def _with_token(self, request: web.Request, handler):
        token = self.token.encode()
        query = request.query.get("token")
        if query is not None and hmac.compare_digest(query.encode(), token):
            if request.method not in ("GET", "HEAD"):
                return await handler(request)
            # The cookie, then the same address without the token: out of the address bar and the history.
            rest = request.rel_url.with_query([(k, v) for k, v in request.query.items() if k != "token"] or None)
            response = web.HTTPSeeOther(location=str(rest))
            self.set_cookie(response)
            raise response
        given = [request.headers.get(TOKEN_HEADER), request.cookies.get(TOKEN_COOKIE)]
        if not any(value is not None and hmac.compare_digest(value.encode(), token) for value in given):
            self.refused["token"] += 1
            raise web.HTTPForbidden(text="this rtstyle server needs its token: open the URL it printed "
                                         "(the one with ?token=)\n")
        return await handler(request)

    def set_cookie(self, response: web.StreamResponse) -> None:
        # Lax, not Strict: a link to the tokened address opened from another site (a chat, a mail) is a
        # cross-site redirect chain, which Strict would send without the cookie. Lax cookies still go with
        # no cross-site request but a top-level page load, and those are the ones the checks above let in.
        response.set_cookie(TOKEN_COOKIE, self.token, httponly=True, samesite="Lax", secure=self.https, path="/")


class MalformedHttpFilter(logging.Filter):
    """aiohttp logs a request its parser refuses (no Host, two of them, a bad character in the address)
    with a traceback at error level, though it answers 400 and nothing failed: one line at debug instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        from aiohttp.http_exceptions import HttpProcessingError

        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            log.debug("malformed HTTP request: %s", str(exc.message).strip().replace("\n", " ")[:200])
            return False
        return True


def http_logger() -> logging.Logger:
    """The logger for aiohttp's request handling (`AppRunner(logger=...)`), with MalformedHttpFilter."""
    logger = logging.getLogger("rtstyle.serve.http")
    if not any(isinstance(f, MalformedHttpFilter) for f in logger.filters):
        logger.addFilter(MalformedHttpFilter())
    return logger
