"""`edgeseg serve REPO`: a local Triton Inference Server on a model repository (`edgeseg export --triton REPO`).

It binds to 127.0.0.1 unless --host says otherwise, loads the models this tritonserver has backends for (the
nvidia-pytriton wheel's binary: the Python-backend model, on a CPU), waits until they are ready, prints the address
to give `edgeseg run|bench|eval --backend triton --url`, and stops the server cleanly on Ctrl-C or SIGTERM.
Exit status: 0 stopped by Ctrl-C/SIGTERM; 1 the server exited by itself; 2 an EdgeSeg error.
"""

from __future__ import annotations

import argparse
import signal

from edgeseg.cli.numbers import finite_float


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("serve", help="run a local Triton Inference Server on a model repository",
                            description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("repo", help="Triton model repository written by `edgeseg export --triton REPO`")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (0.0.0.0 exposes the server to the network)")
    parser.add_argument("--http-port", type=int, default=8000, help="HTTP/REST port (0: a free one)")
    parser.add_argument("--grpc-port", type=int, default=8001, help="gRPC port, the one clients use (0: a free one)")
    parser.add_argument("--metrics-port", type=int, default=8002, help="Prometheus metrics port (0: a free one)")
    parser.add_argument("--model", action="append", metavar="NAME",
                        help="load only this model (repeatable); unset: every model this server has a backend for")
    parser.add_argument("--log", metavar="FILE", help="write the server's output here instead of the terminal")
    parser.add_argument("--startup-timeout", type=finite_float, default=120.0, metavar="S",
                        help="give up when the server is not ready after S seconds")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edgeseg.errors import ConfigError
    from edgeseg.serve import TritonServer

    if not args.startup_timeout > 0:
        raise ConfigError(f"--startup-timeout must be > 0 seconds, got {args.startup_timeout}")
    if args.log is not None:  # the log never goes over, or into, the repository the server reads
        from edgeseg.output_guard import Input, Output, check_outputs

        check_outputs([Output("--log", args.log)], [Input("the model repository", args.repo, whole=True)])
    server = TritonServer(args.repo, host=args.host, http_port=args.http_port, grpc_port=args.grpc_port,
                          metrics_port=args.metrics_port, models=args.model, log_file=args.log)
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM stops it like Ctrl-C
    try:
        server.start(args.startup_timeout)
        print(f"Triton ready: models {', '.join(server.models)}", flush=True)
        print(f"  gRPC    {server.grpc_url}   (edgeseg run MODEL... --backend triton --url {server.grpc_url})")
        print(f"  HTTP    {server.http_url}")
        print(f"  metrics {server.metrics_url}")
        print("Ctrl-C stops it.", flush=True)
        status = server.process.wait()
        print(f"edgeseg serve: tritonserver exited by itself with status {status}")
        return 1
    except KeyboardInterrupt:
        status = server.stop()
        print(f"stopped (tritonserver exit status {status})")
        return 0
    finally:
        server.stop()
        signal.signal(signal.SIGTERM, previous)
