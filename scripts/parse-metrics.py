#!/usr/bin/env python3
"""Parses an OpenMetrics text exposition (a service's /metrics) from standard
input with the Prometheus Python client's strict parser, and prints its
families as JSON: [{"name", "type", "help", "samples": [{"name", "labels", "value"}]}].
Exits non-zero, with the parser's error, on text Prometheus would refuse."""
import json
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families

families = [
    {
        "name": family.name,
        "type": family.type,
        "help": family.documentation,
        "samples": [{"name": s.name, "labels": s.labels, "value": s.value} for s in family.samples],
    }
    for family in text_string_to_metric_families(sys.stdin.read())
]
json.dump(families, sys.stdout)
