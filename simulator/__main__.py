"""`python -m simulator --host H --port P [--latency-ms X] [--ttft-ms X] [--error-rate R] [--seed S] [--workers N]`."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import sys
import tempfile

import uvloop

from simulator.app import Settings, Simulator
from simulator.http import Connection


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m simulator", description="OpenAI-compatible simulated upstream.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8900)
    p.add_argument("--latency-ms", type=float, default=0.0, help="total response time (non-stream) / stream duration")
    p.add_argument("--ttft-ms", type=float, default=0.0, help="time to the first stream chunk")
    p.add_argument("--error-rate", type=float, default=0.0, help="share of requests failed with --error-status")
    p.add_argument("--error-status", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=1, help="processes sharing the listening socket")
    p.add_argument("--ft-seconds", type=float, default=3.0, help="how long a fine-tuning job takes")
    p.add_argument("--rate-limit", type=float, default=0.0, help="requests/second per worker before 429 (0 = off)")
    p.add_argument("--chunk-words", type=int, default=2, help="words per streamed chunk")
    p.add_argument("--state-dir", default="", help="where files and fine-tuning jobs live (default: a temp dir)")
    a = p.parse_args(argv)
    if not 0.0 <= a.error_rate <= 1.0:
        p.error("--error-rate must be between 0 and 1")
    if not 400 <= a.error_status <= 599:
        p.error("--error-status must be a 4xx or 5xx status")
    if a.workers < 1:
        p.error("--workers must be at least 1")
    return a


async def serve(sock: socket.socket, settings: Settings) -> None:
    loop = asyncio.get_running_loop()
    sim = Simulator(settings)
    server = await loop.create_server(lambda: Connection(sim), sock=sock, backlog=4096)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    state_dir = a.state_dir or tempfile.mkdtemp(prefix="abgate-sim-")
    settings = Settings(latency_ms=a.latency_ms, ttft_ms=a.ttft_ms, error_rate=a.error_rate,
                        error_status=a.error_status, seed=a.seed, ft_seconds=a.ft_seconds,
                        rate_limit=a.rate_limit, chunk_words=a.chunk_words, state_dir=state_dir)
    sock = socket.socket(socket.AF_INET6 if ":" in a.host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((a.host, a.port))
    except OSError as err:
        print(f"simulator: cannot listen on {a.host}:{a.port}: {err}", file=sys.stderr)
        return 1
    sock.listen(4096)
    sock.setblocking(False)
    print(f"simulator listening on http://{a.host}:{a.port} (workers={a.workers}, state={state_dir})", flush=True)
    if a.workers == 1:
        uvloop.run(serve(sock, settings))
        return 0
    children = []
    for _ in range(a.workers):
        pid = os.fork()
        if pid == 0:  # child: serve on the shared socket until SIGTERM
            try:
                uvloop.run(serve(sock, settings))
            finally:
                os._exit(0)
        children.append(pid)
    sock.close()

    def forward(signum: int, _frame: object) -> None:
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for pid in children:
        while True:
            try:
                os.waitpid(pid, 0)
                break
            except ChildProcessError:
                break
            except InterruptedError:
                continue
    return 0


if __name__ == "__main__":
    sys.exit(main())
