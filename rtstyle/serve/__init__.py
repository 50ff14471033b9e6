"""`rtstyle serve`: a web page that sends the browser's camera over WebRTC and gets it back stylized.

server.py: the aiohttp app (page, styles, thumbnails, the SDP offer, the token) and its life cycle;
viewer.py: one browser's stream (latest-frame slots, its own style controls and smoother);
engine.py: the one engine of the process (a cache of built stylizers and the thread they run on);
stamp.py: the frame counter the page paints under each frame, so the round trip can be timed;
rtp.py: aiortc's video jitter buffer, releasing a frame at its last packet.
aiortc and aiohttp (extra "serve") are imported by server.py, viewer.py and rtp.py only.
"""
