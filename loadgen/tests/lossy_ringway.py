"""A ringway that loses one event: runs the real gateway (the first argument) with the remaining
arguments, forwards SIGTERM to it, and reports its summary line with events_out one short.
Used to prove that `loadgen compare` notices loss."""
import re
import signal
import subprocess
import sys

child = subprocess.Popen(sys.argv[1:], stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
signal.signal(signal.SIGTERM, lambda *_: child.send_signal(signal.SIGTERM))
stderr = child.stderr.read().decode()
code = child.wait()


def one_short(m):
    return "events_out=%d" % max(int(m.group(1)) - 1, 0)


sys.stderr.write(re.sub(r"events_out=(\d+)", one_short, stderr))
sys.exit(code)
