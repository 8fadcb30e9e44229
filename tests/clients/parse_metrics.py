#!/usr/bin/env python3
"""Parse an OpenMetrics / Prometheus text exposition (stdin) with Prometheus' own Python parser
(prometheus_client) and print {"families": {name: type}, "samples": [[name, labels, value]]}.
Exits 1, with the parser's message, if the text does not parse."""
import json
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families


def main():
    text = sys.stdin.read()
    try:
        families = list(text_string_to_metric_families(text))
    except Exception as e:  # noqa: BLE001 - the parser's verdict is the result
        print(json.dumps({"error": f"{type(e).__name__}: {e}"}))
        return 1
    out = {"families": {f.name: f.type for f in families}, "samples": []}
    for f in families:
        for s in f.samples:
            out["samples"].append([s.name, s.labels, s.value])
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
