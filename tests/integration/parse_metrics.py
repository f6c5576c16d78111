#!/usr/bin/python3
"""Parses a Prometheus text exposition with the reference parser (Debian's python3-prometheus-client)
and prints what it found as JSON, for tests/integration/test_metrics.cpp:
  {"families": [{"name", "type", "documentation", "samples": [{"name", "labels", "value"}]}]}
Usage: parse_metrics.py METRICS_FILE OUTPUT_JSON. Exits 1 (with the parser's error) if it fails."""
import json
import math
import sys

from prometheus_client.parser import text_string_to_metric_families


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        text = f.read()
    families = []
    for fam in text_string_to_metric_families(text):
        families.append({
            "name": fam.name,
            "type": fam.type,
            "documentation": fam.documentation,
            "samples": [{"name": s.name, "labels": s.labels,
                         "value": s.value if math.isfinite(s.value) else str(s.value)}
                        for s in fam.samples],
        })
    with open(sys.argv[2], "w", encoding="utf-8") as f:
        json.dump({"families": families}, f)


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # the parser's complaint is the test's failure message
        print(f"parse_metrics.py: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
