#!/usr/bin/env python3
"""Parses a /metrics page (stdin) with the Prometheus project's own parsers: the
OpenMetrics parser (what yaks serves, strictly) and the classic text-format parser.
Prints one JSON object per sample: {"name", "labels", "value"}. Exits non-zero if either
parser refuses the page."""
import json
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics
from prometheus_client.parser import text_string_to_metric_families as classic

text = sys.stdin.read()
samples = []
for family in openmetrics(text):
    for sample in family.samples:
        samples.append({"name": sample.name, "labels": sample.labels, "value": sample.value})
# The classic parser must accept the page too (older scrapers, promtool-style checks).
for family in classic(text):
    list(family.samples)
for sample in samples:
    print(json.dumps(sample))
