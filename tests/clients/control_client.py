#!/usr/bin/env python3
"""A raw client of ringway's control socket (no ringway code involved).

Usage:
  control_client.py SOCKET REQUEST...
      Sends each REQUEST (a JSON text, or `raw:TEXT` sent as is, `\\n` appended to neither)
      followed by a newline on ONE connection, reads one response line per request and prints
      {"responses": [...]} (each response parsed, or {"unparsed": text}). Stops early at EOF.
  control_client.py SOCKET --big MIB
      Sends a request line of MIB mebibytes (in 1 MiB writes), then {"cmd":"ping"} on the same
      connection; prints {"responses": [...], "sent": bytes}.
  control_client.py SOCKET --half
      Sends half a request, shuts down its writing side, prints {"responses": [...]} until EOF.
  control_client.py SOCKET --stall SECONDS
      Sends half a request and waits SECONDS without finishing it; prints what came back.
  control_client.py SOCKET --hold N --every SECONDS --for SECONDS
      Opens N connections and sends {"cmd":"stats"} on each every SECONDS (spread out) for the
      given time (or until SIGTERM); prints {"requests": n, "errors": e, "max_ms": slowest
      answer}.
"""
import json
import selectors
import signal
import socket
import sys
import time


def connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    return s


def read_lines(s, n, timeout=30):
    s.settimeout(timeout)
    buf = b""
    out = []
    while len(out) < n:
        try:
            chunk = s.recv(65536)
        except (socket.timeout, ConnectionResetError):
            break
        if not chunk:
            break
        buf += chunk
        while b"\n" in buf and len(out) < n:
            line, buf = buf.split(b"\n", 1)
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"unparsed": line.decode("utf-8", "replace")})
    return out


def requests(path, reqs):
    s = connect(path)
    out = []
    for r in reqs:
        data = r[4:].encode() if r.startswith("raw:") else r.encode()
        try:
            s.sendall(data + b"\n")
        except OSError as e:
            # Refused at once (another uid, too many connections): the answer is still there.
            out.extend(read_lines(s, 1) or [{"send_error": type(e).__name__}])
            break
        got = read_lines(s, 1)
        if not got:
            break
        out.extend(got)
    return {"responses": out}


def big(path, mib):
    s = connect(path)
    chunk = b'{"cmd":"echo","args":{"x":"' + b"a" * (1 << 20)
    sent = 0
    for i in range(mib):
        s.sendall(chunk if i == 0 else b"a" * (1 << 20))
        sent += 1 << 20
    s.sendall(b'"}}\n{"cmd":"ping"}\n')
    return {"responses": read_lines(s, 2), "sent": sent}


def half(path):
    s = connect(path)
    s.sendall(b'{"cmd":"st')
    s.shutdown(socket.SHUT_WR)
    return {"responses": read_lines(s, 10)}


def stall(path, seconds):
    s = connect(path)
    s.sendall(b'{"cmd":"st')
    start = time.monotonic()
    out = read_lines(s, 10, timeout=seconds)
    return {"responses": out, "after_s": time.monotonic() - start}


def hold(path, n, every, duration):
    conns = [connect(path) for _ in range(n)]
    sel = selectors.DefaultSelector()
    for c in conns:
        c.setblocking(False)
        sel.register(c, selectors.EVENT_READ)
    start = time.monotonic()
    due = {c: start + every * k / n for k, c in enumerate(conns)}
    sent_at = {}
    bufs = {c: b"" for c in conns}
    requests_done = errors = 0
    slowest = 0.0
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    while time.monotonic() - start < duration and not stop:
        now = time.monotonic()
        for c in conns:
            if c not in sent_at and due[c] <= now:
                try:
                    c.sendall(b'{"cmd":"stats"}\n')
                except OSError:
                    errors += 1
                    due[c] = float("inf")
                    continue
                sent_at[c] = now
                due[c] = now + every
        for key, _ in sel.select(timeout=0.01):
            c = key.fileobj
            chunk = c.recv(1 << 20)
            if not chunk:
                errors += 1
                sel.unregister(c)
                continue
            bufs[c] += chunk
            while b"\n" in bufs[c]:
                line, bufs[c] = bufs[c].split(b"\n", 1)
                if json.loads(line).get("status") != "ok":
                    errors += 1
                requests_done += 1
                slowest = max(slowest, time.monotonic() - sent_at.pop(c))
    return {"requests": requests_done, "errors": errors, "max_ms": slowest * 1000}


def main():
    path, args = sys.argv[1], sys.argv[2:]
    if args and args[0] == "--big":
        out = big(path, int(args[1]))
    elif args and args[0] == "--half":
        out = half(path)
    elif args and args[0] == "--stall":
        out = stall(path, float(args[1]))
    elif args and args[0] == "--hold":
        out = hold(path, int(args[1]), float(args[3]), float(args[5]))
    else:
        out = requests(path, args)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
