"""`edgeseg run --view-http`: the picture feed, the HTTP routes, and `run` serving them (with the fake segmenter).

The browser test is in test_live_view_browser.py."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request

import cv2
import numpy as np
import pytest

from edgeseg.errors import ConfigError
from edgeseg.pipeline.live_feed import LiveFeed
from edgeseg.pipeline.live_http import LiveHttpServer, parse_address
from edgeseg.pipeline.sources import SyntheticSource
from edgeseg.pipeline.stream import run_stream
from edgeseg.pipeline.views import View

from .fakes import FakeSegmenter


def _picture(value: int) -> np.ndarray:
    image = np.zeros((48, 64, 3), np.uint8)
    image[:, :32] = (value, 40, 200)
    image[:, 32:] = (20, value, 90)
    return image


def test_feed_encodes_nothing_without_viewers_then_the_newest_frame_at_a_capped_rate():
    renders = []

    def render(frame, mask, fps):
        renders.append(frame)
        return frame

    feed = LiveFeed(1, render, max_fps=10)
    feed.start()
    try:
        for value in range(50):
            feed.publish(0, _picture(value), np.zeros((4, 4), np.uint8))
        time.sleep(0.3)
        assert feed.encoded == 0 and renders == []  # nobody watches: no render, no JPEG

        feed.watch(0)
        jpeg = feed.next_jpeg(0, 0, 5.0)
        assert jpeg is not None and jpeg.version == 50  # the newest frame, not a queue of old ones
        decoded = cv2.imdecode(np.frombuffer(jpeg.data, np.uint8), cv2.IMREAD_COLOR)
        assert np.abs(decoded.astype(int) - _picture(49).astype(int)).mean() < 3  # JPEG of what was published

        stop = time.monotonic() + 1.0
        value = 0
        while time.monotonic() < stop:  # publish at ~500 Hz for a second while watched
            feed.publish(0, _picture(value % 200), np.zeros((4, 4), np.uint8))
            value += 1
            time.sleep(0.002)
        assert value > 100
        assert feed.encoded <= 1 + 12  # the cap is 10 per second (+ the first picture, + timer slack)
        feed.unwatch(0)
    finally:
        feed.close()


def test_feed_uses_the_picture_the_output_thread_already_composed():
    feed = LiveFeed(2, lambda frame, mask, fps: pytest.fail("rendered although a picture was given"))
    feed.start()
    try:
        feed.watch(1)
        feed.publish(1, _picture(0), np.zeros((4, 4), np.uint8), picture=_picture(150))
        jpeg = feed.next_jpeg(1, 0, 5.0)
        decoded = cv2.imdecode(np.frombuffer(jpeg.data, np.uint8), cv2.IMREAD_COLOR)
        assert np.abs(decoded.astype(int) - _picture(150).astype(int)).mean() < 3
        assert feed.next_jpeg(0, 0, 0.2) is None  # source 0 published nothing
    finally:
        feed.close()


@pytest.mark.parametrize("text, expected", [("8080", ("127.0.0.1", 8080)), ("0", ("127.0.0.1", 0)),
                                            ("127.0.0.1:9", ("127.0.0.1", 9))])
def test_parse_address_defaults_to_loopback(text, expected):
    assert parse_address(text) == expected


@pytest.mark.parametrize("text", ["", "http", "80000", ":80", "127.0.0.1:", "-1"])
def test_parse_address_refuses_nonsense(text):
    with pytest.raises(ConfigError, match="--view-http"):
        parse_address(text)


def _get(url: str, timeout: float = 10.0) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read()


def _read_mjpeg_parts(url: str, count: int, timeout: float = 10.0) -> tuple[str, list[bytes]]:
    """The first `count` JPEGs of a multipart/x-mixed-replace stream, parsed by hand from the raw bytes."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        content_type = response.headers["Content-Type"]
        boundary = content_type.split("boundary=")[1].encode()
        parts: list[bytes] = []
        buffer = b""
        while len(parts) < count:
            chunk = response.read1(65536)
            assert chunk, "stream ended early"
            buffer += chunk
            while True:
                start = buffer.find(b"--" + boundary + b"\r\n")
                head_end = buffer.find(b"\r\n\r\n", start)
                if start < 0 or head_end < 0:
                    break
                headers = dict(line.split(b": ", 1) for line in buffer[start:head_end].split(b"\r\n")[1:])
                length = int(headers[b"Content-Length"])
                if len(buffer) < head_end + 4 + length:
                    break
                assert headers[b"Content-Type"] == b"image/jpeg"
                parts.append(buffer[head_end + 4 : head_end + 4 + length])
                buffer = buffer[head_end + 4 + length :]
    return content_type, parts


def _palette_fraction(image: np.ndarray, palette_bgr: np.ndarray, tolerance: int = 40) -> float:
    distance = np.abs(image[:, :, None, :].astype(int) - palette_bgr[None, None].astype(int)).max(axis=3)
    return float((distance.min(axis=2) <= tolerance).mean())


def test_run_serves_page_stream_snapshot_and_stats_while_a_stalled_client_blocks_nothing(tmp_path):
    segmenter = FakeSegmenter(input_size=(60, 80))
    server = LiveHttpServer("0")  # any free port on 127.0.0.1
    url = server.url
    assert url.startswith("http://127.0.0.1:")
    frames = 400
    result: dict = {}

    def run():
        result["stats"] = run_stream(segmenter, [SyntheticSource(frames, (120, 160), fps=100)],
                                     stats_path=tmp_path / "stats.json", live_view=server,
                                     view=View("mask"), queue_size=1)

    runner = threading.Thread(target=run)
    runner.start()
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fills after a picture or two
    stalled.connect(("127.0.0.1", server.port))
    try:
        # a client that asks for the stream and never reads: its socket buffers fill, only its thread waits
        stalled.sendall(b"GET /stream/0.mjpg HTTP/1.0\r\n\r\n")
        status, kind, page = _get(url)
        assert status == 200 and kind.startswith("text/html")
        text = page.decode()
        assert 'src="/stream/0.mjpg"' in text and "/stats.json" in text
        for name in segmenter.meta.classes:
            assert name in text  # the legend

        content_type, parts = _read_mjpeg_parts(url + "stream/0.mjpg", 3)
        assert content_type.startswith("multipart/x-mixed-replace")
        pictures = [cv2.imdecode(np.frombuffer(p, np.uint8), cv2.IMREAD_COLOR) for p in parts]
        assert all(p.shape == (120, 160, 3) for p in pictures)  # the frame's size
        # --view mask: the palette's colours (JPEG blurs only the edges between them)
        assert all(_palette_fraction(p, segmenter.palette_bgr) > 0.9 for p in pictures)

        status, kind, snapshot = _get(url + "snapshot/0.jpg")
        assert status == 200 and kind == "image/jpeg"
        assert cv2.imdecode(np.frombuffer(snapshot, np.uint8), cv2.IMREAD_COLOR).shape == (120, 160, 3)

        status, kind, body = _get(url + "stats.json")
        live = json.loads(body)
        assert status == 200 and kind == "application/json" and live["sources"][0]["read"] > 0

        assert _get(url + "stream/1.mjpg")[0] == 404 and _get(url + "snapshot/3.jpg")[0] == 404
        assert _get(url + "nothing")[0] == 404
        runner.join(60)
        assert not runner.is_alive(), "the run did not finish while a client stalled"
    finally:
        stalled.close()
        runner.join(60)
        server.close()
    stats = result["stats"]
    assert stats.processed + stats.dropped == frames  # every frame accounted for; none waited on a viewer
    assert set(live) == set(json.loads((tmp_path / "stats.json").read_text()))  # the keys of --stats
    with pytest.raises(OSError):  # closed with the run: nothing listens any more
        socket.create_connection(("127.0.0.1", server.port), timeout=2).close()


def test_port_in_use_is_one_error_line_before_the_model_loads(tmp_path, capsys):
    from edgeseg.cli import main

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        with pytest.raises(ConfigError, match=rf"--view-http 127.0.0.1:{port}: cannot listen"):
            LiveHttpServer(str(port))
        # the model does not exist: reaching it would name the model instead of the port
        assert main(["run", str(tmp_path / "missing.onnx"), "--source", "synthetic:1", "--view-http", str(port)]) == 2
    finally:
        taken.close()
    err = capsys.readouterr().err
    assert f"edgeseg run: error: --view-http 127.0.0.1:{port}: cannot listen" in err and "Traceback" not in err
