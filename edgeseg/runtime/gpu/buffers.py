"""Pinned host and device buffers, the runner's buffer cache, and CUDA-event timing, on any CudaApi.

Ownership: a PinnedBuffer's array owns its page-locked memory (CudaApi.pinned_empty), so `free()` only drops the
buffer's reference; memory a caller still has a view of is released when that view goes, never under it.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Generic, Hashable, TypeVar

import numpy as np

from edgeseg.errors import CudaError
from edgeseg.runtime.gpu.api import CudaApi


def _nbytes(shape: tuple[int, ...], dtype: np.dtype) -> int:
    return max(int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize, 1)


class PinnedBuffer:
    """Page-locked host memory as a numpy array of `shape` and `dtype` (`.array`, address `.ptr`)."""

    def __init__(self, api: CudaApi, shape: tuple[int, ...], dtype: Any) -> None:
        self.shape, self.dtype = tuple(int(s) for s in shape), np.dtype(dtype)
        self.nbytes = _nbytes(self.shape, self.dtype)
        self.array: np.ndarray | None = api.pinned_empty(self.shape, self.dtype)
        self.ptr: int = int(self.array.ctypes.data)

    def free(self) -> None:
        """Drop this buffer's reference; the memory goes with the last view of it (see the module docstring)."""
        self.array = None
        self.ptr = 0


class DeviceBuffer:
    """Device memory for `shape` and `dtype`; `.ptr` is its address; free() releases it."""

    def __init__(self, api: CudaApi, shape: tuple[int, ...], dtype: Any) -> None:
        self._api = api
        self.shape, self.dtype = tuple(int(s) for s in shape), np.dtype(dtype)
        self.nbytes = _nbytes(self.shape, self.dtype)
        self.ptr: int = api.malloc(self.nbytes)

    def item_ptr(self, index: int) -> int:
        """Device address of `buffer[index]` along the first (batch) axis."""
        per_item = self.nbytes // max(self.shape[0], 1) if self.shape else self.nbytes
        return self.ptr + index * per_item

    def free(self) -> None:
        if self.ptr:
            ptr, self.ptr = self.ptr, 0
            self._api.free(ptr)


@dataclass
class HostDevicePair:
    """A pinned host buffer and a device buffer of the same shape and dtype."""

    host: PinnedBuffer
    device: DeviceBuffer

    @staticmethod
    def allocate(api: CudaApi, shape: tuple[int, ...], dtype: Any) -> "HostDevicePair":
        host = PinnedBuffer(api, shape, dtype)
        try:
            return HostDevicePair(host, DeviceBuffer(api, shape, dtype))
        except CudaError:
            host.free()
            raise

    def free(self) -> None:
        self.host.free()
        self.device.free()


T = TypeVar("T")


class BufferCache(Generic[T]):
    """Buffers keyed on the full (name, shape, dtype), least recently used first out beyond `max_entries`.

    Batches that alternate in size (several sources, a last partial batch) each keep their buffers, so nothing is
    freed and reallocated while the sizes keep coming back. `begin_round()` marks the start of one batch: buffers
    used since then are never evicted, however small the bound, because that batch's GPU work still needs them.
    `allocate(shape, dtype)` makes a buffer and `release(buffer)` frees it, so the rule is tested without a GPU.
    `allocations` counts every allocation made.
    """

    def __init__(self, allocate: Callable[[tuple[int, ...], np.dtype], T], release: Callable[[T], None],
                 max_entries: int = 32) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, got {max_entries}")
        self._allocate, self._release, self.max_entries = allocate, release, int(max_entries)
        self.allocations = 0
        self._entries: OrderedDict[tuple, T] = OrderedDict()
        self._round: set[tuple] = set()

    @staticmethod
    def key(name: Hashable, shape: Any, dtype: Any) -> tuple:
        return (name, tuple(int(s) for s in shape), np.dtype(dtype).str)

    def begin_round(self) -> None:
        self._round.clear()

    def get(self, name: Hashable, shape: Any, dtype: Any) -> T:
        key = self.key(name, shape, dtype)
        if key in self._entries:
            self._entries.move_to_end(key)
        else:
            self._evict(room_for=1)
            self._entries[key] = self._allocate(key[1], np.dtype(dtype))
            self.allocations += 1
        self._round.add(key)
        return self._entries[key]

    def _evict(self, room_for: int) -> None:
        for key in [k for k in self._entries if k not in self._round]:
            if len(self._entries) + room_for <= self.max_entries:
                return
            self._release(self._entries.pop(key))

    def __contains__(self, key: tuple) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        """Release every buffer (the caller synchronizes its stream first)."""
        entries, self._entries = self._entries, OrderedDict()
        self._round.clear()
        for buffer in entries.values():
            self._release(buffer)


def pair_cache(api: CudaApi, max_entries: int = 32) -> BufferCache[HostDevicePair]:
    """A BufferCache of HostDevicePairs on `api`."""
    return BufferCache(lambda shape, dtype: HostDevicePair.allocate(api, shape, dtype), HostDevicePair.free,
                       max_entries)


class EventTimer:
    """CUDA events recorded on one stream at named marks; `elapsed_ms()` (after the stream is synchronized) gives the
    GPU time between consecutive marks: {"b": t(a->b), "c": t(b->c), ...} for marks a, b, c. Events are made once."""

    def __init__(self, api: CudaApi, stream: Any) -> None:
        self._api, self._stream = api, stream
        self._events: dict[str, Any] = {}
        self._order: list[str] = []

    def mark(self, name: str) -> None:
        if name not in self._events:
            self._events[name] = self._api.event_create()
        if name not in self._order:
            self._order.append(name)
        self._api.event_record(self._events[name], self._stream)

    def reset(self) -> None:
        self._order.clear()

    def elapsed_ms(self) -> dict[str, float]:
        return {second: self._api.event_elapsed_ms(self._events[first], self._events[second])
                for first, second in zip(self._order, self._order[1:])}

    def free(self) -> None:
        for event in self._events.values():
            self._api.event_destroy(event)
        self._events.clear()
        self._order.clear()
