#!/usr/bin/python3
"""Checks what tests/platforms/guest.sh printed on an emulated guest's
serial console (tests/platforms/run.sh), and prints every value it checked.

The expected limits come from the README's sizing table, in the column of
the guest's page size; the report's field paths are compared with the same
run of the native x86-64 build (native.sh). Ends with "N passed, N failed";
exits 1 on any failure."""
import argparse
import hashlib
import os
import json
import re
import sys

import jsonschema

passed = failed = 0


def check(name, ok, got=None):
    global passed, failed
    shown = "" if got is None else f": {got}"
    if ok:
        passed += 1
        print(f"ok:   {name}{shown}")
    else:
        failed += 1
        print(f"FAIL: {name}{shown}")
    return ok


def sections(text):
    """{name: (rc, text)} from the ==BEGIN NAME rc=N== ... ==END NAME== blocks;
    a name seen twice (the spooled events) keeps a list under NAME+"*"."""
    found = {}
    # Not anchored: the kernel may still be printing its banner when the
    # first marker comes.
    pattern = r"==BEGIN (\S+) rc=(\d+)==\n(.*?)^==END \1==$"
    for m in re.finditer(pattern, text, re.S | re.M):
        found.setdefault(m.group(1) + "*", []).append((int(m.group(2)), m.group(3)))
        found[m.group(1)] = (int(m.group(2)), m.group(3))
    return found


def strict_json(text):
    """json.loads that refuses NaN, Infinity and duplicate keys."""
    def no_constant(c):
        raise ValueError(f"not JSON: {c}")

    def no_duplicates(pairs):
        keys = [k for k, _ in pairs]
        if len(keys) != len(set(keys)):
            raise ValueError(f"duplicate keys in {keys}")
        return dict(pairs)
    return json.loads(text, parse_constant=no_constant, object_pairs_hook=no_duplicates)


def field_paths(value, prefix="", empty=None):
    """Every path in a JSON document, array elements as []; the paths of the
    arrays that are empty go into the set empty, when given."""
    paths = {prefix or "."}
    if isinstance(value, dict):
        for k, v in value.items():
            paths |= field_paths(v, f"{prefix}.{k}", empty)
    elif isinstance(value, list):
        if not value and empty is not None:
            empty.add(prefix)
        for v in value:
            paths |= field_paths(v, f"{prefix}[]", empty)
    return paths


def path_difference(a, b):
    """Paths of document a missing in document b, but for the elements of an
    array that is empty in b (a warning the guest's 1 GiB of RAM earns is
    not a difference of fields)."""
    empty_b = set()
    pa, pb = field_paths(a), field_paths(b, empty=empty_b)
    return sorted(p for p in pa - pb if not any(p.startswith(e + "[]") for e in empty_b))


def readme_table(readme, page_size):
    """{tier: (shmmax, shmall)} from the README's sizing table, the shmall
    column of this page size."""
    column = {4096: 3, 65536: 4}[page_size]
    rows = {}
    for line in open(readme, encoding="utf-8"):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0] in ("small", "medium", "large"):
            rows[cells[0]] = (int(cells[2].split()[0]), int(cells[column]))
    return rows


def key_targets(doc):
    return {k["key"]: k["target"] for k in doc["keys"]}


def check_page_size(s, arch, want):
    print(f"-- page size ({arch}, expected {want})")
    sources = []
    if "getconf" in s:
        sources.append(("getconf PAGE_SIZE", int(s["getconf"][1].split()[0])))
    else:
        print("      (the guest has no getconf: busybox; the kernel's KernelPageSize"
              " and shmprov's status say it instead)")
    m = re.search(r"KernelPageSize:\s+(\d+) kB", s.get("smaps", (1, ""))[1])
    sources.append(("/proc/self/smaps KernelPageSize", int(m.group(1)) * 1024 if m else None))
    status = strict_json(s["status"][1])
    sources.append(("shmprov status host.page_size", status["host"]["page_size"]))
    for name, got in sources:
        check(f"{name} = {want}", got == want, got)


def check_plans(s, table, page):
    print("-- plan --output json, against the README's sizing table")
    for tier, (shmmax, shmall) in table.items():
        rc, out = s[f"plan.{tier}"]
        check(f"plan {tier}: exit 0", rc == 0, rc)
        doc = strict_json(out)
        t = key_targets(doc)
        check(f"plan {tier}: derivation.page_size = {page}", doc["derivation"]["page_size"] == page,
              doc["derivation"]["page_size"])
        check(f"plan {tier}: kernel.shmmax = {shmmax}", t.get("kernel.shmmax") == shmmax, t.get("kernel.shmmax"))
        check(f"plan {tier}: kernel.shmall = {shmall}", t.get("kernel.shmall") == shmall, t.get("kernel.shmall"))


def check_profile_hash(s, profiles):
    """sha256 (libmd) on the guest's byte order: the same digest as Python's."""
    print("-- the profile's sha256")
    for tier in ("small", "medium", "large"):
        want = hashlib.sha256(open(f"{profiles}/{tier}.yaml", "rb").read()).hexdigest()
        got = strict_json(s[f"plan.{tier}"][1])["profile"]["sha256"]
        check(f"plan {tier}: profile.sha256 = {want}", got == want, got)


def check_apply(s, table):
    shmmax, shmall = table["small"]
    print("-- apply --no-report (small), verify, /proc/sys/kernel/shm*")
    rc, out = s["apply"]
    check("apply: exit 0", rc == 0, rc)
    doc = strict_json(out)
    check("apply: result changed", doc["result"] == "changed", doc["result"])
    after = {k["key"]: k["after"] for k in doc["keys"]}
    check(f"apply: kernel.shmmax after = {shmmax}", after.get("kernel.shmmax") == shmmax, after.get("kernel.shmmax"))
    check(f"apply: kernel.shmall after = {shmall}", after.get("kernel.shmall") == shmall, after.get("kernel.shmall"))
    probe = doc["probe"]
    up, acc = probe["upper_bound"], probe["acceptance"]
    check("probe: passed", probe["passed"] is True, probe["passed"])
    check("probe: upper bound refused with EINVAL (22)", up["status"] == "passed" and up["errno"] == 22,
          f'{up["status"]}, errno {up["errno"]}: {up["detail"]}')
    check(f"probe: acceptance (SHM_NORESERVE) created {shmmax} bytes",
          acc["status"] == "passed" and str(shmmax) in acc["detail"], f'{acc["status"]}: {acc["detail"]}')
    rt = probe["round_trip"]
    check("probe: round trip", rt["status"] == "passed", f'{rt["status"]}: {rt["detail"]}')
    rc, out = s["verify"]
    check("verify: exit 0", rc == 0, f"{rc}: {out.strip()}")
    proc = [int(v) for v in s["proc"][1].split()]
    check(f"/proc/sys/kernel/shmmax = {shmmax}", proc[0] == shmmax, proc[0])
    check(f"/proc/sys/kernel/shmall = {shmall}", proc[1] == shmall, proc[1])


def check_status(s, table, page):
    shmmax, shmall = table["small"]
    print("-- status --output json, one 100000-byte segment")
    check("shm_helper create 0x53480001 100000: exit 0", s["segment"][0] == 0, s["segment"][0])
    rc, out = s["status"]
    check("status: exit 0", rc == 0, rc)
    doc = strict_json(out)
    usage, headroom = doc["usage"], doc["headroom"]
    pages = -(-100000 // page)
    room = min(shmmax, (shmall - pages) * page)
    limit = "kernel.shmall" if room < shmmax else "kernel.shmmax"
    lim = doc["limits"]["kernel.shmall"]
    check(f"status: kernel.shmall {shmall} pages", (lim["value"], lim["unit"]) == (shmall, "pages"),
          f'{lim["value"]} {lim["unit"]}')
    check("status: usage 1 segment, 100000 bytes", (usage["segments"], usage["bytes"]) == (1, 100000),
          f'{usage["segments"]}, {usage["bytes"]}')
    check(f"status: usage.pages = ceil(100000 / {page}) = {pages}", usage["pages"] == pages, usage["pages"])
    check(f"status: headroom = ({shmall} - {pages}) x {page} = {room}, limited by {limit}",
          (headroom["bytes"], headroom["limited_by"]) == (room, limit),
          f'{headroom["bytes"]}, {headroom["limited_by"]}')


def check_report(s, native, schema):
    print("-- the spooled report (apply --defer-report)")
    rc, _ = s["apply.report"]
    check("apply --defer-report: exit 0", rc == 0, rc)
    events = s.get("event*", [])
    ref = native.get("event*", [])
    if not check("one event spooled, in the guest and natively", len(events) == 1 and len(ref) == 1,
                 f"{len(events)} and {len(ref)}"):
        return
    try:
        event = strict_json(events[0][1])
        check("the event is valid JSON", True, f"{len(events[0][1].strip())} bytes")
    except ValueError as e:
        check("the event is valid JSON", False, e)
        return
    try:
        jsonschema.validate(event["data"], schema)
        check("its data validates against schemas/report.schema.json", True)
    except jsonschema.ValidationError as e:
        check("its data validates against schemas/report.schema.json", False, e.message)
    ref_event = strict_json(ref[0][1])
    only_here, only_native = path_difference(event, ref_event), path_difference(ref_event, event)
    check(f"its {len(field_paths(event))} field paths are those of the native x86-64 event"
          " (elements of an array empty on one side aside)",
          not only_here and not only_native, f"only here {only_here}, only native {only_native}")
    check("its host.arch is the guest's", event["data"]["host"]["arch"] != "x86_64", event["data"]["host"]["arch"])


def main():
    p = argparse.ArgumentParser()
    for opt in ("--arch", "--readme", "--schema", "--native", "--hardening", "--unit"):
        p.add_argument(opt, required=True)
    p.add_argument("--page-size", type=int, required=True)
    p.add_argument("console")
    a = p.parse_args()
    console = open(a.console, encoding="utf-8", errors="replace").read().replace("\r\n", "\n")
    s = sections(console)
    print(f"-- {a.arch}: the guest's console")
    if not check("the guest booted and guest.sh finished (==DONE== on the console)",
                 "==DONE==" in console and "status" in s):
        print("\n".join(console.splitlines()[-40:]))
        print(f"{passed} passed, {failed} failed")
        return 1
    check("uname -m", True, s["uname"][1].strip())
    check("cross build hardening (tests/static/hardening.sh)", a.hardening == "ok", a.hardening)
    print(f"      unit tests: {a.unit}")
    table = readme_table(a.readme, a.page_size)
    check("the README's sizing table has small, medium and large", sorted(table) == ["large", "medium", "small"],
          table)
    checks = [(check_page_size, (s, a.arch, a.page_size)), (check_plans, (s, table, a.page_size)),
              (check_profile_hash, (s, os.path.join(os.path.dirname(a.readme), "profiles"))),
              (check_apply, (s, table)), (check_status, (s, table, a.page_size)),
              (check_report, (s, sections(open(a.native, encoding="utf-8").read()),
                              json.load(open(a.schema, encoding="utf-8"))))]
    for fn, args in checks:
        try:
            fn(*args)
        except (KeyError, IndexError, TypeError, ValueError) as e:
            check(f"{fn.__name__}: the guest's output has what it needs", False, repr(e))
    print(f"{a.arch}: page size {a.page_size}")
    print(f"{a.arch}: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
