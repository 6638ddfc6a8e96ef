"""A latency relay for the benchmark: TCP on loopback, every chunk delayed by a fixed
time in each direction, so a host on 127.0.0.1 looks like a VPS 10-100 ms away.

The kernel on the benchmark machines has no ``netem`` qdisc, and a userspace relay
needs no privileges. Delays are per chunk and pipelined (a chunk read at t is written at
t + delay, whatever else is in flight), which is how a long link behaves: bandwidth is
not limited, only latency is added. Only loopback is ever a listen address or a target.

    python bench/relay.py --delay-ms 25 --map 127.0.2.1:0=127.0.1.1:2222 [--map ...]

prints one line ``READY listen_host:port=target_host:port ...`` once every listener is
bound, then relays until killed. ``start_relay`` spawns it from Python.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

CHUNK = 65536


def _loopback(host: str) -> str:
    if not host.startswith("127."):
        raise ValueError(f"the relay only ever uses loopback, not {host}")
    return host


@dataclass(frozen=True)
class Mapping:
    listen_host: str
    listen_port: int
    target_host: str
    target_port: int

    @classmethod
    def parse(cls, text: str) -> Mapping:
        """``LISTEN_HOST:PORT=TARGET_HOST:PORT`` (listen port 0 = any free port)."""
        listen, _, target = text.partition("=")
        lh, _, lp = listen.rpartition(":")
        th, _, tp = target.rpartition(":")
        return cls(_loopback(lh), int(lp), _loopback(th), int(tp))


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                delay: float, trace: Trace | None = None, direction: str = "") -> None:
    """Copy reader to writer, each chunk ``delay`` seconds after it was read.

    The reader side never waits for the writer, so chunks in flight overlap as on a
    real link; a deque keeps their order (timers with equal deadlines would not)."""
    queue: collections.deque[tuple[float, bytes]] = collections.deque()
    more = asyncio.Event()
    loop = asyncio.get_running_loop()

    async def read() -> None:
        while True:
            data = await reader.read(CHUNK)
            if trace is not None:
                trace.note(direction, len(data))
            queue.append((loop.time() + delay, data))
            more.set()
            if not data:
                return

    async def write() -> None:
        while True:
            while not queue:
                more.clear()
                await more.wait()
            when, data = queue.popleft()
            wait = when - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                with contextlib.suppress(OSError):
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()

    reading = asyncio.ensure_future(read())
    try:
        await write()
    finally:
        reading.cancel()


class Trace:
    """Every chunk the relay reads, as ``time connection direction bytes`` lines
    (``>`` client to server, ``<`` back), so the round trips a tool waits for can be
    counted (``round_trips``) whatever this machine's CPU speed."""

    def __init__(self, path: str) -> None:
        self._file = open(path, "a", buffering=1)  # noqa: SIM115 (lives with the relay)
        self._next = 0

    def connection(self) -> int:
        self._next += 1
        return self._next

    def note(self, direction: str, size: int) -> None:
        self._file.write(f"{time.monotonic():.6f} {direction} {size}\n")


def round_trips(lines: list[str], conn: str | None = None) -> int:
    """The round trips the client waited for in a trace: each time it sends again
    after the server has answered. (A send that does not wait for an answer, like a
    pipelined frame, is not counted; the relay's own TCP accept is on loopback.)"""
    count, answered = 0, True
    for line in lines:
        _, direction, size = line.split()[:3]
        if conn is not None and direction[:-1] != conn:
            continue
        if size == "0":
            continue
        if direction.endswith(">"):
            if answered:
                count += 1
            answered = False
        else:
            answered = True
    return count


def _nodelay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


async def _serve(mapping: Mapping, delay: float,
                 trace: Trace | None) -> asyncio.AbstractServer:
    async def handle(c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        tag = f"{trace.connection()}" if trace is not None else ""
        try:
            u_reader, u_writer = await asyncio.open_connection(mapping.target_host,
                                                               mapping.target_port)
        except OSError:
            c_writer.close()
            return
        _nodelay(c_writer)
        _nodelay(u_writer)
        try:
            await asyncio.gather(_pump(c_reader, u_writer, delay, trace, f"{tag}>"),
                                 _pump(u_reader, c_writer, delay, trace, f"{tag}<"),
                                 return_exceptions=True)
        finally:
            for w in (c_writer, u_writer):
                w.close()

    return await asyncio.start_server(handle, mapping.listen_host, mapping.listen_port,
                                      backlog=512)


async def _main(mappings: list[Mapping], delay: float, trace: Trace | None) -> None:
    servers = [await _serve(m, delay, trace) for m in mappings]
    bound = []
    for m, server in zip(mappings, servers, strict=True):
        port = server.sockets[0].getsockname()[1]
        bound.append(f"{m.listen_host}:{port}={m.target_host}:{m.target_port}")
    print("READY " + " ".join(bound), flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


class Relay:
    """A running relay process; ``ports[i]`` is where mapping ``i`` listens."""

    def __init__(self, proc: subprocess.Popen[str], ports: list[int]) -> None:
        self.proc = proc
        self.ports = ports

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> Relay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_relay(mappings: list[Mapping], delay_ms: float, timeout: float = 10,
                trace: str | None = None) -> Relay:
    """Spawn the relay in its own process (so it never competes for the measuring
    process's GIL) and wait until every listener is bound; ``trace``: a file the
    relay appends every chunk to (``Trace``)."""
    argv = [sys.executable, __file__, "--delay-ms", str(delay_ms)]
    if trace is not None:
        argv += ["--trace", trace]
    for m in mappings:
        argv += ["--map", f"{m.listen_host}:{m.listen_port}={m.target_host}:{m.target_port}"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("READY") or time.monotonic() > deadline:
        proc.kill()
        raise RuntimeError(f"latency relay did not start: {line.strip() or 'no output'}")
    ports = [int(item.split("=")[0].rpartition(":")[2]) for item in line.split()[1:]]
    return Relay(proc, ports)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delay-ms", type=float, required=True,
                        help="delay added to every chunk, in each direction")
    parser.add_argument("--map", action="append", required=True, type=Mapping.parse,
                        help="LISTEN_HOST:PORT=TARGET_HOST:PORT (loopback only)")
    parser.add_argument("--trace", help="append every chunk to this file (class Trace)")
    args = parser.parse_args(argv)
    # Stopped by its owner with SIGTERM: connections die with the process, which is
    # what a dropped link does; asyncio's shutdown would only print pending-task noise.
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(args.map, args.delay_ms / 1000,
                          Trace(args.trace) if args.trace else None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
