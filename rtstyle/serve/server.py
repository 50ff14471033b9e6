"""The `rtstyle serve` web server: the page, the styles and their thumbnails, and the WebRTC offer.

The shape is aiortc's examples/server: the page POSTs an SDP offer to /offer, the answer carries a
track that returns each received frame transformed, with its own timestamp. Here the transform is
the stylizer (viewer.py), one engine serves every viewer (engine.py), and a data channel carries
the controls one way and pongs and stream statistics the other.

Access: it listens on 127.0.0.1 unless told otherwise. With a token every request must carry it
(`?token=` once, then a cookie; or the X-Rtstyle-Token header), anything else gets 403, since
whoever reaches the port can use the machine's engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import logging
import ssl
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from ..config import SMOOTH_STRENGTH, SMOOTHERS, EngineConfig
from ..errors import BackendError, InputError, RtstyleError

try:
    from aiohttp import web
    from aiortc import RTCPeerConnection, RTCSessionDescription
except ImportError as exc:  # the extra is optional; the CLI turns this into one line
    raise BackendError(f"rtstyle serve needs aiortc and aiohttp ({exc.name} is missing): "
                       "pip install 'rtstyle[serve]'") from None

from ..model.styles import DEFAULT_STYLE, MAX_STRENGTH
from ..pipeline.faces import parse_faces
from ..pipeline.scale import AUTO, check_scale_setting
from .engine import DEFAULT_VIEWERS_CPU, DEFAULT_VIEWERS_GPU, SharedEngine, Thumbnails
from .viewer import StylizedTrack, Viewer, ViewerOptions

log = logging.getLogger(__name__)
TOKEN_HEADER = "X-Rtstyle-Token"
TOKEN_COOKIE = "rtstyle_token"
STATS_EVERY_S = 1.0


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

    def __post_init__(self) -> None:
        if self.max_viewers is not None and self.max_viewers < 1:
            raise InputError(f"max viewers must be at least 1, got {self.max_viewers}")
        if bool(self.cert_file) != bool(self.key_file):
            raise InputError("HTTPS needs both --cert-file and --key-file")
        if self.smooth not in SMOOTHERS:
            raise InputError(f"unknown smoother {self.smooth!r}; use one of {', '.join(SMOOTHERS)}")
        check_scale_setting(self.scale)
        parse_faces(self.faces)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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

    def on_message(self, text: str) -> None:
        try:
            message = json.loads(text)
            if message.get("type") == "ping":
                self._send({"type": "pong", "id": message.get("id")})
            elif message.get("type") == "controls":
                self.viewer.update(message)
        except (ValueError, AttributeError, RtstyleError) as exc:
            self._send({"type": "error", "error": str(exc)})

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
        self._runner: web.AppRunner | None = None

    def prepare(self) -> None:
        """Check the styles and build the first stylizer before listening (blocking; bad input raises)."""
        from ..model.styles import builtin_styles, load_style
        from ..model.weights import read_base

        base_id = read_base(self.config.model).base_id
        names = list(self.config.styles) or builtin_styles(base_id)
        first = self.config.style or (DEFAULT_STYLE if DEFAULT_STYLE in names or not names else names[0])
        if first not in names:
            names.insert(0, first)
        self.styles = [{"name": name, "label": Path(name).stem, "description": load_style(name, base_id).description}
                       for name in names]
        self.first_style = first
        stylizer = self.engine.build(first, self.config.strength)
        self.description = stylizer.description
        if self.config.max_viewers is None and self.engine.on_gpu(stylizer):
            self.max_viewers = DEFAULT_VIEWERS_GPU
        self.thumbs = Thumbnails(self.config.model, names, self.config.engine)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._check_token])
        app.router.add_get("/", self._index)
        app.router.add_get("/api/config", self._api_config)
        app.router.add_get("/thumbs/{index:\\d+}.jpg", self._thumbnail)
        app.router.add_post("/offer", self._offer)
        app.router.add_static("/static", _static_dir())
        app.on_shutdown.append(self._on_shutdown)
        return app

    @web.middleware
    async def _check_token(self, request: web.Request, handler):
        token = self.config.token
        if token:
            given = [request.query.get("token"), request.headers.get(TOKEN_HEADER), request.cookies.get(TOKEN_COOKIE)]
            if not any(value and hmac.compare_digest(value.encode(), token.encode()) for value in given):
                raise web.HTTPForbidden(text="this rtstyle server needs its token: open the URL it printed "
                                             "(the one with ?token=)\n")
        return await handler(request)

    async def _index(self, request: web.Request) -> web.StreamResponse:
        response = web.FileResponse(_static_dir() / "index.html")
        if self.config.token and request.query.get("token"):
            response.set_cookie(TOKEN_COOKIE, self.config.token, httponly=True, samesite="Strict",
                                secure=bool(self.config.cert_file))
        response.headers["Cache-Control"] = "no-store"
        return response

    async def _api_config(self, request: web.Request) -> web.Response:
        config = self.config
        return web.json_response({
            "styles": self.styles, "style": self.first_style, "strength": config.strength,
            "max_strength": MAX_STRENGTH, "smoothers": list(SMOOTHERS), "smooth": config.smooth,
            "smooth_strength": config.smooth_strength, "scale": config.scale, "faces": config.faces,
            "engine": self.description,
            "viewers": len(self.sessions), "max_viewers": self.max_viewers})

    async def _thumbnail(self, request: web.Request) -> web.Response:
        index = int(request.match_info["index"])
        if not 0 <= index < len(self.styles):
            raise web.HTTPNotFound()
        jpeg = await asyncio.wrap_future(self.thumbs.get(self.styles[index]["name"]))
        return web.Response(body=jpeg, content_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    async def _offer(self, request: web.Request) -> web.Response:
        try:
            message = await request.json()
            offer = RTCSessionDescription(sdp=message["sdp"], type=message["type"])
            defaults = ViewerOptions(self.first_style, self.config.strength, self.config.smooth,
                                     self.config.smooth_strength, scale=self.config.scale, faces=self.config.faces)
            options = ViewerOptions.parse(message, [s["name"] for s in self.styles], defaults)
        except (ValueError, KeyError, TypeError, RtstyleError) as exc:
            return web.json_response({"error": f"bad offer: {exc}"}, status=400)
        if len(self.sessions) >= self.max_viewers:  # checked and taken with no await between: no race
            return web.json_response({"error": f"this rtstyle server is busy: it serves {self.max_viewers} "
                                               f"viewer{'s' * (self.max_viewers != 1)} at a time, the most its "
                                               "engine keeps at full speed. Try again when someone leaves."},
                                     status=503)
        viewer = Viewer(self.engine, [s["name"] for s in self.styles], options)
        session = ViewerSession(self, viewer, RTCPeerConnection())
        self.sessions[session.id] = session
        try:
            await asyncio.get_running_loop().run_in_executor(None, viewer.start)
            answer = await self._answer(session, offer)
        except ValueError as exc:  # aiortc's word for an SDP it cannot use
            await session.close()
            return web.json_response({"error": f"bad offer: {exc}"}, status=400)
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

        await pc.setRemoteDescription(offer)
        await pc.setLocalDescription(await pc.createAnswer())
        session.tasks.append(asyncio.ensure_future(session.watch_connection(self.config.connect_timeout_s)))
        return pc.localDescription

    async def _on_shutdown(self, app: web.Application) -> None:
        await asyncio.gather(*(session.close() for session in list(self.sessions.values())))

    async def start(self) -> str:
        """Prepare, listen, and return the page's URL (with the token, if there is one)."""
        from .rtp import install

        install()  # frames from the browser go to the decoder at their last packet, not one frame later
        await asyncio.get_running_loop().run_in_executor(None, self.prepare)
        context = None
        if self.config.cert_file:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            try:
                context.load_cert_chain(self.config.cert_file, self.config.key_file)
            except (OSError, ssl.SSLError) as exc:
                raise InputError(f"cannot load the certificate {self.config.cert_file}: {exc}") from None
        self._runner = web.AppRunner(self.app(), access_log=None)
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
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()
