#!/usr/bin/env python3
"""A WebSocket client (Python's `websockets`) for the ws_server tests.

Usage:
  ws_client.py URL send --conn C --count N [--per-message K] [--binary | --mixed]
               [--pad MIN:MAX] [--progress] [--cafile F]
      Sends events 0..N of connection C (produce.py's format, padding MIN:MAX, default
      60:140), K events per message joined by newlines (the last without one), as text frames
      (--binary: binary; --mixed: alternating). --progress prints {"bytes": n} about every
      MiB handed over. Prints {"sent": n, "messages": m}.
  ws_client.py URL message --size S [--cafile F]
      Sends one text message of S bytes (a JSON string) and waits for the server to close;
      prints {"close_code": c, "close_reason": r}.
  ws_client.py URL raw TEXT [--binary] [--cafile F]
      Sends TEXT as one message (\\n escapes allowed), then closes normally. Prints {"sent": 1}.
  ws_client.py URL echo --conn C --count N [--cafile F]
      Sends events 0..N of connection C one per message while a thread reads the replies;
      prints {"sent": n, "replies": m, "same": true} once N replies came (or 30 s passed;
      same: the replies equal the events sent, in order).
  ws_client.py URL chat TEXT --seconds T
      Sends TEXT, then prints {"got": m} for each message received within T seconds.
  ws_client.py URL hold --seconds T [--cafile F]
      Connects and holds the connection open; prints {"connected": true, "close_code": c}
      (c: null if it was still open after T seconds).
A failed connection prints {"error": "<type>", "detail": "...", "status": <http status>}
and exits 1.
"""
import argparse
import json
import os
import ssl
import sys
import time

from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

sys.path.insert(0, os.path.dirname(__file__))
from produce import event  # noqa: E402


def opts(args):
    kw = {"open_timeout": 10, "close_timeout": 10, "max_size": None, "ping_interval": None}
    if args.url.startswith("wss://"):
        ctx = ssl.create_default_context(cafile=args.cafile)
        if args.server_name:
            kw["server_hostname"] = args.server_name
        kw["ssl"] = ctx
    return kw


def main():
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("mode", choices=["send", "message", "raw", "hold", "echo", "chat"])
    p.add_argument("text", nargs="?")
    p.add_argument("--conn", type=int, default=0)
    p.add_argument("--count", type=int, default=0)
    p.add_argument("--per-message", type=int, default=1)
    p.add_argument("--binary", action="store_true")
    p.add_argument("--mixed", action="store_true")
    p.add_argument("--size", type=int, default=0)
    p.add_argument("--seconds", type=float, default=1.0)
    p.add_argument("--pad", default="60:140")
    p.add_argument("--progress", action="store_true")
    p.add_argument("--cafile")
    p.add_argument("--server-name")
    args = p.parse_args()
    try:
        ws = connect(args.url, **opts(args))
    except InvalidStatus as e:
        print(json.dumps({"error": "InvalidStatus", "status": e.response.status_code,
                          "detail": str(e)}), flush=True)
        return 1
    except Exception as e:  # noqa: BLE001 - the test reads the type
        print(json.dumps({"error": type(e).__name__, "detail": str(e)}), flush=True)
        return 1
    with ws:
        if args.mode == "send":
            sent, messages, handed, report = 0, 0, 0, 1 << 20
            pad_min, pad_max = (int(x) for x in args.pad.split(":"))
            while sent < args.count:
                n = min(args.per_message, args.count - sent)
                lines = [event(args.conn, i, pad_min, pad_max).rstrip(b"\n")
                         for i in range(sent, sent + n)]
                data = b"\n".join(lines)
                binary = args.binary or (args.mixed and messages % 2 == 1)
                ws.send(data if binary else data.decode())
                sent += n
                messages += 1
                handed += len(data) + 1
                if args.progress and handed >= report:
                    print(json.dumps({"bytes": handed}), flush=True)
                    report = handed + (1 << 20)
            ws.close()
            print(json.dumps({"sent": sent, "messages": messages}), flush=True)
        elif args.mode == "message":
            body = "x" * max(0, args.size - 2)
            ws.send(json.dumps(body))
            code, reason = None, None
            try:
                while True:
                    ws.recv(timeout=10)
            except ConnectionClosed as e:
                rcvd = e.rcvd
                code, reason = (rcvd.code, rcvd.reason) if rcvd else (None, None)
            print(json.dumps({"close_code": code, "close_reason": reason}), flush=True)
        elif args.mode == "raw":
            text = args.text.encode().decode("unicode_escape").encode("latin-1")
            ws.send(text if args.binary else text.decode())
            ws.close()
            print(json.dumps({"sent": 1}), flush=True)
        elif args.mode == "echo":
            import threading
            got = []

            def reader():
                try:
                    while len(got) < args.count:
                        got.append(ws.recv(timeout=30))
                except Exception:  # noqa: BLE001 - counted below
                    pass

            t = threading.Thread(target=reader)
            t.start()
            sent = [event(args.conn, i, 60, 140).rstrip(b"\n").decode() for i in range(args.count)]
            for e in sent:
                ws.send(e)
            t.join()
            print(json.dumps({"sent": len(sent), "replies": len(got), "same": got == sent}),
                  flush=True)
        elif args.mode == "chat":
            ws.send(args.text)
            deadline = time.monotonic() + args.seconds
            try:
                while (left := deadline - time.monotonic()) > 0:
                    m = ws.recv(timeout=left)
                    print(json.dumps({"got": m if isinstance(m, str) else m.decode()}), flush=True)
            except (TimeoutError, ConnectionClosed):
                pass
            print(json.dumps({"done": True}), flush=True)
        elif args.mode == "hold":
            print(json.dumps({"connected": True}), flush=True)
            code = None
            try:
                ws.recv(timeout=args.seconds)
            except TimeoutError:
                pass
            except ConnectionClosed as e:
                code = e.rcvd.code if e.rcvd else None
            print(json.dumps({"connected": True, "close_code": code}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
