"""Session-wide test setup.

The compiled kernels, `edgeseg._C`, must import: without them the runtime silently falls back to the numpy
reference and every C++ parity test would skip, so a broken extension build would pass CI. The session therefore
stops at once, with a non-zero exit status, when `import edgeseg._C` fails.

Set ``EDGESEG_ALLOW_NO_EXTENSION=1`` to run the suite anyway on a pure-Python install: the tests that need the
extension skip and say so, and everything else runs on the numpy fallback. (``EDGESEG_KERNELS=numpy`` is different:
it forces the numpy path for the runtime while the extension stays importable.)
"""

from __future__ import annotations

import os

import pytest


def _extension_import_error() -> ImportError | None:
    try:
        import edgeseg._C  # noqa: F401
    except ImportError as exc:
        return exc
    return None


def pytest_sessionstart(session: pytest.Session) -> None:
    error = _extension_import_error()
    if error is None or os.environ.get("EDGESEG_ALLOW_NO_EXTENSION") == "1":
        return
    pytest.exit(
        f"edgeseg._C cannot be imported ({error}). Rebuild it (`make build`) and look for the compiler error; "
        "set EDGESEG_ALLOW_NO_EXTENSION=1 to test a pure-Python install on the numpy fallback instead.",
        returncode=pytest.ExitCode.USAGE_ERROR,
    )


def pytest_report_header(config: pytest.Config) -> str:
    error = _extension_import_error()
    if error is not None:
        return f"edgeseg._C: not importable ({error}); EDGESEG_ALLOW_NO_EXTENSION=1"
    from edgeseg import _C

    return f"edgeseg._C: {_C.build_info}, CUDA kernels: {_C.has_cuda()}, CUDA devices: {_C.cuda_device_count()}"
