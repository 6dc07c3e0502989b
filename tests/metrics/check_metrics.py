#!/usr/bin/python3
"""Checks shmprov's Prometheus metrics (text exposition format 0.0.4) against
what `shmprov status --output json` (and `plan --output json`) say in the
same namespace, by the contract's names and labels.

Usage: check_metrics.py NAME EXPOSITION STATUS_JSON [options]
  --plan PLAN_JSON        also check value="derived" against plan's keys[].derived
  --last-apply RESULT     the one shmprov_last_apply series must be result=RESULT
  --applied-after T       shmprov_last_apply_timestamp_seconds must be in [T, now]
  --in-sync K,CHECK=V     shmprov_in_sync{key=K,check=CHECK} must be V (repeatable)
  --same-as EXPOSITION2   only: the two hold the same shmprov series and values

Prints one "PASS NAME: what" or "FAIL NAME: what: why" line per check
(run.sh counts them) and exits 0 even when a check fails; a file that cannot
be read or parsed is one FAIL line.
"""
import argparse
import json
import math
import re
import sys
import time

# The contract's metric names (/tmp/v2/metrics.md, README "Monitoring").
NAMES = {
    "shmprov_limit_bytes", "shmprov_limit_pages", "shmprov_limit_segments",
    "shmprov_in_sync", "shmprov_segments", "shmprov_segments_bytes",
    "shmprov_segments_pages", "shmprov_largest_segment_bytes",
    "shmprov_headroom_bytes", "shmprov_shmall_bytes",
    "shmprov_orphan_candidates", "shmprov_probe_leftovers",
    "shmprov_last_apply", "shmprov_last_apply_timestamp_seconds",
    "shmprov_last_apply_duration_seconds",
    "shmprov_last_successful_apply_timestamp_seconds",
    "shmprov_last_probe_passed", "shmprov_reports_waiting",
    "shmprov_reports_dropped", "shmprov_reports_quarantined",
    "shmprov_reports_rejected", "shmprov_info",
}
LIMIT_METRIC = {
    "kernel.shmmax": "shmprov_limit_bytes",
    "kernel.shmall": "shmprov_limit_pages",
    "kernel.shmmni": "shmprov_limit_segments",
}
LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+-?\d+)?$')
LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(,|$)')


def unescape(v):
    return re.sub(r'\\(.)', lambda m: {"n": "\n", "\\": "\\", '"': '"'}.get(m.group(1), m.group(0)), v)


def parse(path):
    """-> (samples: list of (name, labels dict, float), help: {name}, type: {name: t})"""
    samples, helps, types = [], set(), {}
    for n, line in enumerate(open(path, encoding="utf-8"), 1):
        line = line.rstrip("\n")
        if not line.strip():
            continue
        if line.startswith("#"):
            f = line.split(None, 3)
            if len(f) >= 3 and f[1] == "HELP":
                helps.add(f[2])
            elif len(f) >= 4 and f[1] == "TYPE":
                types[f[2]] = f[3].strip()
            continue
        m = LINE.match(line)
        if not m:
            raise ValueError("%s:%d: not a sample line: %r" % (path, n, line))
        labels, rest = {}, m.group(3) or ""
        while rest.strip():
            lm = LABEL.match(rest)
            if not lm:
                raise ValueError("%s:%d: bad labels: %r" % (path, n, line))
            labels[lm.group(1)] = unescape(lm.group(2))
            rest = rest[lm.end():]
        samples.append((m.group(1), labels, float(m.group(4))))
    return samples, helps, types


def jnum(obj, name):
    """A JSON number of the contract: null + "<name>_decimal" above 2^53-1."""
    v = obj.get(name)
    if v is None and obj.get(name + "_decimal") is not None:
        return float(int(obj[name + "_decimal"]))
    return None if v is None else float(v)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("name")
    ap.add_argument("exposition")
    ap.add_argument("status")
    ap.add_argument("--plan")
    ap.add_argument("--last-apply")
    ap.add_argument("--applied-after", type=float)
    ap.add_argument("--in-sync", action="append", default=[])
    ap.add_argument("--same-as")
    a = ap.parse_args()
    tag = a.name

    def check(what, cond, detail=""):
        print(("PASS " if cond else "FAIL ") + tag + ": " + what + ("" if cond else ": " + str(detail)), flush=True)

    try:
        samples, helps, types = parse(a.exposition)
        st = json.load(open(a.status))
        plan = json.load(open(a.plan)) if a.plan else None
    except Exception as e:  # one FAIL, never a traceback alone
        check("the exposition and the JSON documents parse", False, e)
        return
    ours = [s for s in samples if s[0].startswith("shmprov_")]
    if a.same_as:
        try:
            other = [s for s in parse(a.same_as)[0] if s[0].startswith("shmprov_")]
        except Exception as e:
            check("%s parses" % a.same_as, False, e)
            return
        key = lambda s: (s[0], tuple(sorted(s[1].items())), s[2])
        x, y = {key(s) for s in ours}, {key(s) for s in other}
        check("%d series, the same names, labels and values" % len(x), x == y and len(x) == len(ours) > 0,
              "only in the first: %s; only in the second: %s" % (sorted(x - y), sorted(y - x)))
        return

    def series(name, **want):
        return [s for s in ours if s[0] == name and all(s[1].get(k) == v for k, v in want.items())]

    def one(what, name, expect, **want):
        got = series(name, **want)
        sel = name + "{" + ",".join('%s="%s"' % kv for kv in want.items()) + "}"
        if expect is None:
            check("%s: %s absent" % (what, sel), not got, got)
            return
        check("%s: %s == %r" % (what, sel, expect),
              len(got) == 1 and got[0][2] == float(expect),
              "got %s" % ([(s[1], s[2]) for s in got] or "nothing"))

    # ---- the exposition itself
    fams = {s[0] for s in ours}
    check("shmprov series present", len(ours) > 0, "no shmprov_ series")
    check("only the contract's metric names", fams <= NAMES, sorted(fams - NAMES))
    check("every shmprov family has # HELP and # TYPE gauge",
          all(f in helps and types.get(f) == "gauge" for f in fams),
          sorted(f for f in fams if f not in helps or types.get(f) != "gauge"))
    seen, dups = set(), []
    for s in ours:
        k = (s[0], tuple(sorted(s[1].items())))
        if k in seen:
            dups.append(k)
        seen.add(k)
    check("no duplicate series", not dups, dups)
    bad_labels = sorted({l for s in ours for l in s[1]} - {"key", "value", "check", "limited_by", "result",
                                                           "version", "profile_sha256", "tier", "workload",
                                                           "policy", "page_size"})
    check("labels are the contract's (no ids, pids, paths, hostnames)", not bad_labels, bad_labels)
    check("no NaN or Inf", all(math.isfinite(s[2]) for s in ours),
          [s for s in ours if not math.isfinite(s[2])])

    # ---- limits, against status
    page = st["host"]["page_size"]
    for key, metric in LIMIT_METRIC.items():
        lim = st["limits"][key]
        one("limit " + key + " running", metric, jnum(lim, "value"), key=key, value="running")
        prof = lim.get("profile") or {}
        managed = bool(prof.get("managed"))
        one("limit " + key + " profile", metric, jnum(prof, "wants") if managed else None, key=key, value="profile")
        if managed:
            want = 1 if prof.get("matches") else 0
            one("in sync " + key + " runtime (status: matches=%s)" % prof.get("matches"), "shmprov_in_sync",
                want, key=key, check="runtime")
            for c in ("dropin", "boot"):
                check("in sync %s %s present, 0 or 1" % (key, c),
                      len(series("shmprov_in_sync", key=key, check=c)) == 1
                      and series("shmprov_in_sync", key=key, check=c)[0][2] in (0.0, 1.0),
                      series("shmprov_in_sync", key=key, check=c))
        else:
            check("in sync " + key + ": absent (not managed)", not series("shmprov_in_sync", key=key),
                  series("shmprov_in_sync", key=key))
            one("limit " + key + " derived", metric, None, key=key, value="derived")
    if plan is not None:
        for k in plan["keys"]:
            one("limit %s derived (plan)" % k["key"], LIMIT_METRIC[k["key"]], jnum(k, "derived"),
                key=k["key"], value="derived")
    shmall = jnum(st["limits"]["kernel.shmall"], "value")
    one("shmall in bytes", "shmprov_shmall_bytes", None if shmall is None else shmall * page)
    for spec in a.in_sync:
        kc, v = spec.split("=")
        k, c = kc.split(",")
        one("in sync %s %s (expected)" % (k, c), "shmprov_in_sync", int(v), key=k, check=c)

    # ---- usage and headroom, against status
    u = st["usage"]
    one("usage segments", "shmprov_segments", u["segments"])
    one("usage bytes", "shmprov_segments_bytes", jnum(u, "bytes"))
    one("usage pages", "shmprov_segments_pages", jnum(u, "pages"))
    one("usage largest segment", "shmprov_largest_segment_bytes", jnum(u, "largest_segment"))
    h = st["headroom"]
    hs = series("shmprov_headroom_bytes")
    check("headroom: one series, limited_by=%s, %s bytes" % (h["limited_by"], jnum(h, "bytes")),
          len(hs) == 1 and hs[0][1] == {"limited_by": h["limited_by"]} and hs[0][2] == jnum(h, "bytes"),
          [(s[1], s[2]) for s in hs])
    # Not the keys of segments.persistent_keys (metrics-changes.md 1: nothing
    # clears them), which status's orphan_candidates does count.
    segs = st["segments"]
    one("orphan candidates, persistent keys left out (status: %d)" % st["orphan_candidates"],
        "shmprov_orphan_candidates", sum(1 for g in segs if g["orphan_candidate"] and not g["persistent"]))
    one("probe leftovers", "shmprov_probe_leftovers", len(st["probe_leftovers"]))

    # ---- info
    info = series("shmprov_info")
    p = st["profile"]
    want = {"version": st["agent_version"], "profile_sha256": p["sha256"], "tier": p["tier"],
            "workload": p["workload"], "policy": p["policy"], "page_size": str(page)}
    check("info %s" % want, len(info) == 1 and info[0][1] == want and info[0][2] == 1.0,
          [(s[1], s[2]) for s in info])

    # ---- last apply (the state file)
    if a.last_apply:
        la = series("shmprov_last_apply")
        check("last apply: one series, result=%s, 1" % a.last_apply,
              len(la) == 1 and la[0][1] == {"result": a.last_apply} and la[0][2] == 1.0,
              [(s[1], s[2]) for s in la])
    if a.applied_after is not None:
        ts = series("shmprov_last_apply_timestamp_seconds")
        now = time.time()
        check("last apply time in [%d, now]" % a.applied_after,
              len(ts) == 1 and a.applied_after - 1 <= ts[0][2] <= now + 1, [s[2] for s in ts])
        if a.last_apply in ("changed", "unchanged"):
            ok = series("shmprov_last_successful_apply_timestamp_seconds")
            check("last successful apply time == last apply time",
                  len(ok) == 1 and len(ts) == 1 and ok[0][2] == ts[0][2], [s[2] for s in ok])
        d = series("shmprov_last_apply_duration_seconds")
        check("last apply duration in [0, 60] s", len(d) == 1 and 0 <= d[0][2] <= 60, [s[2] for s in d])
    # Without report.url there is no spool: not known, left out.
    for name in ("shmprov_reports_waiting", "shmprov_reports_dropped", "shmprov_reports_quarantined",
                 "shmprov_reports_rejected"):
        one("no report.url", name, None)


if __name__ == "__main__":
    main()
