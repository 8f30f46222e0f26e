#!/usr/bin/env python3
"""Open many idle HTTP/1.1 keep-alive connections to one server (stdlib only).

Each connection sends one `GET <path> HTTP/1.1` request, reads the whole
response, and then stays open and idle. Once every connection is established
the client writes a "ready" file (JSON with counts); it then holds all
connections idle until a "release" file appears (or --hold seconds pass),
checks how many are still open (i.e. the server did not close them), writes
a JSON summary to stdout and closes everything.

Client sockets are bound round-robin to several loopback source addresses
(127.0.0.2 .. 127.0.0.40 by default) so that 10,000+ connections neither
exhaust one address's ephemeral ports nor hit a per-client-IP cap at once.

Only loopback destinations are allowed.

Used by bench/run.sh; can also be run by hand:

    python3 bench/idle_conns.py --port 8080 --conns 10000 --hold 30
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import resource
import socket
import sys
import time

IP_BIND_ADDRESS_NO_PORT = 24  # linux/in.h; defer port choice to connect()


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1", help="server address (loopback only)")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--conns", type=int, default=10000, help="number of connections")
    p.add_argument("--path", default="/1k", help="request path for the one request")
    p.add_argument("--host-header", default="bench.local")
    p.add_argument("--src-first", type=int, default=2, help="first source address 127.0.0.X")
    p.add_argument("--src-last", type=int, default=40, help="last source address 127.0.0.X")
    p.add_argument("--concurrency", type=int, default=200,
                   help="how many connects/requests are in flight at once while opening")
    p.add_argument("--timeout", type=float, default=10.0, help="per-connection connect+request timeout (s)")
    p.add_argument("--open-timeout", type=float, default=180.0,
                   help="give up opening connections after this many seconds")
    p.add_argument("--hold", type=float, default=60.0,
                   help="max seconds to hold the idle connections (ends early on --release-file)")
    p.add_argument("--ready-file", help="written (JSON) once all connections are open and idle")
    p.add_argument("--release-file", help="stop holding as soon as this file exists")
    p.add_argument("--max-failures", type=int, default=None,
                   help="stop opening after this many failed connections (default: 1%% of --conns + 10)")
    return p.parse_args()


def raise_nofile(needed: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else max(needed, soft)
    if soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
        except (ValueError, OSError):
            pass
    return soft


async def read_response(reader: asyncio.StreamReader) -> tuple[int, int]:
    """Read one full HTTP/1.1 response; return (status, body_length)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status_parts = lines[0].split(" ", 2)
    if len(status_parts) < 2 or not status_parts[0].startswith("HTTP/"):
        raise ValueError(f"bad status line: {lines[0]!r}")
    status = int(status_parts[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        total = 0
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                # trailers until empty line
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass
                break
            await reader.readexactly(size)
            await reader.readexactly(2)
            total += size
        return status, total
    if "content-length" in headers:
        n = int(headers["content-length"])
        await reader.readexactly(n)
        return status, n
    if status in (204, 304) or 100 <= status < 200:
        return status, 0
    raise ValueError("response without Content-Length or chunked encoding (not keep-alive capable)")


async def open_one(idx: int, args, srcs, sem, loop) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    src = srcs[idx % len(srcs)]
    async with sem:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            try:
                sock.setsockopt(socket.SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            except OSError:
                pass
            sock.bind((src, 0))
            await asyncio.wait_for(loop.sock_connect(sock, (args.host, args.port)), args.timeout)
        except BaseException:
            sock.close()
            raise
        reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 20)
        req = (f"GET {args.path} HTTP/1.1\r\nHost: {args.host_header}\r\n"
               f"User-Agent: palisade-bench-idle\r\nAccept: */*\r\n\r\n").encode()
        try:
            writer.write(req)
            status, _ = await asyncio.wait_for(read_response(reader), args.timeout)
            if status != 200:
                raise ValueError(f"status {status}")
        except BaseException:
            writer.close()
            raise
        return reader, writer


async def main() -> int:
    args = parse_args()
    if not ipaddress.ip_address(args.host).is_loopback:
        print(f"refusing non-loopback target {args.host}", file=sys.stderr)
        return 2
    srcs = [f"127.0.0.{i}" for i in range(args.src_first, args.src_last + 1)]
    nofile = raise_nofile(args.conns + 100)
    if nofile < args.conns + 50:
        print(f"warning: RLIMIT_NOFILE {nofile} is too low for {args.conns} connections",
              file=sys.stderr)
    max_fail = args.max_failures if args.max_failures is not None else args.conns // 100 + 10

    loop = asyncio.get_running_loop()
    sem = asyncio.Semaphore(args.concurrency)
    t0 = time.monotonic()
    conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    errors: dict[str, int] = {}
    failed = 0

    tasks = [asyncio.create_task(open_one(i, args, srcs, sem, loop)) for i in range(args.conns)]
    try:
        for fut in asyncio.as_completed(tasks, timeout=args.open_timeout):
            try:
                conns.append(await fut)
            except asyncio.TimeoutError as e:
                if time.monotonic() - t0 >= args.open_timeout:
                    raise
                failed += 1
                errors["timeout"] = errors.get("timeout", 0) + 1
            except Exception as e:  # noqa: BLE001 - report any failure kind
                failed += 1
                key = f"{type(e).__name__}: {e}"[:120]
                errors[key] = errors.get(key, 0) + 1
            if failed > max_fail:
                break
    except asyncio.TimeoutError:
        errors["open-timeout"] = 1
    for t in tasks:
        if not t.done():
            t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    # collect results of tasks that finished after we stopped iterating
    seen = {id(w) for _, w in conns}
    for t in tasks:
        if t.done() and not t.cancelled() and t.exception() is None:
            r, w = t.result()
            if id(w) not in seen:
                conns.append((r, w))
    open_secs = time.monotonic() - t0

    result = {
        "target": f"{args.host}:{args.port}",
        "requested": args.conns,
        "opened": len(conns),
        "failed": failed,
        "errors": errors,
        "open_seconds": round(open_secs, 2),
        "sources": len(srcs),
        "nofile": nofile,
    }
    ok = failed <= max_fail and len(conns) > 0
    result["ok"] = ok
    if args.ready_file:
        tmp = args.ready_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump(result, f)
        os.replace(tmp, args.ready_file)

    # Hold: idle, until release file or --hold elapses.
    if ok:
        deadline = time.monotonic() + args.hold
        while time.monotonic() < deadline:
            if args.release_file and os.path.exists(args.release_file):
                break
            await asyncio.sleep(0.2)

    # How many did the server keep open? The event loop ran during the hold,
    # so a server-side close has already been seen as EOF or an error.
    alive = 0
    for reader, writer in conns:
        if reader.at_eof() or reader.exception() is not None or writer.is_closing():
            continue
        alive += 1
    result["alive_at_release"] = alive
    result["held_seconds"] = round(time.monotonic() - t0 - open_secs, 2)

    for _, writer in conns:
        writer.close()
    await asyncio.gather(*(w.wait_closed() for _, w in conns), return_exceptions=True)
    print(json.dumps(result))
    return 0 if ok else 1


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main()))
    except KeyboardInterrupt:
        sys.exit(130)
