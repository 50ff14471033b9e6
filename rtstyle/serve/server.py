"""The `rtstyle serve` web server: the page, the styles and their thumbnails, and the WebRTC offer.

The shape is aiortc's examples/server: the page POSTs an SDP offer to /offer, the answer carries a
track that returns each received frame transformed, with its own timestamp. Here the transform is
the stylizer (viewer.py), one engine serves every viewer (engine.py), and a data channel carries
the controls one way and pongs and stream statistics the other.

Access (guard.py): it listens on 127.0.0.1 unless told otherwise, and answers only requests that
name it by a loopback name and come from its own page. With a token every request must carry it
(`?token=` once, then a cookie; or the X-Rtstyle-Token header), anything else gets 403, since
whoever reaches the port can use the machine's engine. Offers are JSON, checked field by field;
anything else gets a 4xx with a line that says why, never a 500. WebRTC media stays on loopback
when HTTP does (ice.py). docs/serve.md says what is protected and how.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from ..config import SMOOTH_STRENGTH, SMOOTHERS, EngineConfig, parse_faces
from ..errors import BackendError, InputError, RtstyleError

try:
    from aiohttp import web
    from aiortc import RTCPeerConnection, RTCSessionDescription
    from aiortc.sdp import SessionDescription
except ImportError as exc:  # the extra is optional; the CLI turns this into one line
    raise BackendError(f"rtstyle serve needs aiortc and aiohttp ({exc.name} is missing): "
                       "pip install 'rtstyle[serve]'") from None

from ..model.styles import MAX_STRENGTH
from ..pipeline.scale import AUTO, check_scale_setting
from .engine import DEFAULT_VIEWERS_CPU, DEFAULT_VIEWERS_GPU, SharedEngine, Thumbnails
from .guard import TOKEN_COOKIE, TOKEN_HEADER, Guard, check_token, http_logger, is_loopback  # noqa: F401 (CLI's)
from .ice import ice_configuration, loopback_candidates_only, loopback_only
from .viewer import (
    MESSAGE_FIELDS,
    BadMessage,
    StylizedTrack,
    Viewer,
    ViewerOptions,
    check_fields,
    json_object,
    read_message,
)

log = logging.getLogger(__name__)
STATS_EVERY_S = 1.0
MAX_SDP_CHARS = 100_000  # a browser's offer has 5-10 thousand
MAX_MEDIA_SECTIONS = 4  # the page offers two: its video and the controls' data channel
OFFER_FIELDS = {**MESSAGE_FIELDS["controls"], "sdp": str}  # "type" is checked first: "offer"
THUMB_NAME_DIGITS = 6
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
                    "X-Frame-Options": "DENY", "Content-Security-Policy": "frame-ancestors 'none'"}


@dataclass(frozen=True)
class ServeConfig:
    model: str = "quality"
    styles: tuple[str, ...] = ()  # the picker's styles; empty: every built-in style of the model
    style: str | None = None  # the first one shown (default: starry-swirl, else the first)
    strength: float = 1.0
    smooth: str = "none"
    smooth_strength: float = SMOOTH_STRENGTH
    scale: float | str = AUTO  # the size frames are stylized at until a viewer picks another (pipeline/scale.py)
    faces: float = 0.0  # faces kept until a viewer picks otherwise, 0..1 (pipeline/faces.py)
    engine: EngineConfig = field(default_factory=EngineConfig)
    host: str = "127.0.0.1"
    port: int = 8080
    token: str | None = None
    max_viewers: int | None = None  # None: DEFAULT_VIEWERS_CPU or _GPU, by where the engine runs
    cert_file: str | None = None  # HTTPS: browsers give a camera only to https pages and localhost
    key_file: str | None = None
    connect_timeout_s: float = 30.0  # a viewer who never connects gives the place back after this
    ice_any_interface: bool = False  # media on every interface even when HTTP is on loopback only (ice.py)

    def __post_init__(self) -> None:
        check_port(self.port)
        if self.token is not None:
            try:
                check_token(self.token)
            except ValueError as exc:
                raise InputError(str(exc)) from None
        if self.max_viewers is not None and self.max_viewers < 1:
            raise InputError(f"max viewers must be at least 1, got {self.max_viewers}")
        if bool(self.cert_file) != bool(self.key_file):
            raise InputError("HTTPS needs both --cert-file and --key-file")
        if self.smooth not in SMOOTHERS:
            raise InputError(f"unknown smoother {self.smooth!r}; use one of {', '.join(SMOOTHERS)}")
        check_scale_setting(self.scale)
        parse_faces(self.faces)

    @property
    def ice_loopback(self) -> bool:
        """Whether viewers' media is offered on loopback addresses only."""
        return is_loopback(self.host) and not self.ice_any_interface


def check_port(port: int) -> int:
    """A TCP port to listen on: 1 to 65535, or 0 for one the system picks (the printed URL has it)."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise InputError(f"the port must be a whole number from 0 to 65535 (0: any free one), got {port!r}")
    return port


class BadOffer(ValueError):
    """An offer the server cannot use; the page gets 400 and this message."""


def read_offer(body: str) -> dict:
    """The offer's fields, checked (its SDP by `offered_session`); BadOffer with why if not."""
    message = json_object(body, BadOffer)
    if message.get("type") != "offer":
        raise BadOffer(f"type must be 'offer', got {str(message.get('type'))[:40]!r}")
    try:
        check_fields(message, OFFER_FIELDS)
    except BadMessage as exc:
        raise BadOffer(str(exc)) from None
    if not message.get("sdp"):
        raise BadOffer("sdp must be the offer's SDP text")
    return message


def offered_session(sdp: str) -> RTCSessionDescription:
    """The offer's session description, if it parses and has what a viewer sends; BadOffer if not."""
    if len(sdp) > MAX_SDP_CHARS:
        raise BadOffer(f"the SDP has {len(sdp)} characters, more than {MAX_SDP_CHARS}")
    try:
        media = SessionDescription.parse(sdp).media
    except Exception as exc:  # aiortc's parser raises what it meets: ValueError, KeyError, IndexError...
        raise BadOffer(f"the SDP does not parse ({type(exc).__name__})") from None
    if len(media) > MAX_MEDIA_SECTIONS or not any(section.kind == "video" for section in media):
        raise BadOffer(f"the SDP must have a video track and {MAX_MEDIA_SECTIONS} media sections at most")
    return RTCSessionDescription(sdp=sdp, type="offer")


def _static_dir() -> Path:
    return Path(str(resources.files("rtstyle.serve") / "static"))


class ViewerSession:
    """A viewer's peer connection, stream and tasks; `close` is safe to call more than once."""

    def __init__(self, server: StyleServer, viewer: Viewer, pc: RTCPeerConnection):
        self.id = uuid.uuid4().hex[:8]
        self.server = server
        self.viewer = viewer
        self.pc = pc
        self.tasks: list[asyncio.Task] = []
        self.channel = None
        self._closed = False

    def start_stream(self, track) -> None:
        self.pc.addTrack(StylizedTrack(self.viewer.outbox))
        self.tasks += [asyncio.ensure_future(self.viewer.pump(track)), asyncio.ensure_future(self.viewer.work()),
                       asyncio.ensure_future(self._report())]

    async def _report(self) -> None:
        while True:
            await asyncio.sleep(STATS_EVERY_S)
            self._send(self.viewer.summary())

    def on_message(self, data) -> None:
        """A message from the page; a bad one is ignored and counted. Nothing may escape: this runs inside
        aiortc's transport, which an exception would stop for good."""
        try:
            message = read_message(data)
            if message["type"] == "ping":
                self._send({"type": "pong", "id": message.get("id")})
            else:
                self.viewer.update(message)
        except BadMessage as exc:
            self.viewer.stats.bad_messages += 1
            log.log(logging.INFO if self.viewer.stats.bad_messages == 1 else logging.DEBUG,
                    "viewer %s: ignored a data-channel message (%s)%s", self.id, exc,
                    "; more are counted in its stats and logged at debug level" * (self.viewer.stats.bad_messages == 1))
        except RtstyleError as exc:  # a value the page should not send (an unknown style): say which
            self.viewer.stats.bad_messages += 1
            self._send({"type": "error", "error": str(exc)})
        except Exception:
            self.viewer.stats.bad_messages += 1
            log.exception("viewer %s: a data-channel message failed", self.id)

    def _send(self, message: dict) -> None:
        if self.channel is not None and self.channel.readyState == "open":
            self.channel.send(json.dumps(message))

    async def watch_connection(self, timeout_s: float) -> None:
        await asyncio.sleep(timeout_s)
        if self.pc.connectionState != "connected":
            log.info("viewer %s did not connect within %g s", self.id, timeout_s)
            await self.close()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.server.sessions.pop(self.id, None)
        for task in self.tasks:
            if task is not asyncio.current_task():  # the connection watchdog closes from its own task
                task.cancel()
        self.viewer.inbox.close()
        self.viewer.outbox.close()
        await self.pc.close()
        log.info("viewer %s left (%d now)", self.id, len(self.server.sessions))


class StyleServer:
    """The app and its state: the engine, the thumbnails and the viewers now served."""

    def __init__(self, config: ServeConfig):
        self.config = config
        self.sessions: dict[str, ViewerSession] = {}
        self.engine = SharedEngine(config.model, config.engine)
        self.styles: list[dict] = []
        self.first_style = ""
        self.description = ""
        self.max_viewers = config.max_viewers or DEFAULT_VIEWERS_CPU
        self.thumbs: Thumbnails | None = None
        self.guard = Guard(config.token, loopback=is_loopback(config.host), https=bool(config.cert_file))
        self._runner: web.AppRunner | None = None

    def prepare(self) -> None:
        """Check the styles and build the first stylizer before listening (blocking; bad input raises)."""
        from ..live.styles import live_styles
        from ..model.styles import load_style
        from ..model.weights import read_base

        base_id = read_base(self.config.model).base_id
        chosen = live_styles(self.config.model, self.config.styles, first=self.config.style)
        names, first = list(chosen.names), chosen.first
        self.styles = [{"name": name, "label": Path(name).stem, "description": load_style(name, base_id).description}
                       for name in names]
        self.first_style = first
        stylizer = self.engine.build(first, self.config.strength)
        self.description = stylizer.description
        if self.config.max_viewers is None and self.engine.on_gpu(stylizer):
            self.max_viewers = DEFAULT_VIEWERS_GPU
        self.thumbs = Thumbnails(self.config.model, names, self.config.engine)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.guard.middleware])
        app.router.add_get("/", self._index)
        app.router.add_get("/api/config", self._api_config)
        app.router.add_get("/thumbs/{index:[0-9]+}.jpg", self._thumbnail)  # not \\d: that is any script's digits
        app.router.add_post("/offer", self._offer)
        app.router.add_static("/static", _static_dir())
        app.on_shutdown.append(self._on_shutdown)
        app.on_response_prepare.append(self._headers)
        return app

    @staticmethod
    async def _headers(request: web.Request, response: web.StreamResponse) -> None:
        response.headers.update(SECURITY_HEADERS)

    async def _index(self, request: web.Request) -> web.StreamResponse:
        response = web.FileResponse(_static_dir() / "index.html")
        response.headers["Cache-Control"] = "no-store"
        return response

    async def _api_config(self, request: web.Request) -> web.Response:
        config = self.config
        return web.json_response({
            "styles": self.styles, "style": self.first_style, "strength": config.strength,
            "max_strength": MAX_STRENGTH, "smoothers": list(SMOOTHERS), "smooth": config.smooth,
            "smooth_strength": config.smooth_strength, "scale": config.scale, "faces": config.faces,
            "engine": self.description, "viewers": len(self.sessions), "max_viewers": self.max_viewers,
            "ice": "loopback" if config.ice_loopback else "any"})

    async def _thumbnail(self, request: web.Request) -> web.Response:
        name = request.match_info["index"]
        if len(name) > THUMB_NAME_DIGITS:  # int() of 5,000 digits is a ValueError, and no style has that index
            raise web.HTTPBadRequest(text=f"a thumbnail is named by a number of {THUMB_NAME_DIGITS} digits at most\n")
        index = int(name)
        if not 0 <= index < len(self.styles):
            raise web.HTTPNotFound()
        jpeg = await asyncio.wrap_future(self.thumbs.get(self.styles[index]["name"]))
        return web.Response(body=jpeg, content_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    async def _offer(self, request: web.Request) -> web.Response:
        # JSON only: a cross-site page can POST text/plain or a form without asking (no CORS preflight),
        # and aiohttp's request.json() would read it all the same.
        if request.content_type != "application/json":
            return web.json_response({"error": "an offer is application/json"}, status=415)
        try:
            message = read_offer((await request.read()).decode("utf-8"))  # JSON is UTF-8, whatever charset= says
            defaults = ViewerOptions(self.first_style, self.config.strength, self.config.smooth,
                                     self.config.smooth_strength, scale=self.config.scale, faces=self.config.faces)
            options = ViewerOptions.parse(message, [s["name"] for s in self.styles], defaults)
            offer = offered_session(message["sdp"])
        except (ValueError, RtstyleError) as exc:  # UnicodeDecodeError is a ValueError
            log.debug("bad offer: %s", exc)
            return web.json_response({"error": f"bad offer: {exc}"}, status=400)
        if len(self.sessions) >= self.max_viewers:  # checked and taken with no await between: no race
            return web.json_response({"error": f"this rtstyle server is busy: it serves {self.max_viewers} "
                                               f"viewer{'s' * (self.max_viewers != 1)} at a time, the most its "
                                               "engine keeps at full speed. Try again when someone leaves."},
                                     status=503)
        viewer = Viewer(self.engine, [s["name"] for s in self.styles], options)
        session = ViewerSession(self, viewer, RTCPeerConnection(ice_configuration(self.config.ice_loopback)))
        self.sessions[session.id] = session
        try:
            await asyncio.get_running_loop().run_in_executor(None, viewer.start)
        except BaseException:
            await session.close()
            raise
        try:
            answer = await self._answer(session, offer)
        except Exception as exc:  # an SDP that parses but that aiortc cannot use: its exceptions vary
            await session.close()
            log.debug("bad offer: %s: %s", type(exc).__name__, exc)
            return web.json_response({"error": f"bad offer: the SDP cannot be used ({type(exc).__name__})"},
                                     status=400)
        except BaseException:
            await session.close()
            raise
        log.info("viewer %s joined (%d of %d)", session.id, len(self.sessions), self.max_viewers)
        return web.json_response({"sdp": answer.sdp, "type": answer.type, "id": session.id})

    async def _answer(self, session: ViewerSession, offer: RTCSessionDescription) -> RTCSessionDescription:
        pc = session.pc

        @pc.on("datachannel")
        def on_datachannel(channel) -> None:
            session.channel = channel
            channel.on("message", session.on_message)

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                await session.close()

        @pc.on("track")
        def on_track(track) -> None:
            if track.kind == "video":
                session.start_stream(track)
                track.on("ended", session.close)

        loopback = self.config.ice_loopback
        with loopback_only(loopback):
            await pc.setRemoteDescription(offer)
            await pc.setLocalDescription(await pc.createAnswer())
        session.tasks.append(asyncio.ensure_future(session.watch_connection(self.config.connect_timeout_s)))
        answer = pc.localDescription
        return RTCSessionDescription(loopback_candidates_only(answer.sdp), answer.type) if loopback else answer

    async def _on_shutdown(self, app: web.Application) -> None:
        await asyncio.gather(*(session.close() for session in list(self.sessions.values())))

    async def start(self) -> str:
        """Prepare, listen, and return the page's URL (with the token, if there is one)."""
        from . import ice, rtp

        rtp.install()  # frames from the browser go to the decoder at their last packet, not one frame later
        ice.install()
        await asyncio.get_running_loop().run_in_executor(None, self.prepare)
        context = None
        if self.config.cert_file:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            try:
                context.load_cert_chain(self.config.cert_file, self.config.key_file)
            except (OSError, ssl.SSLError) as exc:
                raise InputError(f"cannot load the certificate {self.config.cert_file}: {exc}") from None
        self._runner = web.AppRunner(self.app(), access_log=None, logger=http_logger())
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, self.config.host, self.config.port, ssl_context=context).start()
        except OSError as exc:
            await self._runner.cleanup()
            raise InputError(f"cannot listen on {self.config.host}:{self.config.port}: {exc.strerror}") from None
        return self.url()

    def url(self) -> str:
        host, port = self._runner.addresses[0][:2]
        if not is_loopback(self.config.host):
            import socket

            host = socket.gethostname()
        elif ":" in host:
            host = f"[{host}]"
        scheme = "https" if self.config.cert_file else "http"
        query = f"?token={self.config.token}" if self.config.token else ""
        return f"{scheme}://{host}:{port}/{query}"

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()  # runs _on_shutdown: every viewer's connection is closed
        self.engine.close()
        if self.thumbs is not None:
            self.thumbs.close()


def serve_forever(config: ServeConfig, ready: Callable[[str], None]) -> None:
    """Serve until Ctrl-C or SIGTERM; `ready(url)` once listening."""
    import signal

    async def main() -> None:
        server = StyleServer(config)
        stop = asyncio.Event()
        with contextlib.suppress(NotImplementedError):  # no signal handlers on Windows' event loop
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        try:
            ready(await server.start())
            await stop.wait()
        finally:
            await server.close()

    asyncio.run(main())


async def _end_other_tasks() -> None:
    """Cancel every task on this loop but the caller, and wait until they have ended."""
    tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


class ServerThread:
    """A server on its own event loop in a daemon thread (tests, benchmarks, notebooks).

        with ServerThread(ServeConfig(model="fast", port=0)) as url:
            ...
    """

    def __init__(self, config: ServeConfig):
        self.config = config
        self.server: StyleServer | None = None
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="rtstyle-serve", daemon=True)

    def __enter__(self) -> str:
        self._thread.start()
        self.server = StyleServer(self.config)
        try:
            return asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(timeout=120)
        except BaseException:
            self.__exit__()
            raise

    def __exit__(self, *exc_info) -> None:
        asyncio.run_coroutine_threadsafe(self.server.close(), self.loop).result(timeout=30)
        # A viewer still closing (its watchdog, aiortc's ICE monitor) ends here, not in a loop closed under it
        # ("Task was destroyed but it is pending"), as asyncio.run ends what is left of serve_forever.
        asyncio.run_coroutine_threadsafe(_end_other_tasks(), self.loop).result(timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()
