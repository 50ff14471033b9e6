"""aiortc's video jitter buffer, handing each frame on at its last packet instead of one frame later.

aiortc (1.16) gives a video frame to the decoder only when a packet of the *next* frame arrives,
which adds a frame interval (33 ms at 30 fps) to every frame the browser sends. Senders mark the
last packet of each frame with the RTP marker bit (RFC 7741 for VP8, RFC 6184 for H.264), so a
frame whose packets are all there up to that one is complete and can go at once. Anything else
(a lost marker packet, audio) goes through aiortc's own logic unchanged.

`install()` swaps the class the receivers of this process are built with; `rtstyle serve` calls it
when it starts. It touches aiortc's private buffer fields, so it checks they are there first.
"""

from __future__ import annotations

import logging

from aiortc import jitterbuffer, rtcrtpreceiver

log = logging.getLogger(__name__)


class MarkerJitterBuffer(jitterbuffer.JitterBuffer):
    def _remove_frame(self, sequence_number: int) -> jitterbuffer.JitterFrame | None:
        frame = self._complete_at_marker()
        return frame if frame is not None else super()._remove_frame(sequence_number)

    def _complete_at_marker(self) -> jitterbuffer.JitterFrame | None:
        """The frame at the head of the buffer, if its packets are all there up to a marked one."""
        if not self._is_video or self._prefetch:
            return None
        packets = []
        for count in range(self.capacity):
            packet = self._packets[(self._origin + count) % self.capacity]
            if packet is None or (packets and packet.timestamp != packets[0].timestamp):
                return None
            packets.append(packet)
            if packet.marker:
                self.remove(count + 1)
                return jitterbuffer.JitterFrame(data=b"".join(p._data for p in packets), timestamp=packet.timestamp)
        return None


def install() -> bool:
    """Make this process's aiortc receivers release video frames at their marker bit."""
    probe = jitterbuffer.JitterBuffer(capacity=4, is_video=True)
    fields = ("_packets", "_origin", "_is_video", "_prefetch", "_remove_frame", "remove")
    if rtcrtpreceiver.JitterBuffer is MarkerJitterBuffer:
        return True
    if rtcrtpreceiver.JitterBuffer is not jitterbuffer.JitterBuffer or not all(hasattr(probe, f) for f in fields):
        log.warning("this aiortc's jitter buffer is not the one rtstyle knows; frames keep its extra frame of delay")
        return False
    rtcrtpreceiver.JitterBuffer = MarkerJitterBuffer
    return True
