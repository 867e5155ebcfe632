"""--url / --triton-model / --triton-shm for `edgeseg run`, `bench` and `eval`: one definition, one meaning.

With `--backend triton` the model runs on a Triton Inference Server: MODEL is the server's gRPC HOST:PORT, or, when
--url gives the address, the name of the model on it (like --triton-model). Without `--backend triton` these
options are refused rather than ignored.
"""

from __future__ import annotations

import argparse
from typing import Any

from edgeseg.errors import ConfigError


def add_triton_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("Triton Inference Server (--backend triton)")
    group.add_argument("--url", metavar="HOST:PORT",
                       help="gRPC address of a Triton server (e.g. from `edgeseg serve`); MODEL may then name the "
                            "model on it")
    group.add_argument("--triton-model", metavar="NAME",
                       help="the model on the server (unset: its only EdgeSeg model)")
    group.add_argument("--triton-shm", action="store_true",
                       help="pass frames and masks through system shared memory (the server runs on this host)")


def triton_target(model: str | None, args: argparse.Namespace) -> tuple[str, dict[str, Any]] | None:
    """(server address, TritonBackend options) with --backend triton, None otherwise (after refusing stray flags)."""
    given = [flag for flag, value in (("--url", args.url), ("--triton-model", args.triton_model),
                                      ("--triton-shm", args.triton_shm)) if value]
    if args.backend != "triton":
        if given:
            raise ConfigError(f"{', '.join(given)} apply only with --backend triton")
        return None
    url, name = args.url or model, args.triton_model
    if not url:
        raise ConfigError("--backend triton needs the server: give --url HOST:PORT (or HOST:PORT as MODEL)")
    from edgeseg.runtime.backends.triton import triton_address  # numpy only: tritonclient is imported on use

    triton_address(url)  # checked now, before any source, dataset or model is opened
    if args.url and model and model != args.url:
        if name and name != model:
            raise ConfigError(f"MODEL {model!r} and --triton-model {name!r} name different Triton models; give one")
        name = model
    return url, {"model_name": name, "shared_memory": bool(args.triton_shm)}


def open_triton_segmenter(model: str | None, args: argparse.Namespace, tta: Any = None) -> Any:
    """A Segmenter on the Triton server the options name (with test-time augmentation `tta`), or None without
    --backend triton."""
    target = triton_target(model, args)
    if target is None:
        return None
    from edgeseg.runtime.segmenter import Segmenter

    return Segmenter(target[0], backend="triton", tta=tta, **target[1])


__all__ = ["add_triton_options", "triton_target", "open_triton_segmenter"]


def bench_on_triton(args: argparse.Namespace, frames: list) -> dict[str, Any]:
    """`edgeseg bench --backend triton`: per-stage latency and FPS through the server, and the batch sizes it
    formed meanwhile (from its statistics endpoint), for the one server MODEL/--url names."""
    from edgeseg.bench import benchmark_segmenter, device_info

    if len(args.models) != 1:
        raise ConfigError(f"--backend triton benchmarks one server model; got {len(args.models)} MODEL arguments")
    segmenter = open_triton_segmenter(args.models[0], args)
    with segmenter:
        before = segmenter.backend.server_batch_sizes()
        result = benchmark_segmenter(segmenter, frames, warmup=args.warmup, min_seconds=args.min_seconds,
                                     min_iters=args.min_iters)
        after = segmenter.backend.server_batch_sizes()
        result.update(url=segmenter.backend.url, triton_model=segmenter.backend.model_name,
                      shared_memory=segmenter.backend.shared_memory,
                      server_batch_sizes={str(size): count - before.get(size, 0) for size, count in after.items()
                                          if count > before.get(size, 0)},
                      device=device_info())
    return result
