"""A real RTSP server for the tests (gst-rtsp-server), run under Debian's /usr/bin/python3 with python3-gi:

    /usr/bin/python3 rtsp_server.py PORT [--fps 30]   ->   rtsp://127.0.0.1:PORT/live, H.264 (x264enc)

Each frame is blue (the fake segmenter's class 1) with a 32-bit barcode along its top edge: the server's wall clock
in milliseconds (mod 2**32) when the frame was made, so a reader can measure capture-to-mask latency. Prints READY
once it listens. Not a test module: a helper the RTSP tests start and always stop.
"""

from __future__ import annotations

import argparse
import sys
import time

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

WIDTH, HEIGHT = 320, 240
BITS, BIT_W, BIT_H = 32, 10, 16  # the barcode: 32 cells of 10x16 pixels, white = 1, black = 0
BLUE = (255, 40, 0)  # BGR


def make_frame(stamp_ms: int) -> bytes:
    row = bytearray(bytes(BLUE) * WIDTH)
    frame = bytearray(row * HEIGHT)
    for bit in range(BITS):
        value = 255 if (stamp_ms >> bit) & 1 else 0
        cell = bytes([value, value, value]) * BIT_W
        for y in range(BIT_H):
            start = (y * WIDTH + bit * BIT_W) * 3
            frame[start : start + len(cell)] = cell
    return bytes(frame)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--fps", type=int, default=30)
    args = parser.parse_args()
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        f"( appsrc name=src is-live=true format=time do-timestamp=true "
        f"caps=video/x-raw,format=BGR,width={WIDTH},height={HEIGHT},framerate={args.fps}/1 ! videoconvert ! "
        "video/x-raw,format=I420 ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=15 ! "
        "rtph264pay name=pay0 pt=96 config-interval=1 )"
    )
    factory.set_shared(True)
    interval = 1.0 / args.fps

    def configure(_factory, media):
        source = media.get_element().get_by_name_recurse_up("src")
        due = [time.monotonic()]

        def need_data(appsrc, _length):
            wait = due[0] - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            due[0] = max(due[0] + interval, time.monotonic() - interval)
            data = make_frame(int(time.time() * 1000) % 2**32)
            appsrc.emit("push-buffer", Gst.Buffer.new_wrapped(data))

        source.connect("need-data", need_data)

    factory.connect("media-configure", configure)
    server.get_mount_points().add_factory("/live", factory)
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{args.port}", file=sys.stderr, flush=True)
        return 1
    print("READY", flush=True)
    GLib.MainLoop().run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
