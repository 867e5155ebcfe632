"""`edgeseg run --view-http [HOST:]PORT`: watch a headless device's segmentation from a browser.

    GET /                 a page with each source's live picture, the class legend and live figures
    GET /stream/N.mjpg    source N's picture as MJPEG (multipart/x-mixed-replace), N from 0
    GET /snapshot/N.jpg   source N's newest picture
    GET /stats.json       the live stats, with the keys of --stats

The standard library's ThreadingHTTPServer serves it: four read-only routes and a handful of viewers need no
framework, and a device then needs no extra package. Each client gets its own thread, blocked on its own socket
(with a timeout, so a stalled client is dropped), while the pictures come from edgeseg.pipeline.live_feed.
It listens on 127.0.0.1 unless a HOST is given: reach it from a laptop with `ssh -L PORT:127.0.0.1:PORT device`.
"""

from __future__ import annotations

import html
import json
import logging
import re
import socket
import threading
from collections.abc import Callable, Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

from edgeseg.errors import ConfigError
from edgeseg.pipeline.live_feed import LiveFeed

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
_BOUNDARY = "edgeseg-frame"
_CLIENT_TIMEOUT_S = 10.0  # a client that takes no data for this long is disconnected (its thread ends)
_SNAPSHOT_WAIT_S = 5.0
_STREAM_ROUTE = re.compile(r"^/stream/(\d+)\.mjpg$")
_SNAPSHOT_ROUTE = re.compile(r"^/snapshot/(\d+)\.jpg$")


def parse_address(text: str) -> tuple[str, int]:
    """'8080' -> (127.0.0.1, 8080); 'HOST:8080' -> (HOST, 8080); '[v6]:8080' for IPv6. Port 0 picks a free one."""
    host, sep, port_text = text.strip().rpartition(":")
    host = host.strip("[]") if sep else LOOPBACK
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535 or (sep and not host):
        raise ConfigError(f"--view-http {text!r}: expected PORT or HOST:PORT with PORT in 0-65535 (0: any free port)")
    return host, int(port_text)


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a client still connected at exit must not keep the process alive
    block_on_close = False

    def __init__(self, address: tuple[str, int], view: "LiveHttpServer") -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.live = view
        super().__init__(address, _Handler)


class LiveHttpServer:
    """Binds at construction (so a port in use fails before the model loads); serves from start() to close()."""

    def __init__(self, address: str | tuple[str, int]) -> None:
        host, port = parse_address(address) if isinstance(address, str) else address
        try:
            self._server = _Server((host, port), self)
        except OSError as exc:
            raise ConfigError(f"--view-http {host}:{port}: cannot listen there ({exc.strerror or exc}); choose "
                              "another port, or a host address this machine has") from exc
        self.host, self.port = host, int(self._server.server_address[1])
        self.feed: LiveFeed | None = None
        self._stats: Callable[[], dict[str, Any]] = dict
        self._page = b""
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def start(self, feed: LiveFeed, stats: Callable[[], dict[str, Any]], sources: Sequence[str],
              classes: Sequence[str], palette_bgr: np.ndarray | None, view: str) -> None:
        self.feed, self._stats = feed, stats
        self._page = render_page(sources, classes, palette_bgr, view).encode()
        feed.start()
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="edgeseg-live-http", daemon=True)
        self._thread.start()
        log.warning("live view: %s (from another machine: ssh -L %d:%s:%d DEVICE, then open http://%s:%d/)",
                    self.url, self.port, LOOPBACK, self.port, LOOPBACK, self.port)

    def close(self) -> None:
        """Stop serving, end every stream and free the port. Safe to call twice."""
        if self.feed is not None:
            self.feed.close()  # wakes the stream threads, which then return
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(5.0)
            self._thread = None
        self._server.server_close()

    # used by the handler
    def stats(self) -> dict[str, Any]:
        return self._stats()

    @property
    def page(self) -> bytes:
        return self._page


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = _CLIENT_TIMEOUT_S  # socket timeout: a stalled client's write fails instead of blocking forever
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        log.debug("live view %s: " + format, self.client_address[0], *args)

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        live = self.server.live
        path = self.path.split("?", 1)[0]
        if path in ("/", "/index.html"):
            self._send(HTTPStatus.OK, "text/html; charset=utf-8", live.page)
        elif path == "/stats.json":
            self._send(HTTPStatus.OK, "application/json", json.dumps(live.stats()).encode())
        elif match := _STREAM_ROUTE.match(path):
            if self._source(int(match.group(1))) is not None:
                self._stream(int(match.group(1)))
        elif match := _SNAPSHOT_ROUTE.match(path):
            if self._source(int(match.group(1))) is not None:
                self._snapshot(int(match.group(1)))
        else:
            self._send(HTTPStatus.NOT_FOUND, "text/plain", b"not found: try / /stream/0.mjpg /snapshot/0.jpg "
                       b"/stats.json\n")

    def _source(self, index: int) -> int | None:
        feed = self.server.live.feed
        if feed is None or index >= feed.sources:
            count = feed.sources if feed is not None else 0
            self._send(HTTPStatus.NOT_FOUND, "text/plain", f"no source {index}: this run has {count}\n".encode())
            return None
        return index

    def _send(self, status: HTTPStatus, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _snapshot(self, source: int) -> None:
        feed = self.server.live.feed
        assert feed is not None
        feed.watch(source)
        try:  # a picture of the frame that was newest when asked (or of the first one, before any)
            jpeg = feed.next_jpeg(source, max(feed.latest_version(source) - 1, 0), _SNAPSHOT_WAIT_S)
        finally:
            feed.unwatch(source)
        if jpeg is None:
            self._send(HTTPStatus.SERVICE_UNAVAILABLE, "text/plain",
                       f"no picture of source {source} yet (or the run is ending); retry\n".encode())
            return
        self._send(HTTPStatus.OK, "image/jpeg", jpeg.data)

    def _stream(self, source: int) -> None:
        feed = self.server.live.feed
        assert feed is not None
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={_BOUNDARY}")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        feed.watch(source)
        seen = 0
        try:
            while not feed.closed:
                jpeg = feed.next_jpeg(source, seen, 1.0)
                if jpeg is None:
                    continue
                seen = jpeg.version
                self.wfile.write(f"--{_BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg.data)}"
                                 "\r\n\r\n".encode() + jpeg.data + b"\r\n")
                self.wfile.flush()
        except OSError as exc:  # the viewer left, or stalled past the timeout: only its stream ends
            log.debug("live view: stream %d to %s ended: %s", source, self.client_address[0], exc)
        finally:
            feed.unwatch(source)


def render_page(sources: Sequence[str], classes: Sequence[str], palette_bgr: np.ndarray | None, view: str) -> str:
    """The page: one live picture per source, the legend (class names in their palette colours) and the figures,
    which a script refreshes from /stats.json twice a second."""
    pictures = "\n".join(
        f'<figure><img id="picture-{i}" src="/stream/{i}.mjpg" alt="source {i}">'
        f"<figcaption>[{i}] {html.escape(name)}: <span id=\"frames-{i}\">-</span></figcaption></figure>"
        for i, name in enumerate(sources)
    )
    legend = ""
    if palette_bgr is not None:
        legend = "\n".join(
            f'<li><span class="swatch" style="background: rgb({int(c[2])},{int(c[1])},{int(c[0])})"></span>'
            f"{html.escape(name)}</li>"
            for name, c in zip(classes, np.asarray(palette_bgr).reshape(-1, 3))
        )
    fields = {"VIEW": html.escape(view), "PICTURES": pictures, "LEGEND": legend}
    return re.sub(r"\{(VIEW|PICTURES|LEGEND)\}", lambda match: fields[match.group(1)], _PAGE)  # one pass


_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>EdgeSeg live view</title>
<style>
body { font-family: sans-serif; background: #202020; color: #eee; margin: 12px; }
figure { display: inline-block; margin: 0 12px 12px 0; }
img { display: block; image-rendering: pixelated; }
#figures td { padding: 2px 12px 2px 0; }
#legend { list-style: none; padding: 0; columns: 2; max-width: 420px; }
.swatch { display: inline-block; width: 14px; height: 14px; margin-right: 6px; vertical-align: middle; }
</style></head>
<body>
<h3>EdgeSeg live view ({VIEW})</h3>
<table id="figures">
<tr><td>FPS</td><td id="fps">-</td></tr>
<tr><td>latency p50 (capture to mask)</td><td id="latency">-</td></tr>
<tr><td>dropped</td><td id="dropped">-</td></tr>
<tr><td>processed / read</td><td id="processed">-</td></tr>
</table>
{PICTURES}
<ul id="legend">
{LEGEND}
</ul>
<script>
let last = null;
async function refresh() {
  try {
    const stats = await (await fetch("/stats.json", {cache: "no-store"})).json();
    const now = performance.now(), done = stats.total.processed;
    const fps = last && now > last.t ? (done - last.done) * 1000 / (now - last.t) : stats.fps;
    last = {t: now, done: done};
    const e2e = stats.stages.end_to_end;
    document.getElementById("fps").textContent = fps.toFixed(1);
    document.getElementById("latency").textContent = e2e.count ? e2e.latency_ms_p50.toFixed(1) + " ms" : "-";
    document.getElementById("dropped").textContent = stats.total.dropped;
    document.getElementById("processed").textContent = done + " / " + stats.total.read;
    for (const source of stats.sources) {
      const cell = document.getElementById("frames-" + source.index);
      if (cell) cell.textContent = source.processed + " processed, " + source.read + " read, " + source.status;
    }
  } catch (err) {
    document.getElementById("fps").textContent = "run ended";
  }
}
refresh();
setInterval(refresh, 500);
</script>
</body></html>
"""
