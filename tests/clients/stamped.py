"""Sends stamped events for the latency report test.

usage: stamped.py SOCKET STAMPED UNSTAMPED LATE_MS FIELD

Writes STAMPED events carrying FIELD = time.monotonic_ns() at the moment of writing, of which
the first 10 are stamped LATE_MS milliseconds in the past (so the report's maximum must be at
least LATE_MS), then UNSTAMPED events without the field. Prints {"sent": n} when done.
"""
import json
import socket
import sys
import time

path, stamped, unstamped, late_ms, field = sys.argv[1:6]
stamped, unstamped, late_ms = int(stamped), int(unstamped), int(late_ms)
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(path)
sent = 0
for i in range(stamped):
    now = time.monotonic_ns()
    if i < 10:
        now -= late_ms * 1_000_000
    s.sendall(b'{"%s":%d,"i":%d,"msg":"stamped"}\n' % (field.encode(), now, i))
    sent += 1
    if i % 100 == 0:
        time.sleep(0.001)
for i in range(unstamped):
    s.sendall(b'{"i":%d,"msg":"no stamp"}\n' % i)
    sent += 1
s.close()
print(json.dumps({"sent": sent}), flush=True)
