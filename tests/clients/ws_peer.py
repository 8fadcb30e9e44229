#!/usr/bin/env python3
"""A WebSocket server (Python's `websockets`) for the ws_client tests: the peer a ws_client
sink connects to.

Usage: ws_peer.py PORT --out FILE [--echo] [--types] [--cert PEM --key PEM [--client-ca PEM]]
                  [--stop-after N] [--stall S]
Appends every message it receives, one per line, to FILE (flushed per message), and with
--echo sends each back on the same connection. --types: each line starts with "T " (a text
message) or "B " (binary). --stall S: waits S seconds before reading a new connection. Prints {"listening": port} once it listens,
and {"connection": n} for each connection. --stop-after N: exits (without closing
connections cleanly: os._exit) after the N-th message overall.
"""
import argparse
import asyncio
import json
import os
import ssl
import sys

from websockets.asyncio.server import serve


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("port", type=int)
    p.add_argument("--out", required=True)
    p.add_argument("--echo", action="store_true")
    p.add_argument("--types", action="store_true")
    p.add_argument("--stall", type=float, default=0.0,
                   help="seconds to wait before reading each connection")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--client-ca", help="require a client certificate signed by this CA")
    p.add_argument("--stop-after", type=int, default=0)
    args = p.parse_args()
    ctx = None
    if args.cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.cert, args.key)
        if args.client_ca:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(args.client_ca)
    out = open(args.out, "ab", buffering=0)
    state = {"messages": 0, "connections": 0}

    async def handler(ws):
        state["connections"] += 1
        print(json.dumps({"connection": state["connections"]}), flush=True)
        if args.stall:
            await asyncio.sleep(args.stall)
        async for m in ws:
            data = m.encode() if isinstance(m, str) else m
            if args.types:
                data = (b"T " if isinstance(m, str) else b"B ") + data
            out.write(data + b"\n")
            state["messages"] += 1
            if args.echo:
                await ws.send(m)
            if args.stop_after and state["messages"] >= args.stop_after:
                os._exit(0)

    async with serve(handler, "127.0.0.1", args.port, ssl=ctx, max_size=None,
                     ping_interval=None):
        print(json.dumps({"listening": args.port}), flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
