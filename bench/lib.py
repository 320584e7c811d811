#!/usr/bin/env python3
"""Helpers for the bench/*.sh scripts: the demo file, reading `glint status`
and `glint events` JSON, and the final reports. Standard library only.

    python3 bench/lib.py COMMAND [ARGS...]

Every command prints its result on stdout and exits non-zero (with a message
on stderr) when it cannot do its job.
"""

import json
import os
import re
import socket
import statistics
import sys
import time


def die(msg):
    print(f"lib.py: {msg}", file=sys.stderr)
    sys.exit(1)


def load_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        die(f"cannot read {path}: {e}")


def events(path):
    """The events in a `glint events -f -o json` output file (one per line)."""
    out = []
    try:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line.startswith("{"):
                    try:
                        out.append(json.loads(line))
                    except ValueError:
                        pass  # a line being written
    except OSError:
        pass
    return out


def pct(values, q):
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    s = sorted(values)
    rank = max(1, -(-len(s) * q // 100))  # ceil
    return s[int(rank) - 1]


def fmt_ms(v):
    return "-" if v is None else f"{v:.0f}"


# ------------------------------------------------------------------ setup


def cmd_free_port():
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        print(s.getsockname()[1])


def cmd_write_demo(src, out, *settings):
    """Writes the hello demo adjusted by KEY=VALUE settings:
    binary (path of the built glint-hello), instances, port, greeting, healthy,
    strategy (a glint strategy expression), deadline, max_age, provider,
    start_timeout."""
    opts = dict(s.split("=", 1) for s in settings)
    with open(src) as f:
        text = f.read()

    def sub(pattern, repl, what, flags=0):
        nonlocal text
        new, n = re.subn(pattern, repl, text, count=1, flags=flags)
        if n != 1:
            die(f"{src} changed: cannot find {what} (pattern {pattern!r}); update bench/lib.py")
        text = new

    # Image sources are paths relative to the file's directory (absolute ones
    # are refused, `..` is allowed): point at the built binary from there.
    binary = os.path.relpath(opts["binary"], os.path.dirname(os.path.abspath(out)))
    sub(r'copy\s+"[^"]*"\s+to', lambda m: f'copy "{binary}" to', "the copy of the demo binary")
    # An image reads only inside its build context: the binary's directory.
    context = os.path.dirname(binary) or "."
    sub(r'context\s*=\s*"[^"]*"', lambda m: f'context = "{context}"', "the image's build context")
    sub(r"instances\s*=\s*\d+", lambda m: f"instances = {opts.get('instances', '3')}", "instances")
    env = [f'GREETING = "{opts.get("greeting", "hello")}"', f'HEALTHY = "{opts.get("healthy", "true")}"']
    sub(r"env\s*=\s*\{[^}]*\}", lambda m: "env = {\n    " + "\n    ".join(env) + "\n  }", "the env block")
    sub(r"listen\s*=\s*[0-9.]+:\d+", lambda m: f"listen  = 127.0.0.1:{opts['port']}", "the endpoint's listen")
    extra = []
    if opts.get("provider"):
        extra.append(f"provider  = {opts['provider']}")
    if opts.get("max_age"):
        extra.append(f"max_age   = {opts['max_age']}")
    rollout = []
    if opts.get("strategy"):
        rollout.append(f"strategy = {opts['strategy']}")
    if opts.get("deadline"):
        rollout.append(f"deadline = {opts['deadline']}")
    if rollout:
        extra.append("rollout {\n    " + "\n    ".join(rollout) + "\n  }")
    if extra:
        sub(r"(instances = \d+\n)", lambda m: m.group(1) + "".join(f"  {e}\n" for e in extra), "the service block")
    if opts.get("start_timeout"):
        sub(r"(health\s*\{\n)", lambda m: m.group(1) + f"    start_timeout = {opts['start_timeout']}\n", "the health block")
    with open(out, "w") as f:
        f.write(text)


# ------------------------------------------------------------------ status


def service(status, name):
    for s in status.get("services", []):
        if s.get("name") == name:
            return s
    return None


def cmd_converged(status_path, name, want):
    """Exit 0 when service NAME has exactly WANT instances, all running,
    healthy and of the current version, the conductor says it converged and
    every endpoint listens; otherwise print why and exit 1."""
    st = load_json(status_path)
    want = int(want)
    s = service(st, name)
    if s is None:
        print(f"no service {name} yet")
        sys.exit(1)
    inst = s.get("instances", [])
    good = [i for i in inst if i.get("state") == "running" and i.get("health") == "healthy" and i.get("current")]
    why = []
    if s.get("desired") != want:
        why.append(f"desired {s.get('desired')} (want {want})")
    if len(good) != want or len(inst) != want:
        why.append(f"{len(good)}/{want} healthy current, {len(inst)} live")
    if st.get("converged") is False:
        why.append("conductor converging")
    for e in st.get("endpoints", []):
        if e.get("listening") is False:
            why.append(f"endpoint {e.get('name')} not listening ({e.get('error')})")
    if why:
        print("; ".join(why))
        sys.exit(1)


def cmd_instances(status_path, name):
    """One line per live instance of NAME: id state health current handle."""
    s = service(load_json(status_path), name) or {}
    for i in s.get("instances", []):
        print(i["id"], i.get("state"), i.get("health"), i.get("current"), i.get("handle") or "-")


def cmd_pick_victim(status_path, name, run):
    """A healthy running instance of NAME to kill (a different one each run):
    prints `id handle`."""
    s = service(load_json(status_path), name) or {}
    ok = [i for i in s.get("instances", []) if i.get("state") == "running" and i.get("health") == "healthy" and i.get("handle")]
    if not ok:
        die(f"no healthy instance of {name} with a handle")
    ok.sort(key=lambda i: i["id"])
    v = ok[int(run) % len(ok)]
    print(v["id"], v["handle"])


def cmd_pid_of(handle):
    """The process id in a process-provider handle."""
    m = re.search(r"\d+", handle)
    if not m:
        die(f"no pid in handle {handle!r}")
    print(m.group(0))


# ------------------------------------------------------------------ events


def cmd_wait_replacement(events_path, victim, since_ms, exclude, timeout_s):
    """Waits until an instance not in EXCLUDE (comma-separated ids) is healthy
    after SINCE_MS; prints JSON {new, healthy_at, launched_at, exited_at}."""
    since = int(since_ms)
    old = set(x for x in exclude.split(",") if x)
    deadline = time.time() + float(timeout_s)
    while True:
        evs = [e for e in events(events_path) if e.get("at", 0) >= since - 5]
        exited = next((e for e in evs if e.get("instance") == victim and e["kind"] in ("instance.exited", "instance.vanished", "instance.unhealthy")), None)
        healthy = next((e for e in evs if e["kind"] == "instance.healthy" and e.get("instance") and e["instance"] not in old), None)
        if healthy:
            launched = next((e for e in evs if e["kind"] == "instance.launching" and e.get("instance") == healthy["instance"]), None)
            print(json.dumps({
                "new": healthy["instance"],
                "healthy_at": healthy["at"],
                "launched_at": launched and launched["at"],
                "exited_at": exited and exited["at"],
            }))
            return
        if time.time() > deadline:
            tail = "\n".join(f"  {e.get('at')} {e.get('kind')} {e.get('instance')} {e.get('message')}" for e in evs[-15:])
            die(f"no new healthy instance within {timeout_s}s of killing {victim}; events since the kill:\n{tail}")
        time.sleep(0.05)


def cmd_events_since(events_path, since_ms, *kinds):
    """Events of KINDS (all if none) at or after SINCE_MS, one line each."""
    for e in events(events_path):
        if e.get("at", 0) >= int(since_ms) and (not kinds or e["kind"] in kinds):
            print(e["at"], e["kind"], e.get("instance") or "-", e.get("message", ""))


# ------------------------------------------------------------------ reports


def failures_summary(load, indent="  ", limit=20):
    lines = []
    for reason, n in sorted(load["total"]["failure_reasons"].items(), key=lambda x: -x[1]):
        lines.append(f"{indent}{n:>7}  {reason}")
    for f in load["failures"][:limit]:
        lines.append(f"{indent}t={f['t_ms'] / 1000:8.3f}s at_ms={f['at_ms']} phase={f['phase']} {f['kind']}: {f['reason']}"
                     + (f" (instance {f['instance']})" if f.get("instance") else ""))
    if len(load["failures"]) > limit:
        lines.append(f"{indent}... {len(load['failures']) - limit} more in the failure log")
    return "\n".join(lines)


def group(load, name):
    for g in load.get("groups", []):
        if g["name"] == name:
            return g
    for p in load.get("phases", []):
        if p["name"] == name:
            return p
    return None


def cmd_replace_report(runs_path, load_path, provider, instances):
    """The replace benchmark's report from the runs file (one JSON per line)
    and the load generator's report."""
    load = load_json(load_path)
    runs = [json.loads(line) for line in open(runs_path) if line.strip()]
    if not runs:
        die("no runs recorded")
    seen = load.get("seen", {})
    rows = []
    for r in runs:
        t0 = r["killed_at"]
        first = seen.get(r["new"], {}).get("first_at_ms")
        row = {
            "run": r["run"],
            "victim": r["victim"],
            "new": r["new"],
            "detect_ms": r["exited_at"] - t0 if r.get("exited_at") else None,
            "launch_ms": r["launched_at"] - t0 if r.get("launched_at") else None,
            "healthy_ms": r["healthy_at"] - t0,
            # The endpoint's view: the first response from the new instance
            # that the load generator received.
            "serving_ms": first - t0 if first else None,
            "confirmed_ms": r["confirmed_at"] - t0 if r.get("confirmed_at") else None,
        }
        rows.append(row)
    print(f"{'RUN':>3} {'KILLED':<22} {'REPLACEMENT':<22} {'DETECT':>7} {'LAUNCH':>7} {'HEALTHY':>8} {'SERVING':>8}   (ms after kill -9)")
    for r in rows:
        print(f"{r['run']:>3} {r['victim']:<22} {r['new']:<22} {fmt_ms(r['detect_ms']):>7} {fmt_ms(r['launch_ms']):>7} "
              f"{fmt_ms(r['healthy_ms']):>8} {fmt_ms(r['serving_ms']):>8}")
    serving = [r["serving_ms"] if r["serving_ms"] is not None else r["healthy_ms"] for r in rows]
    missing = sum(1 for r in rows if r["serving_ms"] is None)
    healthy = [r["healthy_ms"] for r in rows]
    print()
    print(f"death -> replacement healthy (event):      median {statistics.median(healthy):.0f} ms  p90 {pct(healthy, 90)} ms  max {max(healthy)} ms")
    print(f"death -> replacement serving (first 2xx):  median {statistics.median(serving):.0f} ms  p90 {pct(serving, 90):.0f} ms  max {max(serving):.0f} ms"
          + (f"  ({missing} runs never seen by the load generator: healthy time used)" if missing else ""))
    t = load["total"]
    kill = group(load, "kill")
    print(f"load: {t['requests']} requests, {t['failed']} failed, {t['rps']:.0f} req/s, p50 {t['latency']['p50_ms']:.2f} ms, "
          f"p99 {t['latency']['p99_ms']:.2f} ms; while recovering: {kill['requests'] if kill else 0} requests, "
          f"{kill['failed'] if kill else 0} failed, p99 {kill['latency']['p99_ms'] if kill else 0:.2f} ms")
    if t["failed"]:
        print("failed requests:")
        print(failures_summary(load))
        # The spine's claim: no failed request that had not already reached
        # the killed instance. A failure names its instance only when a
        # response head arrived (a body cut short by the kill).
        victims = {r["victim"] for r in runs}
        logged = load["failures"]
        on_victim = [f for f in logged if f.get("instance") in victims]
        print(f"failures answered by a killed instance (the request had reached it): {len(on_victim)}; "
              f"others: {len(logged) - len(on_victim)}"
              + (f" (+{load['failures_dropped']} not logged)" if load["failures_dropped"] else ""))
    print(f"replace provider={provider} runs={len(rows)} instances={instances} median_ms={statistics.median(serving):.0f} "
          f"p90_ms={pct(serving, 90):.0f} max_ms={max(serving):.0f} failed={t['failed']}")


def cmd_rollout_report(runs_path, load_path, strategy, provider, failing, result_path):
    """The rollout benchmark's report; also writes the result file (JSON) that
    `--compare` reads."""
    load = load_json(load_path)
    runs = [json.loads(line) for line in open(runs_path) if line.strip()]
    if not runs:
        die("no runs recorded")
    failing = failing == "1"
    print(f"{'RUN':>3} {'VERSION':>7} {'CONVERGE_S':>10} {'APPLY':>6} {'OUTCOME':<14} {'REQUESTS':>9} {'FAILED':>7} {'P50_MS':>7} {'P99_MS':>7}   (during the rollout)")
    for r in runs:
        d = group(load, f"during/{r['run']}") or {"requests": 0, "failed": 0, "latency": {"p50_ms": 0, "p99_ms": 0}}
        r["requests"], r["failed"] = d["requests"], d["failed"]
        print(f"{r['run']:>3} {r.get('version') or '-':>7} {r['converge_s']:>10.1f} {'ok' if r['apply_rc'] == 0 else 'rc=' + str(r['apply_rc']):>6} "
              f"{r['outcome']:<14} {d['requests']:>9} {d['failed']:>7} {d['latency']['p50_ms']:>7.2f} {d['latency']['p99_ms']:>7.2f}")
    before, during, after = group(load, "before"), group(load, "during"), group(load, "after")
    print()
    print(f"{'PHASE':<8} {'REQUESTS':>9} {'FAILED':>7} {'RPS':>7} {'P50_MS':>7} {'P90_MS':>7} {'P99_MS':>7} {'MAX_MS':>8}")
    for name, p in (("before", before), ("during", during), ("after", after), ("total", load["total"])):
        if p:
            l = p["latency"]
            print(f"{name:<8} {p['requests']:>9} {p['failed']:>7} {p['rps']:>7.0f} {l['p50_ms']:>7.2f} {l['p90_ms']:>7.2f} {l['p99_ms']:>7.2f} {l['max_ms']:>8.2f}")
    t = load["total"]
    if t["failed"]:
        print("failed requests:")
        print(failures_summary(load))
    conv = [r["converge_s"] for r in runs]
    expected = "rolled_back" if failing else "live"
    good = sum(1 for r in runs if r["outcome"] == expected)
    zero = sum(1 for r in runs if r["failed"] == 0)
    print()
    print(f"runs {'rolled back automatically' if failing else 'converged'}: {good}/{len(runs)}; runs with zero failed requests: {zero}/{len(runs)}")
    result = {
        "system": "glint",
        "label": f"glint {strategy}/{provider}" + (" (failing)" if failing else ""),
        "strategy": strategy,
        "provider": provider,
        "failing": failing,
        "runs": runs,
        "converge_s_median": statistics.median(conv),
        "converge_s_max": max(conv),
        "outcomes_ok": f"{good}/{len(runs)}",
        "total": t["requests"],
        "failed": t["failed"],
        "p50_ms_before": before["latency"]["p50_ms"] if before else None,
        "p99_ms_before": before["latency"]["p99_ms"] if before else None,
        "p50_ms_during": during["latency"]["p50_ms"] if during else None,
        "p99_ms_during": during["latency"]["p99_ms"] if during else None,
    }
    if result_path:
        with open(result_path, "w") as f:
            json.dump(result, f, indent=2)
    print(f"rollout strategy={strategy} provider={provider}{' failing=1 rolled_back=' + result['outcomes_ok'] if failing else ''} "
          f"converge_s={result['converge_s_median']:.1f} total={t['requests']} failed={t['failed']} "
          f"p99_ms={result['p99_ms_during'] or 0:.1f}")


def cmd_compare(a_path, b_path):
    """Two result files side by side (e.g. Glint and Docker Swarm)."""
    a, b = load_json(a_path), load_json(b_path)
    rows = [
        ("", "label"),
        ("runs", lambda r: len(r.get("runs", []))),
        ("outcomes ok", "outcomes_ok"),
        ("converge s (median)", "converge_s_median"),
        ("converge s (max)", "converge_s_max"),
        ("requests", "total"),
        ("failed requests", "failed"),
        ("p50 ms before", "p50_ms_before"),
        ("p99 ms before", "p99_ms_before"),
        ("p50 ms during", "p50_ms_during"),
        ("p99 ms during", "p99_ms_during"),
    ]

    def val(r, key):
        v = key(r) if callable(key) else r.get(key)
        if isinstance(v, float):
            return f"{v:.1f}" if abs(v) >= 10 else f"{v:.2f}"
        return "-" if v is None else str(v)

    width = max(len(val(a, "label")), len(val(b, "label")), 12) + 2
    for title, key in rows:
        print(f"{title:<20} {val(a, key):>{width}} {val(b, key):>{width}}")


def cmd_soak_report(events_path, load_path, since_ms, instances, max_age, minutes, provider):
    """The soak's report: replacements seen in the event log and by the load."""
    load = load_json(load_path)
    since = int(since_ms)
    evs = [e for e in events(events_path) if e.get("at", 0) >= since]
    # `instance.launching` (decided) and `instance.launched` (running).
    launched = sorted({e["instance"] for e in evs if e["kind"] == "instance.launched" and e.get("instance")})
    healthy = [e for e in evs if e["kind"] == "instance.healthy"]
    retiring = [e for e in evs if e["kind"] == "instance.retiring"]
    terminated = [e for e in evs if e["kind"] == "instance.terminated"]
    exited = [e for e in evs if e["kind"] in ("instance.exited", "instance.vanished")]
    rollouts = [e for e in evs if e["kind"].startswith("rollout.")]
    aged = [e for e in retiring if "max_age" in e.get("message", "")]
    # The instances live when the load started: were they all replaced?
    everything = events(events_path)
    before = {e["instance"] for e in everything if e.get("at", 0) < since and e["kind"] == "instance.healthy"}
    gone_before = {e["instance"] for e in everything if e.get("at", 0) < since and e["kind"] == "instance.terminated"}
    initial = before - gone_before
    retired_ids = {e.get("instance") for e in retiring}
    t = load["total"]
    # Lifetimes (as the endpoint saw them) of instances that both started
    # and stopped serving during the soak.
    seen = load.get("seen", {})
    end_ms = load["started_at_ms"] + load["duration_s"] * 1000
    lifetimes = [(v["last_at_ms"] - v["first_at_ms"]) / 1000 for v in seen.values()
                 if v["first_t_ms"] > 1000 and v["last_at_ms"] < end_ms - 2000]
    print(f"soak: {minutes} min, {instances} instances, max_age {max_age}")
    print(f"events since the load started: {len(launched)} launched, {len(healthy)} healthy, {len(retiring)} retiring, "
          f"{len(terminated)} terminated, {len(exited)} exited/vanished, {len(rollouts)} rollout events")
    print(f"retired for reaching max_age: {len(aged)}; instances live at the start that were replaced: "
          f"{len(initial & retired_ids)}/{len(initial)}")
    print(f"instances that answered requests: {t['distinct_instances']} "
          f"({t['distinct_instances'] / int(instances):.1f} generations of {instances})")
    if lifetimes:
        print(f"serving lifetime of fully observed instances: median {statistics.median(lifetimes):.1f}s, "
              f"min {min(lifetimes):.1f}s, max {max(lifetimes):.1f}s ({len(lifetimes)} instances)")
    print(f"load: {t['requests']} requests, {t['failed']} failed, {t['rps']:.0f} req/s, "
          f"p50 {t['latency']['p50_ms']:.2f} ms, p99 {t['latency']['p99_ms']:.2f} ms, max {t['latency']['max_ms']:.2f} ms")
    if t["failed"]:
        print("failed requests:")
        print(failures_summary(load))
    print(f"soak provider={provider} minutes={minutes} instances={instances} max_age={max_age} "
          f"launched={len(launched)} retired_max_age={len(aged)} distinct_serving={t['distinct_instances']} "
          f"total={t['requests']} failed={t['failed']}")


def cmd_swarm_result(out, *logs):
    """A result file (for `compare`) from bench/swarm.sh outputs, one per run.
    swarm.sh ends with `... converged in X s; requests ok=N failed=M`; its load
    is one busybox wget after another inside the swarm network, so it has no
    latency figures and far fewer requests than glint-load."""
    runs = []
    for i, path in enumerate(logs, 1):
        try:
            text = open(path).read()
        except OSError as e:
            die(f"cannot read {path}: {e}")
        m = re.search(r"rollout of (\d+) replicas: converged in ([0-9.]+) s; requests ok=(\d+) failed=(\d+)", text)
        if m:
            runs.append({"run": i, "replicas": int(m.group(1)), "converge_s": float(m.group(2)),
                         "ok": int(m.group(3)), "failed": int(m.group(4)), "outcome": "live"})
        else:
            runs.append({"run": i, "outcome": "error", "log": text[-500:]})
    done = [r for r in runs if r["outcome"] == "live"]
    conv = [r["converge_s"] for r in done]
    result = {
        "system": "swarm",
        "label": "swarm start-first (wget loop)",
        "runs": runs,
        "outcomes_ok": f"{len(done)}/{len(runs)}",
        "converge_s_median": statistics.median(conv) if conv else None,
        "converge_s_max": max(conv) if conv else None,
        "total": sum(r["ok"] + r["failed"] for r in done),
        "failed": sum(r["failed"] for r in done),
    }
    with open(out, "w") as f:
        json.dump(result, f, indent=2)


# ------------------------------------------------------------------ data plane


def gnu_build_id(data):
    """The GNU build-id note of a 64-bit little-endian ELF image (bytes), or
    None: the program headers' PT_NOTE segments are searched for a note named
    GNU of type NT_GNU_BUILD_ID (3)."""
    import struct
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return None
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    for i in range(phnum):
        ph = phoff + i * phentsize
        kind, = struct.unpack_from("<I", data, ph)
        if kind != 4:  # PT_NOTE
            continue
        off, = struct.unpack_from("<Q", data, ph + 0x08)
        size, = struct.unpack_from("<Q", data, ph + 0x20)
        at, end = off, off + size
        while at + 12 <= end:
            namesz, descsz, ntype = struct.unpack_from("<III", data, at)
            name_at = at + 12
            desc_at = name_at + (namesz + 3) // 4 * 4
            if ntype == 3 and data[name_at:name_at + namesz] == b"GNU\0":
                return data[desc_at:desc_at + descsz]
            at = desc_at + (descsz + 3) // 4 * 4
    return None


def cmd_rebuilt_copy(src, dst):
    """Writes a copy of the glint binary SRC to DST whose GNU build id differs
    (one byte flipped): the same code, which Glint takes for another build,
    so a conductor started from DST replaces the running data plane through
    the handoff. Prints the new build id."""
    with open(src, "rb") as f:
        data = bytearray(f.read())
    bid = gnu_build_id(data)
    if not bid:
        die(f"{src} has no GNU build-id note")
    at = data.find(bid)
    if at < 0 or data.find(bid, at + 1) >= 0:
        die(f"the build id of {src} is not found exactly once")
    data[at] ^= 0x5A
    tmp = dst + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o755)
    os.replace(tmp, dst)
    print(gnu_build_id(data).hex())


def cmd_data_plane(status_path):
    """`pid build` of the data plane in a `glint status -o json` file (`- -`
    when none runs)."""
    d = load_json(status_path).get("data_plane") or {}
    print(d.get("pid") or "-", d.get("build") or "-")


def cmd_restart_report(runs_path, load_path):
    """The conductor-restart benchmark's report: per case, the requests sent
    and failed from the moment the conductor was stopped until the new one
    had converged again (plus the settle time)."""
    load = load_json(load_path)
    runs = [json.loads(line) for line in open(runs_path) if line.strip()]
    if not runs:
        die("no runs recorded")
    print(f"{'CASE':<14} {'RUN':>3} {'DOWN_S':>7} {'BACK_S':>7} {'REQUESTS':>9} {'FAILED':>7} {'P99_MS':>8} {'MAX_MS':>8}  DATA PLANE")
    cases = {}
    for r in runs:
        p = group(load, f"{r['case']}/{r['run']}") or {"requests": 0, "failed": 0, "latency": {"p99_ms": 0, "max_ms": 0}}
        c = cases.setdefault(r["case"], {"requests": 0, "failed": 0, "runs": 0, "dp_ok": 0})
        c["requests"] += p["requests"]
        c["failed"] += p["failed"]
        c["runs"] += 1
        c["dp_ok"] += 1 if r["data_plane_ok"] else 0
        print(f"{r['case']:<14} {r['run']:>3} {r['down_s']:>7.1f} {r['back_s']:>7.1f} {p['requests']:>9} {p['failed']:>7} "
              f"{p['latency']['p99_ms']:>8.2f} {p['latency']['max_ms']:>8.2f}  {r['data_plane']}")
    t = load["total"]
    print()
    print(f"whole run: {t['requests']} requests, {t['failed']} failed, {t['rps']:.0f} req/s, "
          f"p50 {t['latency']['p50_ms']:.2f} ms, p99 {t['latency']['p99_ms']:.2f} ms; "
          f"{load.get('resent_unsent', 0)} resent unsent (a closed keep-alive connection, never seen by the server)")
    if t["failed"]:
        print("failed requests:")
        print(failures_summary(load))
    print()
    for name, c in cases.items():
        print(f"restart case={name} runs={c['runs']} requests={c['requests']} failed={c['failed']} "
              f"data_plane_as_expected={c['dp_ok']}/{c['runs']}")
    print(f"restart total={t['requests']} failed={t['failed']}")


COMMANDS = {
    "rebuilt-copy": cmd_rebuilt_copy,
    "data-plane": cmd_data_plane,
    "restart-report": cmd_restart_report,
    "swarm-result": cmd_swarm_result,
    "free-port": cmd_free_port,
    "write-demo": cmd_write_demo,
    "converged": cmd_converged,
    "instances": cmd_instances,
    "pick-victim": cmd_pick_victim,
    "pid-of": cmd_pid_of,
    "wait-replacement": cmd_wait_replacement,
    "events-since": cmd_events_since,
    "replace-report": cmd_replace_report,
    "rollout-report": cmd_rollout_report,
    "compare": cmd_compare,
    "soak-report": cmd_soak_report,
}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        die(f"usage: lib.py {{{'|'.join(COMMANDS)}}} ARGS...")
    try:
        COMMANDS[sys.argv[1]](*sys.argv[2:])
    except TypeError as e:
        die(f"{sys.argv[1]}: {e}")
