"""Will a buffer fit? Sizes a user types (--input-size, --frame-size, --frames) or a model states decide how much
memory EdgeSeg allocates; a size that cannot fit is refused up front, saying how many GB it needs, instead of a numpy
MemoryError (or the kernel's OOM killer) in the middle of the work."""

from __future__ import annotations

import os

from edgeseg.errors import ConfigError

GB = 1e9


def available_bytes() -> int:
    """Memory the system can give this process now: MemAvailable on Linux, else the physical memory size."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 1 << 62  # unknown: never refuse


def require_memory(nbytes: float, what: str, fix: str) -> None:
    """ConfigError when `nbytes` exceed the memory available: '<what> needs N GB ...; <fix>'."""
    available = available_bytes()
    if nbytes > available:
        raise ConfigError(f"{what} needs {nbytes / GB:.1f} GB of memory, more than the {available / GB:.1f} GB this "
                          f"machine has available; {fix}")
