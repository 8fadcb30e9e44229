"""A line echo server for loadgen's tests: every line received is sent back on its connection.

usage: echo.py SOCKET|tcp [--stall-after N --stall-ms MS] [--drop-every K] [--close-after N]

SOCKET is a UNIX socket path; "tcp" listens on 127.0.0.1 on a free port instead.

--stall-after/--stall-ms: after N lines (over all connections), stop reading for MS milliseconds
once (a stall, as a GC pause or a full disk would cause).
--drop-every K: do not echo every K-th line (a lossy peer).
--close-after N: close each connection after echoing N lines (a peer that vanishes).
--never-read: accept connections and never read from them (a target that stopped reading).
Prints "ready" (UNIX) or "ready PORT" (tcp) on stdout once listening.
"""
import argparse
import os
import socket
import threading
import time

ap = argparse.ArgumentParser()
ap.add_argument("socket")
ap.add_argument("--stall-after", type=int, default=-1)
ap.add_argument("--stall-ms", type=int, default=0)
ap.add_argument("--drop-every", type=int, default=0)
ap.add_argument("--close-after", type=int, default=0)
ap.add_argument("--never-read", action="store_true")
a = ap.parse_args()

lock = threading.Lock()
seen = [0]
stalled = [False]


def serve(conn):
    if a.never_read:
        time.sleep(3600)
        return
    buf = b""
    mine = 0
    with conn:
        while True:
            data = conn.recv(65536)
            if not data:
                return
            buf += data
            *lines, buf = buf.split(b"\n")
            out = []
            for line in lines:
                mine += 1
                with lock:
                    seen[0] += 1
                    stall = a.stall_after >= 0 and seen[0] > a.stall_after and not stalled[0]
                    if stall:
                        stalled[0] = True
                if stall:
                    if out:
                        conn.sendall(b"".join(out))
                        out = []
                    time.sleep(a.stall_ms / 1000)
                if a.drop_every and mine % a.drop_every == 0:
                    continue
                out.append(line + b"\n")
                if a.close_after and mine >= a.close_after:
                    conn.sendall(b"".join(out))
                    conn.shutdown(socket.SHUT_RDWR)
                    return
            if out:
                conn.sendall(b"".join(out))


if a.socket == "tcp":
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(128)
    print("ready %d" % srv.getsockname()[1], flush=True)
else:
    if os.path.exists(a.socket):
        os.unlink(a.socket)
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(a.socket)
    srv.listen(128)
    print("ready", flush=True)
while True:
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
