"""`rtstyle serve` against web pages, other viewers and malformed requests (issue 24), one test an item.

1. Host and Origin: a DNS-rebinding Host, another origin, a text/plain offer are refused on every route.
2. The token: `?token=` sets the cookie and redirects to the address without it; short tokens refused.
3. ICE: on loopback the answer's candidates are loopback ones only, unless --ice-any-interface.
4. Malformed offers and thumbnail names: 400, no traceback.
5. Data-channel messages: a bad one is ignored and counted, the stream goes on.
6. Fairness: a viewer changing frame size every frame does not starve another.
7. --port out of range: one line, exit 2.
And the cross-site case in the real headless Chromium: a page on another loopback port posts to the
server and is refused while the server's own page keeps getting frames.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import json
import logging
import threading
import time
from fractions import Fraction

import numpy as np
import pytest

pytest.importorskip("aiortc")
aiohttp = pytest.importorskip("aiohttp")

from aiortc import RTCPeerConnection, RTCSessionDescription  # noqa: E402
from aiortc.mediastreams import MediaStreamError  # noqa: E402
from av import VideoFrame  # noqa: E402
from test_serve import StampedScene, _chromium, _offer, _wait, write_y4m  # noqa: E402

from rtstyle.cli.main import main  # noqa: E402
from rtstyle.config import EngineConfig  # noqa: E402
from rtstyle.errors import InputError  # noqa: E402
from rtstyle.serve.engine import SharedEngine  # noqa: E402
from rtstyle.serve.guard import same_origin  # noqa: E402
from rtstyle.serve.ice import candidate_address  # noqa: E402
from rtstyle.serve.server import ServeConfig, ServerThread  # noqa: E402
from rtstyle.serve.viewer import BadMessage, Viewer, ViewerOptions, read_message  # noqa: E402

STYLE = "fauve-red"
ROUTES = ("", "api/config", "static/app.js", "thumbs/0.jpg")


@pytest.fixture(scope="module")
def server():
    thread = ServerThread(ServeConfig(model="fast", styles=(STYLE,), port=0, max_viewers=1, connect_timeout_s=10))
    with thread as url:
        yield url, thread


async def _request(method: str, url: str, **kwargs) -> tuple[int, bytes, dict]:
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as session, session.request(method, url, **kwargs) as response:
        return response.status, await response.read(), dict(response.headers)


def request(method: str, url: str, **kwargs) -> tuple[int, bytes, dict]:
    return asyncio.run(_request(method, url, **kwargs))


def raw_status(url: str, head: str) -> int:
    """The status of a request written by hand (what aiohttp's client would not send); {host} is the server's."""
    import socket

    host = url.split("/")[2]
    with socket.create_connection(tuple(host.rsplit(":", 1))) as connection:
        connection.sendall(head.format(host=host).replace("\n", "\r\n").encode() + b"\r\n")
        return int(connection.makefile("rb").readline().split()[1])


def _offer_body() -> dict:
    async def make():
        pc = RTCPeerConnection()
        pc.addTrack(StampedScene())
        pc.createDataChannel("controls")
        await pc.setLocalDescription(await pc.createOffer())
        sdp = pc.localDescription.sdp
        await pc.close()
        return sdp

    return {"sdp": asyncio.run(make()), "type": "offer"}


# ---- 1. Host and Origin


def test_foreign_hosts_and_origins_are_refused_on_every_route(server):
    url, thread = server
    port = url.split(":")[2].strip("/")
    before = sum(thread.server.guard.refused.values())
    for path in ROUTES:
        for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}", "localhost:9999"):  # 9999: a tunnel
            assert request("GET", url + path, headers={"Host": host})[0] == 200, (path, host)
        for host in (f"attacker.example:{port}", "attacker.example", f"127.0.0.1.nip.io:{port}", ""):
            status, body, _ = request("GET", url + path, headers={"Host": host})
            assert status == 403 and b"localhost only" in body, (path, host, status)
        for origin in (f"http://127.0.0.1:{int(port) + 1}", f"http://localhost:{port}", f"https://127.0.0.1:{port}",
                       "null", f"http://attacker.example:{port}"):
            assert request("GET", url + path, headers={"Origin": origin})[0] == 403, (path, origin)
        # What a browser says of a request a page on another site makes (an <img>, a no-cors fetch)
        assert request("GET", url + path, headers={"Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "no-cors"})[0] \
            == 403, path
    assert request("GET", url, headers={"Origin": f"http://127.0.0.1:{port}"})[0] == 200
    two_origins = [("Origin", f"http://127.0.0.1:{port}"), ("Origin", "http://attacker.example")]
    assert request("GET", url + "api/config", headers=two_origins)[0] == 403
    # An absolute target names a host of its own; no Host at all is no loopback name.
    assert raw_status(url, "GET http://attacker.example/api/config HTTP/1.1\nHost: {host}\nConnection: close\n") \
        == 403
    assert raw_status(url, "GET /api/config HTTP/1.0\n") == 403
    # A link to the page from elsewhere is a top-level page load, and is let in.
    assert request("GET", url, headers={"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate",
                                        "Sec-Fetch-Dest": "document"})[0] == 200
    # The offer: JSON from its own page only. A cross-site "simple" POST (text/plain, no preflight) never
    # reaches the handler, and no place is taken.
    body = json.dumps(_offer_body())
    assert request("POST", url + "offer", data=body, headers={"Content-Type": "text/plain"})[0] == 415
    assert request("POST", url + "offer", data=body, headers={
        "Content-Type": "text/plain", "Origin": f"http://127.0.0.1:{int(port) + 1}"})[0] == 403
    assert request("POST", url + "offer", data=body, headers={
        "Content-Type": "application/json", "Host": f"attacker.example:{port}"})[0] == 403
    assert request("OPTIONS", url + "offer", headers={  # a CORS preflight: refused, so no JSON POST follows
        "Origin": f"http://127.0.0.1:{int(port) + 1}", "Access-Control-Request-Method": "POST"})[0] == 403
    assert not thread.server.sessions
    refused = thread.server.guard.refused
    assert sum(refused.values()) - before >= 4 * 10 + 3 and refused["host"] and refused["origin"]
    assert refused["cross-site"]
    _, _, headers = request("GET", url)
    assert headers["X-Frame-Options"] == "DENY" and headers["Referrer-Policy"] == "no-referrer"


def test_origin_matching():
    assert same_origin("http://127.0.0.1:8080", "127.0.0.1:8080")
    assert same_origin("http://LOCALHOST:8080", "localhost:8080")
    assert same_origin("http://[::1]:8080", "[::1]:8080")
    assert same_origin("http://localhost", "localhost:80")
    assert same_origin("https://example.org", "example.org", "https")
    assert not same_origin("https://127.0.0.1:8080", "127.0.0.1:8080")  # an http server's origin is http
    for origin, host in (("http://127.0.0.1:8081", "127.0.0.1:8080"), ("http://localhost:8080", "127.0.0.1:8080"),
                         ("null", "127.0.0.1:8080"), ("http://127.0.0.1:8080", ""),
                         ("file://", "127.0.0.1:8080"), ("http://a@127.0.0.1:8080", "127.0.0.1:8080"),
                         ("http://127.0.0.1:8080", "127.0.0.1:99999")):
        assert not same_origin(origin, host), (origin, host)


# ---- 2. The token


def test_token_in_the_address_is_swapped_for_a_cookie_and_short_tokens_are_refused(capsys):
    token = "a-token-of-twenty-chars"
    with ServerThread(ServeConfig(model="fast", styles=(STYLE,), port=0, token=token)) as url:
        root = url.split("?")[0]
        for path, query, location in (("", "", "/"), ("api/config", "&x=1", "/api/config?x=1")):
            status, _, headers = request("GET", f"{url.replace('/?', f'/{path}?')}{query}", allow_redirects=False)
            assert status == 303 and headers["Location"] == location, (path, status, headers)
            cookie = headers["Set-Cookie"]
            assert f"rtstyle_token={token}" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
        status, body, _ = request("GET", url)  # followed, with the cookie: the page, at the address without token
        assert status == 200 and b"<html" in body.lower()
        assert request("GET", root)[0] == 403
        assert request("GET", root + "?token=" + token[:-1], allow_redirects=False)[0] == 403
    for short in ("x", "fifteen-chars-x"):
        with pytest.raises(InputError, match="at least 16 characters"):
            ServeConfig(token=short)
    with pytest.raises(InputError, match="letters, digits"):
        ServeConfig(token="sixteen chars & more")
    assert main(["serve", "--model", "fast", "--port", "0", "--token", "x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rtstyle: error: the token must have at least 16 characters") and err.count("\n") == 1


# ---- 3. ICE candidates


def _answer_addresses(url: str) -> list[str]:
    status, body, _ = request("POST", url + "offer", json=_offer_body())
    assert status == 200, body
    answer = json.loads(body)
    return [candidate_address(line) for line in answer["sdp"].splitlines() if candidate_address(line)]


def test_answer_has_loopback_candidates_only_unless_told_otherwise():
    import ifaddr

    for any_interface in (False, True):
        thread = ServerThread(ServeConfig(model="fast", styles=(STYLE,), port=0, connect_timeout_s=0.5,
                                          ice_any_interface=any_interface))
        with thread as url:
            addresses = _answer_addresses(url)
            assert request("GET", url + "api/config")[1].count(b'"ice": "loopback"') == (not any_interface)
            deadline = time.monotonic() + 10
            while thread.server.sessions and time.monotonic() < deadline:  # the unanswered viewer leaves
                time.sleep(0.1)
        if not any_interface:
            assert addresses and set(addresses) <= {"127.0.0.1", "::1"}, addresses
        else:
            others = {ip.ip if isinstance(ip.ip, str) else ip.ip[0] for adapter in ifaddr.get_adapters()
                      for ip in adapter.ips} - {"127.0.0.1", "::1"}
            if not others:
                pytest.skip("this machine has no interface but loopback")
            assert set(addresses) & others, (addresses, others)


# ---- 4. Malformed offers


def test_malformed_offers_get_400_without_a_traceback(server, caplog):
    url, thread = server
    good = _offer_body()
    bodies = [
        {**good, "sdp": 5}, {**good, "sdp": None}, {**good, "sdp": ""}, {**good, "type": "pranswer"},
        {"type": "offer"}, {**good, "strength": "strong"}, {**good, "stamp": "yes"}, {**good, "style": ["x"]},
        {**good, "unknown": 1}, {**good, "sdp": "v=0\r\n"}, {**good, "sdp": "garbage"},
        {**good, "sdp": good["sdp"].replace("m=video", "m=audio")}, [good], "offer", 5, None,
        {**good, "strength": 10**400}, {**good, "scale": -(10**400)}, {**good, "faces": 10**30},
        {**good, "smooth_strength": 1e308},
    ]
    caplog.set_level(logging.DEBUG)
    for body in bodies:
        status, text, _ = request("POST", url + "offer", data=json.dumps(body),
                                  headers={"Content-Type": "application/json"})
        assert status == 400 and b"bad offer" in text, (body if not isinstance(body, dict) else body.keys(), text)
    deep = "[" * 100_000 + "]" * 100_000
    for raw in (deep, '{"sdp": ' + deep + "}", "{", b"\xff\xfe"):
        status, text, _ = request("POST", url + "offer", data=raw, headers={"Content-Type": "application/json"})
        assert status == 400, (raw[:10], status, text)
    assert request("POST", url + "offer", data="x" * (1 << 21), headers={"Content-Type": "application/json"})[0] \
        == 413
    assert request("POST", url + "offer", data=json.dumps({"type": "offer"}), headers={  # read as UTF-8, as JSON is
        "Content-Type": "application/json; charset=no-such-charset"})[0] == 400
    # What aiohttp's own parser refuses: two Hosts, a byte that is not ASCII in the address.
    assert raw_status(url, "GET / HTTP/1.1\nHost: {host}\nHost: {host}\nConnection: close\n") == 400
    assert raw_status(url, "GET /thumbs/\u0661.jpg HTTP/1.1\nHost: {host}\nConnection: close\n") == 400
    assert request("GET", url + "thumbs/%D9%A0.jpg")[0] == 404  # an Arabic-Indic 0 is no thumbnail number
    assert request("GET", url + "thumbs/" + "9" * 5000 + ".jpg")[0] == 400
    assert request("GET", url + "thumbs/99.jpg")[0] == 404
    assert not thread.server.sessions
    noisy = [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    assert not noisy, [r.getMessage() for r in noisy]


# ---- 5. Data-channel messages


def test_read_message():
    assert read_message('{"type": "ping", "id": 3}') == {"type": "ping", "id": 3}
    assert read_message('{"type": "controls", "style": "a", "strength": 1, "scale": "auto"}')["strength"] == 1
    for bad in ("[" * 2000 + "]" * 2000, '"x"', "{", '{"type": "controls", "strength": true}',
                '{"type": "controls", "evil": 1}', '{"type": "shutdown"}', '{"type": ["ping"]}',
                '{"type": "controls", "strength": ' + "9" * 400 + "}", '{"type": "ping", "id": ' + "9" * 30 + "}",
                '{"type": "ping", "id": [1]}', b'{"type": "ping"}', "x" * 10_000, None):
        with pytest.raises(BadMessage):
            read_message(bad)


async def _viewer_with_bad_messages(root: str, bad: list) -> tuple[int, int, dict, bool]:
    pc = RTCPeerConnection()
    pc.addTrack(StampedScene())
    channel = pc.createDataChannel("controls")
    frames, stats, pongs = [0], [], []
    opened = asyncio.Event()
    channel.on("open", opened.set)

    @channel.on("message")
    def on_message(text):
        message = json.loads(text)
        if message["type"] == "stats":
            stats.append(message)
        elif message == {"type": "pong", "id": 7}:
            pongs.append(message)

    @pc.on("track")
    def on_track(track):
        async def read():
            with contextlib.suppress(MediaStreamError):  # the track ends when the connection closes
                while True:
                    await track.recv()
                    frames[0] += 1

        asyncio.ensure_future(read())

    status, answer = await _offer(root, pc, style=STYLE)
    assert status == 200, answer
    await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], answer["type"]))
    await asyncio.wait_for(opened.wait(), 20)
    deadline = time.monotonic() + 30
    while frames[0] < 5 and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    for message in bad:
        channel.send(message)
    channel.send(json.dumps({"type": "ping", "id": 7}))
    before = frames[0]
    deadline = time.monotonic() + 30
    while (frames[0] < before + 10 or not stats or stats[-1]["bad_messages"] < len(bad)) \
            and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    state = pc.connectionState
    await pc.close()
    return before, frames[0], stats[-1] if stats else {}, bool(pongs) and state == "connected"


def test_bad_data_channel_messages_are_ignored_and_counted(server):
    url, thread = server
    # Nested past the JSON parser's stack, past the size limit, wrong types, unknown keys and types, binary.
    bad = ["[" * 2000 + "]" * 2000, "[" * 20_000, '{"type": "controls", "strength": "max"}',
           '{"type": "controls", "style": {"a": 1}}', '{"type": "controls", "nope": 1}', '{"type": 5}', "null",
           b"\x00\x01binary", '{"type": "controls", "style": "no-such-style"}']
    before, after, stats, ponged = asyncio.run(_viewer_with_bad_messages(url, bad))
    assert after >= before + 10, (before, after)  # the stream went on
    assert stats["bad_messages"] == len(bad), stats
    assert stats["error"] is None and ponged  # a good message still answered
    deadline = time.monotonic() + 10
    while thread.server.sessions and time.monotonic() < deadline:
        time.sleep(0.1)


# ---- 6. Fairness


async def _feed(viewer: Viewer, size_of, seconds: float, fps: int = 30) -> None:
    """Frames into the viewer's inbox at `fps`, as its pump would put them, sized by frame number."""
    started, index = time.monotonic(), 0
    while time.monotonic() - started < seconds:
        width, height = size_of(index)
        frame = VideoFrame.from_ndarray(np.full((height, width, 3), index * 7 % 256, np.uint8), format="rgb24")
        frame.pts, frame.time_base = index, Fraction(1, fps)
        viewer.inbox.put(frame)
        viewer.stats.received += 1
        index += 1
        await asyncio.sleep(max(0.0, started + index / fps - time.monotonic()))
    viewer.inbox.close()


async def _share(engine: SharedEngine, with_bad: bool, seconds: float) -> tuple[Viewer, Viewer | None]:
    good = Viewer(engine, [STYLE], ViewerOptions(STYLE, scale=0.5))  # not auto: every frame costs the same
    good.start()
    jobs = [_feed(good, lambda index: (320, 240), seconds), good.work()]
    bad = None
    if with_bad:  # a new size every frame, and --scale auto, which fits a scale to each new size
        bad = Viewer(engine, [STYLE], ViewerOptions(STYLE, scale="auto"))
        bad.start()
        jobs += [_feed(bad, lambda index: (320 + 16 * (index % 20), 240 + 16 * (index % 7)), seconds), bad.work()]
    await asyncio.gather(*jobs)
    return good, bad


def test_a_viewer_changing_size_every_frame_does_not_starve_another():
    engine = SharedEngine("fast", EngineConfig(device="cpu"))
    try:
        seconds = 8.0
        alone, _ = asyncio.run(_share(engine, False, seconds))
        shared, bad = asyncio.run(_share(engine, True, seconds))
    finally:
        engine.close()
    print(f"\nwell-behaved viewer: {alone.stats.stylized} frames in {seconds:g} s alone, {shared.stats.stylized} "
          f"beside one that changes size every frame ({bad.stats.stylized} frames, {bad.stats.size_changes} "
          f"changes let through, {bad.stats.size_dropped} frames dropped)")
    # Before the turns, the hold and the fit by time per pixel: 198 alone, 12 beside it (this setting, these 2 cores).
    # Two viewers sharing an engine by time are each owed half of it at least, so the well-behaved one keeps half
    # of what it had alone at least.
    assert shared.stats.stylized >= 0.5 * alone.stats.stylized
    assert bad.stats.stylized >= 1  # throttled, not cut off
    assert bad.stats.size_changes <= 3  # let through 1, 2 and 4 s apart (the hold doubles): at 1, 3, 7 s
    assert bad.stats.size_dropped > 100
    assert shared.stats.size_changes == alone.stats.size_changes == 0


def test_a_huge_frame_is_stylized_at_a_capped_size():
    """A frame's turn on the engine is not interrupted, so no viewer's frame may take it for long."""
    from rtstyle.serve.viewer import MAX_STYLIZED_PIXELS

    viewer = Viewer(SharedEngine("fast", EngineConfig(device="cpu")), [STYLE], ViewerOptions(STYLE, scale=1.0))
    for height, width in ((480, 640), (1088, 1920)):
        assert viewer._scale_for(np.zeros((height, width, 3), np.uint8)) == 1.0
    scale = viewer._scale_for(np.zeros((4320, 7680, 3), np.uint8))
    assert 0.2 <= scale and 4320 * 7680 * scale**2 <= MAX_STYLIZED_PIXELS
    viewer.engine.close()


# ---- 7. The port


@pytest.mark.parametrize("port", ["70000", "65536", "-1", "eighty"])
def test_port_out_of_range_is_one_line(port, capsys):
    assert main(["serve", "--model", "fast", "--port", port]) == 2
    err = capsys.readouterr().err
    assert "argument --port" in err and err.count("\n") == 1, err
    with pytest.raises(InputError, match="0 to 65535"):
        ServeConfig(port=70000)


# ---- the cross-site case, in Chromium


class _OtherSite(http.server.BaseHTTPRequestHandler):
    """A page on another loopback port: it tries the server from its own origin."""

    page = b""

    def do_GET(self):  # noqa: N802 (http.server's name)
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(self.page)

    def log_message(self, *args):
        pass


ATTACK = """<!doctype html><title>another site</title><script>
window.results = null;
(async () => {
  const target = 'TARGET', offer = JSON.stringify({sdp: 'v=0', type: 'offer'});
  const tries = {
    text_plain: () => fetch(target + 'offer', {method: 'POST', mode: 'no-cors', body: offer,
                                               headers: {'Content-Type': 'text/plain'}}),
    json_cors: () => fetch(target + 'offer', {method: 'POST', body: offer,
                                              headers: {'Content-Type': 'application/json'}}),
    config: () => fetch(target + 'api/config'),
    config_no_cors: () => fetch(target + 'api/config', {mode: 'no-cors'}),
  };
  const results = {};
  for (const [name, attempt] of Object.entries(tries)) {
    try { const response = await attempt(); results[name] = {type: response.type, status: response.status}; }
    catch (error) { results[name] = {error: String(error)}; }
  }
  window.results = results;
})();
</script>"""


def test_a_page_on_another_origin_is_refused_while_the_own_page_streams(server, tmp_path):
    url, thread = server
    port = url.split(":")[2].strip("/")
    site = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _OtherSite)
    _OtherSite.page = ATTACK.replace("TARGET", url).encode()
    threading.Thread(target=site.serve_forever, daemon=True).start()
    # attacker.example resolves to this machine, as after a DNS rebinding
    driver = _chromium(write_y4m(tmp_path / "scene.y4m"), ["--host-resolver-rules=MAP attacker.example 127.0.0.1"])
    try:
        driver.get(url)
        _wait(driver, "return document.querySelectorAll('.style img').length === 1", 15)
        driver.find_element("id", "start").click()
        _wait(driver, "return window.rtstyle.stats.state === 'connected' && window.rtstyle.stats.shown > 5", 40)
        own = driver.current_window_handle
        refused = dict(thread.server.guard.refused)

        driver.switch_to.new_window("tab")
        driver.get(f"http://127.0.0.1:{site.server_address[1]}/")
        results = _wait(driver, "return window.results", 20)
        driver.get(f"http://attacker.example:{port}/api/config")
        rebound = driver.find_element("tag name", "body").text
        driver.close()
        driver.switch_to.window(own)

        now = thread.server.guard.refused
        print(f"\nfrom the other origin: {results}; refused by the server: {dict(now)}")
        # Reaching the handler, the text/plain offer would have got 415 and the 'v=0' one 400; it is the
        # guard's 403 (counted) that answered, before any handler. The JSON one never left the browser:
        # its preflight was refused. Nothing could be read.
        assert now["origin"] >= refused.get("origin", 0) + 3, (refused, now)
        assert results["text_plain"]["type"] == "opaque"
        assert "error" in results["json_cors"] and "error" in results["config"], results
        assert results["config_no_cors"]["type"] == "opaque"
        assert "localhost only" in rebound and "styles" not in rebound, rebound
        assert now["host"] > refused.get("host", 0)
        assert len(thread.server.sessions) == 1  # the own page's viewer, and no other
        shown = driver.execute_script("return window.rtstyle.stats.shown")
        _wait(driver, f"return window.rtstyle.stats.shown > {shown + 10}", 20)  # frames still coming
        assert driver.execute_script("return window.rtstyle.stats.state") == "connected"
        driver.find_element("id", "stop").click()
    finally:
        driver.quit()
        site.shutdown()


def test_in_chromium_the_token_leaves_the_address_bar():
    token = "a-token-of-twenty-chars"
    with ServerThread(ServeConfig(model="fast", styles=(STYLE,), port=0, token=token)) as url:
        driver = _chromium()
        try:
            driver.get(url)
            _wait(driver, "return document.querySelectorAll('.style img').length === 1", 15)  # config and thumbs
            assert driver.current_url == url.split("?")[0], driver.current_url
            assert token not in driver.execute_script("return location.href + document.referrer")
            driver.back()  # the redirect replaced the tokened address: behind the page is where the tab began
            assert token not in driver.current_url and not driver.current_url.startswith("http"), driver.current_url
        finally:
            driver.quit()
