"""CUDA graphs for the TensorRT device path: capture one batch's device work once, replay it as one launch.

A graph bakes in shapes and device addresses, so graphs are kept per batch key (shapes + addresses), up to
`max_graphs`, oldest out first. Capture runs in thread-local mode on the runner's own non-blocking stream, after a
normal warm-up run (TensorRT requires one before capturing enqueueV3). When capture is impossible (the context says
its stream is not capturable, or CUDA invalidates the capture) the cache warns once, records why in `failure` and
turns itself off; `captures` and `launches` say what really happened.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Any, Callable, Hashable

from edgeseg.errors import CudaError, EdgeSegError
from edgeseg.runtime.gpu.api import CudaApi

log = logging.getLogger(__name__)


class GraphCache:
    def __init__(self, api: CudaApi, stream: Any, name: str, max_graphs: int = 8) -> None:
        self._api, self._stream, self._name, self._max = api, stream, name, max_graphs
        self._graphs: OrderedDict[Hashable, tuple[Any, Any]] = OrderedDict()  # key -> (graph, graph_exec)
        self.enabled = True
        self.failure: str | None = None
        self.captures = 0
        self.launches = 0

    def __len__(self) -> int:
        return len(self._graphs)

    def launch(self, key: Hashable) -> bool:
        """Replay the graph for `key`; False when there is none (capture it after a normal run)."""
        entry = self._graphs.get(key)
        if entry is None:
            return False
        self._graphs.move_to_end(key)
        self._api.graph_launch(entry[1], self._stream)
        self.launches += 1
        return True

    def capture(self, key: Hashable, enqueue: Callable[[], None], capturable: Callable[[], bool] | None = None) -> bool:
        """Capture what `enqueue()` puts on the stream as the graph for `key`; False (and off) when it cannot."""
        if not self.enabled:
            return False
        if capturable is not None and not capturable():
            return self._fail("the TensorRT execution context says its stream is not capturable (TensorRT-RTX "
                              "engines must be built with REQUIRE_USER_ALLOCATION: export them again)")
        try:
            graph = self._record(enqueue)
            graph_exec = self._instantiate(graph)
        except (EdgeSegError, RuntimeError) as exc:  # CudaError, a TensorRT failure, or edgeseg._C's error
            self._api.clear_error()
            return self._fail(f"{type(exc).__name__}: {exc}")
        self._store(key, graph, graph_exec)
        return True

    def _record(self, enqueue: Callable[[], None]) -> Any:
        """Begin capture, enqueue, and always end the capture, or the stream stays capturing."""
        self._api.begin_capture(self._stream)
        try:
            enqueue()
        except BaseException:
            try:
                self._api.graph_destroy(self._api.end_capture(self._stream), None)
            except CudaError:
                pass  # the enqueue error is the one to report; the capture is already invalid
            raise
        return self._api.end_capture(self._stream)

    def _instantiate(self, graph: Any) -> Any:
        try:
            return self._api.graph_instantiate(graph)
        except CudaError:
            self._api.graph_destroy(graph, None)
            raise

    def _store(self, key: Hashable, graph: Any, graph_exec: Any) -> None:
        while len(self._graphs) >= self._max:  # shapes keep changing: drop the oldest graph
            self._drop(next(iter(self._graphs)))
        self._graphs[key] = (graph, graph_exec)
        self.captures += 1

    def _fail(self, why: str) -> bool:
        log.warning("CUDA graph capture of %s failed (%s); predict_frames runs without a CUDA graph", self._name, why)
        self.enabled, self.failure = False, why
        return False

    def _drop(self, key: Hashable) -> None:
        graph, graph_exec = self._graphs.pop(key)
        self._api.graph_destroy(graph, graph_exec)

    def clear(self) -> None:
        for key in list(self._graphs):
            self._drop(key)
