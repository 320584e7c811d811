#!/usr/bin/python3
"""Parses a /metrics document with the Prometheus text-format parser
(prometheus_client) and compares its figures with `glint status -o json`.

    check_metrics.py METRICS_FILE STATUS_JSON_FILE MIN_LAUNCHES MIN_CONVERGED

Exits non-zero, saying which figure differs, when the document does not
parse or a figure does not match.
"""

import json
import sys

from prometheus_client.parser import text_string_to_metric_families


def fail(msg):
    print(f"check_metrics: {msg}", file=sys.stderr)
    sys.exit(1)


def main():
    metrics_path, status_path, min_launches, min_converged = sys.argv[1:5]
    text = open(metrics_path).read()
    status = json.load(open(status_path))
    samples = {}
    families = set()
    try:
        for fam in text_string_to_metric_families(text):
            families.add(fam.name)
            for s in fam.samples:
                key = (s.name, tuple(sorted(s.labels.items())))
                if key in samples:
                    fail(f"sample {key} appears twice")
                samples[key] = s.value
    except Exception as e:  # the parser raises ValueError and friends
        fail(f"the document does not parse: {e}")

    def value(name, **labels):
        return samples.get((name, tuple(sorted(labels.items()))), 0.0)

    for needed in [
        "glint_instances", "glint_service_desired_instances", "glint_service_healthy_instances",
        "glint_launches", "glint_retirements", "glint_replacement_seconds", "glint_rollouts",
        "glint_rollout_duration_seconds",
        "glint_endpoint_requests", "glint_endpoint_request_duration_seconds",
        "glint_endpoint_in_flight_requests", "glint_conductor_pass_seconds",
        "glint_store_write_duration_seconds",
    ]:
        # A family nothing has happened to yet has no samples, so the parser
        # does not list it: its TYPE line must be there all the same.
        if needed not in families and f"# TYPE {needed} " not in text:
            fail(f"family {needed} is missing; families: {sorted(families)}")
    # Drift and incidents have samples only once one happened (the harness
    # test in glint-conductor covers them).
    for key in samples:
        if any(k in ("instance", "id") for k, _ in key[1]):
            fail(f"an instance id as a label: {key}")

    for svc in status["services"]:
        name = svc["name"]
        want = svc["desired"]
        got = value("glint_service_desired_instances", service=name)
        if got != want:
            fail(f"{name}: desired {got} in /metrics, {want} in glint status")
        healthy = svc["healthy"]
        got = value("glint_service_healthy_instances", service=name)
        if got != healthy:
            fail(f"{name}: healthy {got} in /metrics, {healthy} in glint status")
        by_health = {}
        for i in svc["instances"]:
            by_health[i["health"]] = by_health.get(i["health"], 0) + 1
        got = value("glint_instances", service=name, state="running", health="healthy")
        if got != by_health.get("healthy", 0):
            fail(f"{name}: {got} running healthy instances in /metrics, {by_health} in glint status")
        launches = sum(v for (n, l), v in samples.items() if n == "glint_launches_total" and ("service", name) in l)
        if launches < float(min_launches):
            fail(f"{name}: {launches} launches counted, at least {min_launches} happened")
        replaced = value("glint_replacement_seconds_count", service=name)
        if replaced < 1:
            fail(f"{name}: no death-to-replacement time observed after a kill")
    converged = value("glint_rollouts_total", outcome="converged")
    if converged < float(min_converged):
        fail(f"{converged} converged rollouts counted, at least {min_converged} happened")
    for ep in status["endpoints"]:
        got = sum(v for (n, l), v in samples.items()
                  if n == "glint_endpoint_requests_total" and ("endpoint", ep["name"]) in l)
        if ep["requests"] is not None and got < ep["requests"] - 2:
            fail(f"endpoint {ep['name']}: {got} answered requests in /metrics, {ep['requests']} in glint status")
    print(f"{len(families)} families, {len(samples)} samples: parsed, and they match glint status")


main()
