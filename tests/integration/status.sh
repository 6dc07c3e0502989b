#!/bin/bash
# `shmprov status` end to end, on the real kernel in a private IPC namespace:
# real segments in known states (tests/helpers/shm_helper.c), every figure
# checked against the kernel (shmctl SHM_INFO, /proc/sys/kernel/shm*, ipcs),
# the orphan verdicts, --remove-orphans (dry run, real, repeated), the CLI
# contract, an empty namespace and an unreadable segment table.
# Usage: status.sh SHMPROV SOURCE_DIR SHM_HELPER
set -u
shmprov=$1
src=$2
helper=$3
. "$src/tests/integration/lib.sh"
start_suite "$@"
holders=()
cleanup() {
    local p
    for p in "${holders[@]}"; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

# Known, non-default limits (this namespace's own; the host never changes).
shmmax=123456789
shmall=30000
shmmni=4000
echo $shmmax >/proc/sys/kernel/shmmax
echo $shmall >/proc/sys/kernel/shmall
echo $shmmni >/proc/sys/kernel/shmmni

# A profile listing G's key as persistent. 0xdeadbeef has the sign bit set:
# /proc/sysvipc/shm prints it as a negative number.
install -m 0644 "$src/profiles/default.yaml" "$work/profile.yaml"
printf 'segments:\n  persistent_keys: [0xdeadbeef]\n' >>"$work/profile.yaml"
prof=(--profile "$work/profile.yaml")

# pycheck SCRIPT ARGS...: runs Python (the prelude, then SCRIPT) on ARGS;
# each "PASS name" / "FAIL name: why" line it prints is one check. A script
# that dies (a document that is not JSON, a missing key) is a failure too.
prelude='
import json, re, sys
def check(name, cond, detail=""):
    print(("PASS " if cond else "FAIL ") + name + ("" if cond else ": " + str(detail)), flush=True)
def load(p):
    return json.load(open(p))
def ipcs(path):
    """ipcs -m (or -m -p) as a list of rows, each a list of columns."""
    rows = []
    for line in open(path):
        f = line.split()
        if f and f[0] not in ("------", "key", "shmid"):
            rows.append(f)
    return rows
'
pycheck() {
    local script=$1 line
    shift
    while IFS= read -r line; do
        case $line in
        "PASS "*) ok "${line#PASS }" ;;
        "FAIL "*) bad "${line#FAIL }" ;;
        "PYEXIT 0") ;;
        "PYEXIT "*) bad "pycheck: the checking script failed (${line#PYEXIT })" ;;
        *) echo "    $line" ;;
        esac
    done < <("$py" -c "$prelude$script" "$@" 2>&1; echo "PYEXIT $?")
}

# hold OUT ARGS...: starts "shm_helper ARGS" in the background (a live
# process), waits until it has printed its line to OUT; sets holder (its pid).
hold() {
    local out=$1
    shift
    "$helper" "$@" >"$out" 2>"$out.err" &
    holder=$!
    holders+=("$holder")
    for _ in $(seq 200); do grep -q . "$out" 2>/dev/null && return 0; kill -0 "$holder" 2>/dev/null || break; sleep 0.025; done
    echo "shm_helper $* did not start: $(cat "$out.err")" >&2
    return 1
}
setup_failed() { bad "setup: $1"; finish; exit 1; }

# snapshot FILE: the segments as ipcs sees them, plus the kernel's counters.
snapshot() { { ipcs -m; ipcs -m -p; "$helper" info; } >"$1"; }

# ---- the segments ----------------------------------------------------------
# A: attached (and touched: resident pages) by its live creator.
hold "$work/A" create 0x5a000001 10000 --touch --hold || setup_failed "A"
A=$(cat "$work/A") A_pid=$holder
# B: created by a process that exited without attaching: orphan.
B=$("$helper" create 0x5a000002 20000 --mode 640) || setup_failed "B"
# C: created, attached, detached, creator exited: orphan.
C=$("$helper" create 0x5a000003 $((256 * page)) --attach --detach) || setup_failed "C"
# D: created by a live process, never attached: not an orphan.
hold "$work/D" create 0x5a000004 40000 --hold || setup_failed "D"
D=$(cat "$work/D") D_pid=$holder
# E: dead creator, then attached and detached by a live process.
E=$("$helper" create 0x5a000005 50000) || setup_failed "E"
hold "$work/E" attach "$E" --detach --hold || setup_failed "E attach"
E_pid=$holder
# F: marked for destroy while its live creator holds it attached.
hold "$work/F" create 0x5a000006 60000 --attach --rmid --hold || setup_failed "F"
F=$(cat "$work/F") F_pid=$holder
# G: an orphan whose key the profile lists as persistent.
G=$("$helper" create 0xdeadbeef 70000 --mode 644) || setup_failed "G"
# H: a locked orphan with resident pages.
H=$("$helper" create 0x5a000008 80000 --touch --detach --lock) || setup_failed "H"

# letter id key bytes perms nattch creator last dest locked candidate persistent creator_pid last_pid
# ("-" as a pid: a process that is gone, whose pid only ipcs -m -p knows)
cat >"$work/expect" <<EOF
A $A 0x5a000001 10000 600 1 alive alive False False False False $A_pid $A_pid
B $B 0x5a000002 20000 640 0 gone never_attached False False True False - 0
C $C 0x5a000003 $((256 * page)) 600 0 gone gone False False True False - -
D $D 0x5a000004 40000 600 0 alive never_attached False False False False $D_pid 0
E $E 0x5a000005 50000 600 0 gone alive False False False False - $E_pid
F $F 0x00000000 60000 600 1 alive alive True False False False $F_pid $F_pid
G $G 0xdeadbeef 70000 644 0 gone never_attached False False True True - 0
H $H 0x5a000008 80000 600 0 gone gone False True True False - -
EOF
for pid in $A_pid $D_pid $E_pid $F_pid; do kill -0 "$pid" || setup_failed "a holder died"; done

# ---- status --output json --segments against the kernel --------------------
snapshot "$work/before"
"$shmprov" "${prof[@]}" --output json status --segments >"$work/st.json" 2>"$work/st.err"
expect_code "json/exit-0" 0 "$shmprov" "${prof[@]}" --output json status --segments
snapshot "$work/after-status"
expect "status/changes-nothing" cmp -s "$work/before" "$work/after-status"
"$helper" info >"$work/info"
for k in shmmax shmall shmmni; do cat /proc/sys/kernel/$k; done >"$work/limits"
ipcs -m >"$work/ipcs"
ipcs -m -p >"$work/ipcsp"

# Checks every figure of a status document against the kernel.
# Args: JSON INFO LIMITS EXPECT PAGE IPCS IPCSP NSINO
check_document='
d = load(sys.argv[1])
used_ids, shm_tot, shm_rss, shm_swp = map(int, open(sys.argv[2]).read().split())
shmmax, shmall, shmmni = map(int, open(sys.argv[3]).read().split())
expect = [l.split() for l in open(sys.argv[4]) if l.strip()]
page = int(sys.argv[5])
ipcs_rows = {int(r[1]): r for r in ipcs(sys.argv[6])}
ipcsp_rows = {int(r[0]): r for r in ipcs(sys.argv[7])}
nsino = int(sys.argv[8])
segs = {s["id"]: s for s in d["segments"]}

check("json/command", d["command"] == "status", d["command"])
check("json/page-size", d["host"]["page_size"] == page, d["host"]["page_size"])
check("json/namespace-private", d["namespace"]["ipc_initial"] is False and d["namespace"]["ipc_inode"] == nsino,
      d["namespace"])
for key, want, unit in (("kernel.shmmax", shmmax, "bytes"), ("kernel.shmall", shmall, "pages"),
                        ("kernel.shmmni", shmmni, "segments")):
    l = d["limits"][key]
    check("json/limit-" + key, l["value"] == want and l["unit"] == unit and l["kernel_default"] is False, l)
u = d["usage"]
check("json/usage-source", u["source"] == "SHM_INFO", u["source"])
check("json/usage-segments=used_ids", u["segments"] == used_ids == len(expect), (u["segments"], used_ids, len(expect)))
pages = sum(-(-int(e[3]) // page) for e in expect)
check("json/usage-pages=shm_tot", u["pages"] == shm_tot == pages, (u["pages"], shm_tot, pages))
check("json/usage-bytes", u["bytes"] == sum(int(e[3]) for e in expect), u["bytes"])
check("json/usage-largest", u["largest_segment"] == max(int(e[3]) for e in expect), u["largest_segment"])
check("json/usage-rss=shm_rss", u["rss_pages"] == shm_rss and shm_rss > 0, (u["rss_pages"], shm_rss))
check("json/usage-swap=shm_swp", u["swap_pages"] == shm_swp, (u["swap_pages"], shm_swp))
check("json/rss-per-segment-sums", sum(s["rss_bytes"] for s in d["segments"]) == shm_rss * page,
      [s["rss_bytes"] for s in d["segments"]])
free = (shmall - shm_tot) * page
want = min(shmmax, free)
check("json/headroom", d["headroom"]["bytes"] == want and
      d["headroom"]["limited_by"] == ("kernel.shmall" if free < shmmax else "kernel.shmmax"), (d["headroom"], want))
check("json/overcommit", d["overcommit"]["mode"] == int(open("/proc/sys/vm/overcommit_memory").read()), d["overcommit"])
check("json/orphan-count", d["orphan_candidates"] == 4, d["orphan_candidates"])
check("json/no-removals-key", "removals" not in d)
check("json/one-row-per-segment", sorted(segs) == sorted(int(e[1]) for e in expect) and len(d["segments"]) == len(expect),
      sorted(segs))

for e in expect:
    letter, sid = e[0], int(e[1])
    s = segs.get(sid)
    if s is None:
        check("segment-%s/listed" % letter, False, "id %d missing" % sid)
        continue
    want = {"key": e[2], "bytes": int(e[3]), "perms": e[4], "nattch": int(e[5]),
            "creator": e[6].replace("_", " "), "last": e[7].replace("_", " "),
            "marked_for_destroy": e[8] == "True", "locked": e[9] == "True",
            "orphan_candidate": e[10] == "True", "persistent": e[11] == "True", "owner": "root", "uid": 0}
    if e[12] != "-": want["creator_pid"] = int(e[12])
    if e[13] != "-": want["last_pid"] = int(e[13])
    if letter in "AH": want["rss_bytes"] = -(-int(e[3]) // page) * page
    got = {k: s.get(k) for k in want}
    check("segment-%s/state" % letter, got == want, {k: (got[k], want[k]) for k in want if got[k] != want[k]})
    # The same row as ipcs -m and ipcs -m -p show it.
    r, p = ipcs_rows.get(sid), ipcsp_rows.get(sid)
    status = set(r[6:]) if r else None
    got = (s["key"], s["owner"], s["perms"], s["bytes"], s["nattch"], s["marked_for_destroy"], s["locked"],
           s["creator_pid"], s["last_pid"])
    want = (r[0], r[2], r[3], int(r[4]), int(r[5]), "dest" in status, "locked" in status, int(p[2]), int(p[3])) \
        if r and p else None
    check("segment-%s/matches-ipcs" % letter, got == want, (got, want))
    if s["creator"] == "gone":
        check("segment-%s/creator-really-gone" % letter, not __import__("os").path.exists("/proc/%d" % s["creator_pid"]),
              s["creator_pid"])
'
nsino=$(stat -L -c %i /proc/self/ns/ipc)
pycheck "$check_document" "$work/st.json" "$work/info" "$work/limits" "$work/expect" "$page" \
    "$work/ipcs" "$work/ipcsp" "$nsino"
if [ "$fail" -gt 0 ]; then echo "--- the document:"; cat "$work/st.json"; cat "$work/st.err"; fi

# The headroom is what the kernel really allows: a segment of exactly that
# size can be created now, one byte more cannot.
room=$("$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))["headroom"]["bytes"])' "$work/st.json")
expect "headroom/kernel-allows-it" test "$("$helper" probe "$room")" = ok
probe=$("$helper" probe $((room + 1)))
expect "headroom/kernel-refuses-one-more ($probe)" test "$probe" = ENOSPC -o "$probe" = EINVAL

# ---- text output -----------------------------------------------------------
"$shmprov" "${prof[@]}" status >"$work/st.txt" 2>/dev/null
expect_code "text/exit-0" 0 "$shmprov" "${prof[@]}" status
"$shmprov" "${prof[@]}" status --segments >"$work/st-seg.txt" 2>/dev/null
read -r used_ids shm_tot shm_rss shm_swp <"$work/info"
bytes=$(awk '{ s += $4 } END { print s }' "$work/expect")
t="$work/st.txt"
expect "text/page-size" grep -q "^shmprov status: .*, page size $page bytes$" "$t"
expect "text/profile" grep -q "^Profile: $work/profile.yaml$" "$t"
expect "text/namespace-private" grep -q "^IPC namespace: private (ipc:\[$nsino\])" "$t"
expect "text/limit-shmmax" grep -Eq "^  kernel.shmmax +$shmmax bytes \(" "$t"
expect "text/limit-shmall" grep -Eq "^  kernel.shmall +$shmall pages \(" "$t"
expect "text/limit-shmmni" grep -Eq "^  kernel.shmmni +$shmmni segments$" "$t"
expect "text/usage-source" grep -q "^Usage (the kernel's counters, shmctl SHM_INFO)$" "$t"
expect "text/usage-segments" grep -Eq "^  segments +$used_ids of $shmmni \(kernel.shmmni\), " "$t"
expect "text/usage-memory" grep -Eq "^  memory +$bytes bytes \(.*\) in $shm_tot pages of $shmall \(kernel.shmall\), " "$t"
expect "text/usage-resident" grep -Eq "^  resident +$shm_rss pages, swapped $shm_swp pages$" "$t"
expect "text/usage-largest" grep -Eq "^  largest +$((256 * page)) bytes \(.*\) of $shmmax \(kernel.shmmax\), " "$t"
expect "text/headroom" grep -Eq "^Headroom: a new segment of up to $room bytes \(.*\) can be created now \(limited by kernel.sh(mall|max)\)$" "$t"
expect "text/overcommit" grep -q "^Overcommit: vm.overcommit_memory = $(cat /proc/sys/vm/overcommit_memory) " "$t"
expect "text/orphan-count" grep -q "^Segments: $used_ids; orphan candidates: 4 (1 persistent by the profile, never removed)$" "$t"
expect "text/hint" grep -q "^  (every segment: 'shmprov status --segments')$" "$t"

# Every row of the listing, rebuilt from the JSON; without --segments only
# the candidates. Args: JSON TEXT-WITH-SEGMENTS TEXT-WITHOUT
check_rows='
d = load(sys.argv[1])
full, short = open(sys.argv[2]).read(), open(sys.argv[3]).read()
def perms_text(p):
    bits = int(p, 8)
    return "".join(c if bits & (0o400 >> i) else "-" for i, c in enumerate("rwxrwxrwx"))
def row(s):
    state = [w for w, on in (("marked for destroy", s["marked_for_destroy"]), ("locked", s["locked"]),
             ("orphan candidate, persistent (kept)" if s["persistent"] else "orphan candidate", s["orphan_candidate"])) if on]
    last = "-" if s["last"] == "never attached" else "%d %s" % (s["last_pid"], s["last"])
    tail = re.escape(last) + (" +" + re.escape(", ".join(state)) if state else "")
    return r"^  %s +%d +%s +%s +%d +%d  +%d %s +%s$" % (s["key"], s["id"], s["owner"], perms_text(s["perms"]),
           s["bytes"], s["nattch"], s["creator_pid"], re.escape(s["creator"]), tail)
for s in d["segments"]:
    check("text-row/%d" % s["id"], re.search(row(s), full, re.M), row(s))
listed = sorted(int(m) for m in re.findall(r"^  0x[0-9a-f]{8} +(\d+) ", short, re.M))
cands = sorted(s["id"] for s in d["segments"] if s["orphan_candidate"])
check("text/without-segments-lists-only-candidates", listed == cands and len(cands) == 4, (listed, cands))
'
pycheck "$check_rows" "$work/st.json" "$work/st-seg.txt" "$work/st.txt"
if [ "$fail" -gt 0 ]; then echo "--- status --segments:"; cat "$work/st-seg.txt"; fi

# ---- --remove-orphans --dry-run: re-checks, removes nothing ----------------
"$shmprov" "${prof[@]}" status --remove-orphans --dry-run >"$work/dry.txt" 2>"$work/dry.err"
expect "dry-run/exit-0" test $? = 0
"$shmprov" "${prof[@]}" --output json status --remove-orphans --dry-run >"$work/dry.json" 2>"$work/dry-json.err"
expect "dry-run-json/exit-0" test $? = 0
snapshot "$work/after-dry"
expect "dry-run/removes-nothing" cmp -s "$work/before" "$work/after-dry"
for x in B C H; do
    expect "dry-run/would-remove-$x" grep -Eq "^shmprov: would remove orphan segment id ${!x} \(key 0x[0-9a-f]{8}, [0-9]+ bytes, creator pid [0-9]+\) \(--dry-run\): still an orphan on re-check$" "$work/dry.err"
done
expect "dry-run/one-line-each" test "$(grep -c 'would remove' "$work/dry.err")" = 3
expect "dry-run/kept-G" grep -q "^shmprov: kept orphan segment id $G: the profile marks key 0xdeadbeef persistent$" "$work/dry.err"
expect "dry-run/summary" grep -q "^Orphan removal (--dry-run: nothing removed): 4 candidate(s), outcomes in the log lines on stderr$" "$work/dry.txt"
check_removals='
d = load(sys.argv[1])
want = dict(a.split("=") for a in sys.argv[3:])
got = {str(r["id"]): r["outcome"] for r in d["removals"]}
check(sys.argv[2], got == want and all(r["reason"] for r in d["removals"]), (d["removals"], want))
'
pycheck "$check_removals" "$work/dry.json" "dry-run-json/removals" "$B=would-remove" "$C=would-remove" \
    "$H=would-remove" "$G=kept-persistent"

# ---- an orphan attached by a live process before the removal stays ---------
# I: a dead creator's segment with a chosen id (shm_next_id) and IPC_PRIVATE.
I=$("$helper" create private 90000 --id 1234567) || setup_failed "I"
expect "late-attach/chosen-id" test "$I" = 1234567
is_candidate() { # ID -> True/False/missing
    "$shmprov" "${prof[@]}" --output json status 2>/dev/null |
        "$py" -c 'import json,sys; d=json.load(sys.stdin); print(([str(s["orphan_candidate"]) for s in d["segments"] if s["id"] == int(sys.argv[1])] or ["missing"])[0])' "$1"
}
expect "late-attach/orphan-first" test "$(is_candidate "$I")" = True
hold "$work/I" attach "$I" --detach --hold || setup_failed "I attach"
I_pid=$holder
expect "late-attach/no-longer-candidate" test "$(is_candidate "$I")" = False
expect "late-attach/last-user-alive" test "$("$shmprov" "${prof[@]}" --output json status 2>/dev/null |
    "$py" -c 'import json,sys; print([(s["last_pid"], s["last"], s["nattch"]) for s in json.load(sys.stdin)["segments"] if s["id"] == int(sys.argv[1])])' "$I")" = "[($I_pid, 'alive', 0)]"

# ---- --remove-orphans: removes exactly B, C, H -----------------------------
snapshot "$work/before-rm"
"$shmprov" "${prof[@]}" --output json status --remove-orphans >"$work/rm.json" 2>"$work/rm.err"
expect "remove/exit-0" test $? = 0
ipcs -m >"$work/ipcs-rm"
for x in B C H; do
    expect "remove/logged-$x" grep -Eq "^shmprov: removed orphan segment id ${!x} \(key 0x[0-9a-f]{8}, [0-9]+ bytes, creator pid [0-9]+\): still an orphan on re-check$" "$work/rm.err"
    expect "remove/gone-$x" test -z "$(awk -v id="${!x}" '$2 == id' "$work/ipcs-rm")"
done
expect "remove/one-line-each" test "$(grep -c 'removed orphan' "$work/rm.err")" = 3
expect "remove/kept-G-logged" grep -q "^shmprov: kept orphan segment id $G: the profile marks key 0xdeadbeef persistent$" "$work/rm.err"
for x in A D E F G I; do
    expect "remove/kept-$x" test -n "$(awk -v id="${!x}" '$2 == id' "$work/ipcs-rm")"
done
expect "remove/six-left" test "$(grep -c '^0x' "$work/ipcs-rm")" = 6
pycheck "$check_removals" "$work/rm.json" "remove-json/removals" "$B=removed" "$C=removed" "$H=removed" \
    "$G=kept-persistent"
expect "late-attach/still-there" grep -Eq "^0x00000000 +$I " "$work/ipcs-rm"

# A second run has nothing left to remove.
snapshot "$work/before-rm2"
"$shmprov" "${prof[@]}" status --remove-orphans >"$work/rm2.txt" 2>"$work/rm2.err"
expect "remove-again/exit-0" test $? = 0
snapshot "$work/after-rm2"
expect "remove-again/removes-nothing" cmp -s "$work/before-rm2" "$work/after-rm2"
expect "remove-again/no-removal-line" test "$(grep -c 'remov' "$work/rm2.err")" = 0
expect "remove-again/kept-G" grep -q "^shmprov: kept orphan segment id $G:" "$work/rm2.err"
expect "remove-again/summary" grep -q "^Orphan removal: 1 candidate(s), outcomes in the log lines on stderr$" "$work/rm2.txt"
expect "remove-again/count" grep -q "^Segments: 6; orphan candidates: 1 (1 persistent by the profile, never removed)$" "$work/rm2.txt"

# When E's last user exits, E becomes an orphan; F goes with its holder.
kill "$E_pid" "$F_pid"
wait "$E_pid" "$F_pid" 2>/dev/null
expect "exit/E-becomes-candidate" test "$(is_candidate "$E")" = True
expect "exit/F-destroyed" test "$(is_candidate "$F")" = missing

# ---- shmmni used up: no headroom --------------------------------------------
read -r used_ids _ <<<"$("$helper" info)"
echo "$used_ids" >/proc/sys/kernel/shmmni
"$shmprov" "${prof[@]}" --output json status >"$work/full.json" 2>/dev/null
expect "shmmni-full/headroom-0" test "$("$py" -c 'import json,sys; h=json.load(open(sys.argv[1]))["headroom"]; print(h["bytes"], h["limited_by"])' "$work/full.json")" = "0 kernel.shmmni"
expect "shmmni-full/kernel-agrees" test "$("$helper" probe 1)" = ENOSPC
"$shmprov" "${prof[@]}" status 2>/dev/null >"$work/full.txt"
expect "shmmni-full/text" grep -q "^Headroom: no new segment can be created now (kernel.shmmni is used up)$" "$work/full.txt"
echo $shmmni >/proc/sys/kernel/shmmni

# ---- an empty IPC namespace: the kernel's defaults ---------------------------
unshare --ipc -- "$shmprov" --output json status >"$work/empty.json" 2>"$work/empty.err"
expect "empty/exit-0" test $? = 0
check_empty='
d = load(sys.argv[1])
default = 18446744073692774399
check("empty/no-segments", d["segments"] == [] and d["usage"]["segments"] == 0 and d["usage"]["pages"] == 0
      and d["usage"]["bytes"] == 0 and d["orphan_candidates"] == 0, (d["segments"], d["usage"]))
# Above 2^53-1 a number is null, its exact decimal text in "<name>_decimal".
check("empty/headroom-is-shmmax", d["headroom"] == {"bytes": None, "bytes_decimal": str(default),
                                                    "limited_by": "kernel.shmmax"}, d["headroom"])
check("empty/kernel-defaults", [d["limits"][k]["value"] or int(d["limits"][k]["value_decimal"])
                                for k in ("kernel.shmmax", "kernel.shmall", "kernel.shmmni")]
      == [default, default, 4096] and all(l["kernel_default"] for l in d["limits"].values()), d["limits"])
check("empty/namespace", d["namespace"]["ipc_initial"] is False and d["namespace"]["ipc_inode"] != int(sys.argv[2]),
      d["namespace"])
'
pycheck "$check_empty" "$work/empty.json" "$nsino"

# ---- least privilege: what removing another user's orphan takes ---------------
# Read it again needs CAP_IPC_OWNER, remove it CAP_SYS_ADMIN (the kernel's
# rules for IPC_STAT and IPC_RMID): root without them fails clearly and
# removes nothing; with exactly those two it succeeds. In a fresh IPC
# namespace of its own, so the segments above are not involved.
lp='
set -u
shmprov=$1 helper=$2 out=$3
caps() { setpriv --bounding-set=-all$1 --inh-caps=-all --ambient-caps=-all --no-new-privs -- "$shmprov" status --remove-orphans >/dev/null 2>>"$out.$2"; echo $? >"$out.$2.rc"; ipcs -m | grep -c 0x00004343 >"$out.$2.left"; }
setpriv --reuid=65534 --regid=65534 --clear-groups "$helper" create 0x4343 4096 >/dev/null
caps "" none
caps ",+ipc_owner" ipc_owner
caps ",+ipc_owner,+sys_admin" both
'
unshare --ipc -- bash -c "$lp" lp "$shmprov" "$helper" "$work/lp"
expect "least-privilege/no-caps-exit-1" test "$(cat "$work/lp.none.rc")" = 1
expect "least-privilege/no-caps-says-CAP_IPC_OWNER" grep -q "cannot read it again (IPC_STAT): Permission denied (another user's segment: root needs CAP_IPC_OWNER to read it)" "$work/lp.none"
expect "least-privilege/no-caps-removes-nothing" test "$(cat "$work/lp.none.left")" = 1
expect "least-privilege/ipc_owner-only-exit-1" test "$(cat "$work/lp.ipc_owner.rc")" = 1
expect "least-privilege/ipc_owner-only-says-CAP_SYS_ADMIN" grep -q "IPC_RMID failed: Operation not permitted (another user's segment: root needs CAP_SYS_ADMIN to remove it)" "$work/lp.ipc_owner"
expect "least-privilege/ipc_owner-only-removes-nothing" test "$(cat "$work/lp.ipc_owner.left")" = 1
expect "least-privilege/both-exit-0" test "$(cat "$work/lp.both.rc")" = 0
expect "least-privilege/both-removed" test "$(cat "$work/lp.both.left")" = 0

# ---- an unreadable segment table (SHMPROV_TEST_PROC_DIR) -----------------------
# meminfo is the real one (ram_tier auto needs it); sysvipc/shm is broken.
fake=$work/proc
mkdir -p "$fake/sysvipc"
cp /proc/meminfo "$fake/meminfo"
real=$(cat /proc/sysvipc/shm)
read -r used_ids _ <<<"$("$helper" info)"
snapshot "$work/before-fake"
check_unreadable='
d = load(sys.argv[1])
n = sys.argv[2]
check(n + "/segments-unknown", d["segments"] is None and d["orphan_candidates"] is None, d["segments"])
u = d["usage"]
check(n + "/usage-from-shm-info", u["source"] == "SHM_INFO" and u["segments"] == int(sys.argv[3]), u)
# Without the table the byte figures are unknown: null, never a made-up 0.
check(n + "/bytes-not-claimed", u["bytes"] is None and u["largest_segment"] is None, u)
'
for variant in garbage truncated empty; do
    case $variant in
    garbage) printf 'this is not /proc/sysvipc/shm\n\x01\x02\n' >"$fake/sysvipc/shm" ;;
    truncated) printf '%s\n' "$real" | head -c -20 >"$fake/sysvipc/shm" ;;
    empty) : >"$fake/sysvipc/shm" ;;
    esac
    SHMPROV_TEST_PROC_DIR=$fake "$shmprov" "${prof[@]}" status >"$work/u.txt" 2>"$work/u.err"
    code=$?
    expect "unreadable-$variant/exit-0" test "$code" = 0
    expect "unreadable-$variant/says-so" grep -q "^Segments: unknown (cannot read /proc/sysvipc/shm: " "$work/u.txt"
    expect "unreadable-$variant/text-bytes-not-claimed" not grep -Eq "^  (memory|largest) +0 bytes" "$work/u.txt"
    SHMPROV_TEST_PROC_DIR=$fake "$shmprov" "${prof[@]}" --output json status >"$work/u.json" 2>"$work/u.err"
    expect "unreadable-$variant/json-exit-0" test $? = 0
    pycheck "$check_unreadable" "$work/u.json" "unreadable-$variant" "$used_ids"
    SHMPROV_TEST_PROC_DIR=$fake "$shmprov" "${prof[@]}" status --remove-orphans >"$work/u.txt" 2>"$work/u.err"
    code=$?
    expect "unreadable-$variant/remove-exit-1 ($code)" test "$code" = 1
    expect "unreadable-$variant/remove-says-so" grep -q "^shmprov: error: cannot look for orphans: /proc/sysvipc/shm: " "$work/u.err"
done
snapshot "$work/after-fake"
expect "unreadable/removes-nothing" cmp -s "$work/before-fake" "$work/after-fake"

# ---- the CLI contract --------------------------------------------------------
expect_code "usage/status-root" 2 "$shmprov" status --root x
expect_code "usage/plan-segments" 2 "$shmprov" plan --segments
expect_code "usage/plan-remove-orphans" 2 "$shmprov" plan --remove-orphans
expect_code "usage/status-dry-run-alone" 2 "$shmprov" status --dry-run
expect_code "usage/status-extra-arg" 2 "$shmprov" status extra-arg
expect_code "usage/status-force" 2 "$shmprov" status --force
snapshot "$work/after-usage"
expect "usage/changes-nothing" cmp -s "$work/after-fake" "$work/after-usage"

# ---- a test segment a killed shmprov left behind (probe leftover) -------------
# The bug: SIGKILL between the probe's shmget and its IPC_RMID left a segment
# of shmmax bytes, all of shmall; the next apply said "unchanged", verify
# exited 0, and a 1 MiB segment could not be created. strace kills shmprov
# on entry to its first IPC_RMID (the acceptance's), before the kernel runs
# it, exactly as a SIGKILL there would. From an empty namespace state.
kill "${holders[@]}" 2>/dev/null
wait 2>/dev/null
holders=()
ipcrm --all=shm
printf '# (test) nothing here\n' >/etc/sysctl.conf
D=18446744073692774399
echo $D >/proc/sys/kernel/shmmax
echo $D >/proc/sys/kernel/shmall
echo 4096 >/proc/sys/kernel/shmmni
install -m 0644 /dev/null "$work/db.yaml"
printf 'version: 1\nhost: {ram_tier: small, workload: database}\n' >"$work/db.yaml"
db=(--profile "$work/db.yaml")
db_max=4294967296 db_all=$((4294967296 / page)) pkey=0x73686d70 pkey_dec=1936223600
rows() { tail -n +2 /proc/sysvipc/shm; }
# LeakSanitizer cannot run under ptrace (the sanitizer build).
nolsan="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
ASAN_OPTIONS=$nolsan strace -qq -e trace=shmctl -o "$work/trace.log" "$shmprov" "${db[@]}" apply --no-report >/dev/null 2>&1
nth=$(grep -n 'IPC_RMID' "$work/trace.log" | head -n 1 | cut -d: -f1)
rm -f /etc/sysctl.d/60-shmprov.conf
echo $D >/proc/sys/kernel/shmmax
echo $D >/proc/sys/kernel/shmall
expect "leftover/setup-clean" test -z "$(rows)" -a -n "$nth"
ASAN_OPTIONS=$nolsan strace -qq -o /dev/null -e inject=shmctl:signal=KILL:when="${nth:-1}" \
    "$shmprov" "${db[@]}" apply --no-report >/dev/null 2>&1
expect "leftover/killed-at-ipc-rmid (exit $?)" test $? = 137
read -r L_key L _ L_size L_cpid _ <<<"$(rows)"
expect "leftover/one-segment-of-shmmax-left" test "$(rows | wc -l) $L_key $L_size" = "1 $pkey_dec $db_max"
expect "leftover/limits-were-applied" test "$(cat /proc/sys/kernel/shmmax) $(cat /proc/sys/kernel/shmall)" = "$db_max $db_all"
expect "leftover/the-symptom-1MiB-ENOSPC" test "$("$helper" probe 1048576)" = ENOSPC
snapshot "$work/before-leftover"

# verify: drift (exit 3), named with its id and size; nothing removed.
"$shmprov" "${db[@]}" verify >"$work/lv.txt" 2>"$work/lv.err"
expect "leftover/verify-exit-3" test $? = 3
expect "leftover/verify-names-it" grep -q "^  probe-leftover: segment id $L ($db_max bytes, key $pkey) is a test allocation a killed shmprov (pid $L_cpid) left behind; it holds $db_all pages of kernel.shmall: 'shmprov apply' removes it$" "$work/lv.txt"
expect "leftover/verify-only-that" test "$(grep -c '^  [a-z-]*: ' "$work/lv.txt")" = 1
"$shmprov" "${db[@]}" --output json verify >"$work/lv.json" 2>/dev/null
expect "leftover/verify-json-exit-3" test $? = 3
pycheck '
d = load(sys.argv[1])
check("leftover/verify-json", d["result"] == "drift" and [(x["kind"], x["found"]) for x in d["drift"]]
      == [("probe-leftover", "segment %s, %s bytes" % (sys.argv[2], sys.argv[3]))], d["drift"])
' "$work/lv.json" "$L" "$db_max"

# status: said in words, listed as a probe leftover (not an orphan candidate).
"$shmprov" "${db[@]}" status >"$work/ls.txt" 2>/dev/null
expect "leftover/status-exit-0" test $? = 0
expect "leftover/status-says-so" grep -q "^  probe leftover: a test segment of $db_max bytes (4 GiB), id $L, key $pkey, was left behind by a killed shmprov (pid $L_cpid, gone); it holds $db_all pages of kernel.shmall. 'shmprov apply' removes it" "$work/ls.txt"
expect "leftover/status-count" grep -q "^Segments: 1; orphan candidates: 0; probe leftovers: 1$" "$work/ls.txt"
"$shmprov" "${db[@]}" status --segments >"$work/ls-seg.txt" 2>/dev/null
expect "leftover/segments-row-marked" grep -Eq "^  $pkey +$L +root +rw------- +$db_max +0  +$L_cpid gone +- +probe leftover$" "$work/ls-seg.txt"
"$shmprov" "${db[@]}" --output json status --segments >"$work/ls.json" 2>/dev/null
pycheck '
d = load(sys.argv[1])
L, size, cpid = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
check("leftover/status-json-field", [(x["id"], x["key"], x["bytes"], x["pages"], x["creator_pid"]) for x in d["probe_leftovers"]]
      == [(L, "0x73686d70", size, int(sys.argv[5]), cpid)], d["probe_leftovers"])
check("leftover/status-json-not-an-orphan", d["orphan_candidates"] == 0 and
      [(s["probe_leftover"], s["orphan_candidate"]) for s in d["segments"]] == [(True, False)], d["segments"])
' "$work/ls.json" "$L" "$db_max" "$L_cpid" "$db_all"
"$shmprov" "${db[@]}" status --remove-orphans --dry-run >/dev/null 2>"$work/ls-dry.err"
expect "leftover/remove-orphans-dry-run-names-it" grep -q "^shmprov: would remove probe leftover segment id $L (key $pkey, $db_max bytes, creator pid $L_cpid) (--dry-run): " "$work/ls-dry.err"
snapshot "$work/after-leftover-looks"
expect "leftover/verify-and-status-remove-nothing" cmp -s "$work/before-leftover" "$work/after-leftover-looks"

# The next apply removes it first, says so, and proves shmmax for real.
"$shmprov" "${db[@]}" apply --no-report >"$work/la.txt" 2>"$work/la.err"
expect "leftover/apply-exit-0" test $? = 0
expect "leftover/apply-says-removed" grep -q "^shmprov: removed test segment id $L (key $pkey, $db_max bytes) a killed shmprov (pid $L_cpid) left behind: still an orphan on re-check$" "$work/la.err"
expect "leftover/apply-unchanged" grep -q "^shmprov apply: unchanged$" "$work/la.txt"
expect "leftover/apply-acceptance-passed" grep -q "acceptance a segment of $db_max bytes was created and removed at once" "$work/la.txt"
expect "leftover/none-left" test -z "$(rows)"
expect "leftover/shmmax-fits-again" test "$("$helper" probe $db_max)" = ok
expect_code "leftover/verify-in-sync-again" 0 "$shmprov" "${db[@]}" verify
"$shmprov" "${db[@]}" apply --no-report >/dev/null 2>"$work/la2.err"
expect "leftover/next-apply-says-nothing" not grep -q "test segment" "$work/la2.err"

# The same key held by a live process that is not shmprov: never touched,
# not drift; apply proves the limits with private segments and names it.
hold "$work/K" create $pkey 4096 --hold || setup_failed "K"
K=$(cat "$work/K") K_pid=$holder
"$shmprov" "${db[@]}" apply --no-report >"$work/lk.txt" 2>"$work/lk.err"
expect "foreign-key/apply-exit-0" test $? = 0
expect "foreign-key/apply-names-holder" grep -q "^shmprov: warning: test allocation: key $pkey is held by segment $K (4096 bytes, uid 0, creator pid $K_pid alive, 0 attached), not shmprov's: left alone; this probe used private segments instead$" "$work/lk.err"
expect "foreign-key/apply-removed-nothing" not grep -q "removed" "$work/lk.err"
expect "foreign-key/still-there-alone" test "$(rows | awk '{print $1, $2, $5}')" = "$pkey_dec $K $K_pid"
expect_code "foreign-key/verify-in-sync" 0 "$shmprov" "${db[@]}" verify
expect "foreign-key/status-not-a-leftover" test "$("$shmprov" "${db[@]}" --output json status 2>/dev/null | "$py" -c 'import json,sys; d=json.load(sys.stdin); print(d["probe_leftovers"], [s["probe_leftover"] for s in d["segments"]])')" = "[] [False]"
"$shmprov" "${db[@]}" status --remove-orphans >/dev/null 2>&1
expect "foreign-key/remove-orphans-keeps-it" test "$(rows | awk '{print $2}')" = "$K"
kill "$K_pid"
wait "$K_pid" 2>/dev/null
ipcrm -m "$K"
# Another user's segment with the key, its creator gone: not ours either.
setpriv --reuid=65534 --regid=65534 --clear-groups "$helper" create $pkey 4096 >"$work/N" || setup_failed "N"
N=$(cat "$work/N")
"$shmprov" "${db[@]}" apply --no-report >/dev/null 2>"$work/ln.err"
expect "foreign-user/apply-exit-0" test $? = 0
expect "foreign-user/left-alone" test "$(rows | awk '{print $2}')" = "$N"
expect "foreign-user/apply-says-not-ours" grep -q "key $pkey is held by segment $N (4096 bytes, uid 65534, creator pid [0-9]* gone, 0 attached), not shmprov's" "$work/ln.err"
expect_code "foreign-user/verify-in-sync" 0 "$shmprov" "${db[@]}" verify
ipcrm -m "$N"
# A profile listing the key as persistent (another program's segment meant
# to outlive its creator): what would be a leftover is left alone by all.
install -m 0644 "$work/db.yaml" "$work/dbp.yaml"
printf 'segments:\n  persistent_keys: [0x73686d70]\n' >>"$work/dbp.yaml"
Q=$("$helper" create $pkey 4096) || setup_failed "Q"
leftover_ids() { "$shmprov" "$@" --output json status 2>/dev/null | "$py" -c 'import json,sys; print([x["id"] for x in json.load(sys.stdin)["probe_leftovers"]])'; }
expect "persistent-key/a-leftover-by-the-plain-profile" test "$(leftover_ids "${db[@]}")" = "[$Q]"
expect "persistent-key/not-one-by-this-profile" test "$(leftover_ids --profile "$work/dbp.yaml")" = "[]"
"$shmprov" --profile "$work/dbp.yaml" apply --no-report >/dev/null 2>"$work/lq.err"
expect "persistent-key/apply-exit-0" test $? = 0
expect "persistent-key/apply-never-asks-for-the-key" not grep -q "$pkey" "$work/lq.err"
expect_code "persistent-key/verify-in-sync" 0 "$shmprov" --profile "$work/dbp.yaml" verify
"$shmprov" --profile "$work/dbp.yaml" status --remove-orphans >/dev/null 2>"$work/lq2.err"
expect "persistent-key/remove-orphans-keeps-it" grep -q "^shmprov: kept orphan segment id $Q: the profile marks key $pkey persistent$" "$work/lq2.err"
expect "persistent-key/left-alone" test "$(rows | awk '{print $2}')" = "$Q"
ipcrm -m "$Q"

# status --remove-orphans removes a leftover too, naming it as one.
P=$("$helper" create $pkey $db_max --noreserve) || setup_failed "P"
"$shmprov" "${db[@]}" --output json status --remove-orphans >"$work/lr.json" 2>"$work/lr.err"
expect "leftover/remove-orphans-exit-0" test $? = 0
expect "leftover/remove-orphans-logged" grep -q "^shmprov: removed probe leftover segment id $P (key $pkey, $db_max bytes, creator pid [0-9]*): still an orphan on re-check$" "$work/lr.err"
expect "leftover/remove-orphans-gone" test -z "$(rows)"
pycheck '
d = load(sys.argv[1])
check("leftover/remove-orphans-json", [(r["id"], r["kind"], r["outcome"]) for r in d["removals"]]
      == [(int(sys.argv[2]), "probe-leftover", "removed")], d["removals"])
' "$work/lr.json" "$P"

# A leftover is removed before the plan: a killed run of a bigger profile
# must not trip the guards of the next, smaller one ("shmmax below the
# largest existing segment").
echo $D >/proc/sys/kernel/shmmax
echo $D >/proc/sys/kernel/shmall
M=$("$helper" create $pkey $((2 * db_max)) --noreserve) || setup_failed "M"
"$shmprov" "${db[@]}" apply --no-report >/dev/null 2>"$work/lg.err"
expect "leftover/bigger-than-the-profile-apply-exit-0" test $? = 0
expect "leftover/bigger-than-the-profile-removed-first" grep -q "^shmprov: removed test segment id $M " "$work/lg.err"
expect "leftover/bigger-than-the-profile-no-refusal" not grep -q "refusing" "$work/lg.err"
expect "leftover/bigger-than-the-profile-gone" test -z "$(rows)"

finish
