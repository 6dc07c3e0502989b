#!/usr/bin/python3
"""Systematic syscall fault injection for shmprov (tests/faults/README.md).

    sweep.py SHMPROV SOURCE_DIR SHM_HELPER [--stride N] [--jobs N]
             [--scenario NAME[,NAME...]] [--only SYSCALL:N:FAULT] [--log-dir DIR]

For every scenario: one clean run under `strace -e trace=SET` (discovery)
numbers the occurrences of every swept system call; then, for each
occurrence after the program has started on its profile and each fault that
fits the call, the scenario is run again from the same start state with
`strace -e inject=SYSCALL:error=ERRNO:when=N` (or signal=KILL), and the
invariants of README.md are checked.

Only the main process is traced (no -f): strace's when=N counts the
occurrences of a system call per process, so tracing a libcurl thread
would interleave another thread's calls and make the numbers depend on
scheduling.

Everything that runs shmprov or writes kernel limits runs in a worker: a
copy of this script started with `unshare --ipc --mount`, which mounts
tmpfs over every directory shmprov writes (as tests/integration/lib.sh
does) before anything else. Each worker has its own IPC namespace (its own
/proc/sys/kernel/shm* and segments), its own /etc/sysctl.d, spool, lock
directory and collector, so cases in different workers never share state.
Standard library only.
"""

import argparse
import ctypes
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback

# ---------------------------------------------------------------------------
# What is swept

SWEPT = tuple("""
openat read write pread64 pwrite64 close newfstatat fstat statx fsync fdatasync
renameat renameat2 rename unlinkat unlink mkdir mkdirat fchmod ftruncate flock
getdents64 fcntl access faccessat faccessat2 readlink lseek shmget shmctl shmat
shmdt socket connect sendto recvfrom sendmsg recvmsg poll ppoll setsockopt
getsockopt getrandom wait4 pidfd_open clone clone3 ioctl
""".split())

FAULTS = ("EIO", "EINTR", "ENOSPC", "EACCES", "EROFS", "KILL")
ERRNO = {"EIO": 5, "EINTR": 4, "ENOSPC": 28, "EACCES": 13, "EROFS": 30, "ENOMEM": 12}
# EIO fits every call, KILL is sent at every occurrence; the others where
# the call can really return them.
FITS = {
    "EINTR": set("openat read write pread64 pwrite64 fsync fdatasync renameat renameat2 flock getrandom "
                 "connect poll ppoll sendto recvfrom wait4 close".split()),
    "ENOSPC": set("write pwrite64 fsync fdatasync openat mkdir mkdirat renameat renameat2 ftruncate shmget".split()),
    "EACCES": set("openat mkdir mkdirat unlinkat renameat renameat2 access faccessat faccessat2 newfstatat "
                  "shmget shmctl connect".split()),
    "EROFS": set("openat write mkdir mkdirat renameat renameat2 unlinkat fchmod ftruncate".split()),
}
# EINTR on these must be retried: the case ends exactly as the clean run.
MUST_RETRY_EINTR = set("openat fsync renameat renameat2 write read getrandom".split())


def faults_for(syscall):
    out = ["EIO"]
    for f in ("EINTR", "ENOSPC", "EACCES", "EROFS"):
        if syscall in FITS[f]:
            out.append(f)
    out.append("KILL")
    return out


# ---------------------------------------------------------------------------
# Fixed paths inside a worker's namespace (the same in every worker, so the
# drop-in bytes, which name the profile, are the same too)

WORK = "/run/shmprov-faults"            # on the private /run overlay
PROFILES = WORK + "/profiles"
DROPIN = "/etc/sysctl.d/60-shmprov.conf"
SYSCTL_DIRS = ("/etc/sysctl.d", "/run/sysctl.d")
SPOOL = "/var/lib/shmprov/spool"
KERNEL = "/proc/sys/kernel"
KEYS = ("shmmax", "shmall", "shmmni")
DEFAULTS = (18446744073692774399, 18446744073692774399, 4096)
TEMP_PREFIX = ".shmprov-tmp."

LIVE_KEY = 0x5F000010                     # attached by a live helper (worker lifetime)
ORPHAN_KEYS = (0x5F000001, 0x5F000002)    # creator gone: must go with exit 0
PERSISTENT_KEY = 0x5F0000AA               # an orphan the profile keeps

PROFILE_A = "version: 1\nhost: {ram_tier: small}\n"
PROFILE_B = "version: 1\nhost: {ram_tier: medium}\nlimits: {shmmni: 8192}\n"

RUN_TIMEOUT = 90          # seconds, one traced run (report.timeout is 5 s)
CLEAN_TIMEOUT = 60
STALE_LOCK_SECONDS = 5.0  # a clean apply slower than this waited on a lock

EVENT_RE = re.compile(r"^\d{20}-([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\.json$")
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
CALL_RE = re.compile(r"^([a-z0-9_]+)\(")
# A call on a shared object's file: the dynamic loader at work (dlopen).
DSO_RE = re.compile(r'(= |")/[^ "]*(\.so(\.[0-9]+)*|/ld\.so\.cache)(\]|")')


class Scenario:
    def __init__(self, name, profile, args, kind, start_dropin="A", start_rt="A", report=False, spool=None,
                 probe_fails=False, recover_args=None):
        self.name = name
        self.profile = profile          # profile name (file PROFILES/NAME.yaml)
        self.args = args                # the command run under strace
        self.kind = kind                # apply | flush | status
        self.start_dropin = start_dropin  # "A" or None (absent)
        self.start_rt = start_rt        # "A" or "default"
        self.report = report
        self.spool = spool              # None (not touched) | "empty" | "flush" | "bounded"
        self.probe_fails = probe_fails
        self.recover_args = recover_args or ["apply", "--no-report"]


SCENARIOS = [
    Scenario("apply-a-to-b", "B", ["apply", "--no-report"], "apply"),
    Scenario("apply-fresh", "B", ["apply", "--no-report"], "apply", start_dropin=None, start_rt="default"),
    Scenario("apply-probe-fails", "B", ["apply", "--no-report"], "apply", probe_fails=True),
    # The clean apply after each case uses the scenario's profile; it reports
    # only where its event is needed (it carries the drop count of the
    # bounded spool); elsewhere the clean flush has already used the spool
    # and the network, and loading libcurl again would cost 50 ms a case.
    Scenario("apply-report", "BR", ["apply"], "apply", report=True, spool="empty",
             recover_args=["apply", "--no-report"]),
    Scenario("flush", "BR", ["flush"], "flush", report=True, spool="flush", recover_args=["apply", "--no-report"]),
    Scenario("apply-bounded-spool", "BRS", ["apply", "--defer-report"], "apply", report=True, spool="bounded",
             recover_args=["apply"]),
    Scenario("status-remove-orphans", "S", ["status", "--remove-orphans"], "status"),
]
BY_NAME = {s.name: s for s in SCENARIOS}


def strerror(name):
    return os.strerror(ERRNO[name])


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def die_with_parent(sig=signal.SIGTERM):
    """prctl(PR_SET_PDEATHSIG): a collector or helper never outlives its
    worker, nor a worker the main process."""
    ctypes.CDLL(None, use_errno=True).prctl(1, int(sig), 0, 0, 0)


# ---------------------------------------------------------------------------
# Trace parsing (discovery)

def parse_trace(text):
    """The calls of a strace -o file, in order: [(name, line)]. Signal lines
    (--- SIG... ---) and exit lines (+++ ... +++) are not calls."""
    calls = []
    for line in text.splitlines():
        m = CALL_RE.match(line)
        if m:
            calls.append((m.group(1), line))
    return calls


def _ret(line):
    tail = line.rsplit(") = ", 1)
    if len(tail) != 2:
        return None
    try:
        return int(tail[1].split()[0], 0)
    except ValueError:
        return None


def annotate(calls):
    """A short context for each call: the strace line, and what its fd is."""
    fds = {0: "stdin", 1: "stdout", 2: "stderr"}
    out = []
    for name, line in calls:
        args = line[len(name) + 1:]
        note = ""
        m = re.match(r'(AT_FDCWD|-?\d+), "((?:[^"\\]|\\.)*)"', args)
        m_fd = re.match(r"(-?\d+)[,)]", args)
        if m and m.group(1) != "AT_FDCWD" and name in ("openat", "newfstatat", "unlinkat", "renameat",
                                                      "renameat2", "mkdirat", "faccessat", "faccessat2"):
            note = "%s %s = %s" % ("fd" if m.group(2) == "" else "dir fd", m.group(1),
                                   fds.get(int(m.group(1)), "?"))
        elif m_fd and name not in ("shmget", "shmctl", "shmat", "shmdt", "clone", "clone3", "wait4",
                                   "pidfd_open", "getrandom", "socket", "poll", "ppoll"):
            fd = int(m_fd.group(1))
            if fd in fds:
                note = "fd %d = %s" % (fd, fds[fd])
        elif name in ("poll", "ppoll"):
            pf = re.findall(r"\{fd=(\d+)", args)
            note = ", ".join("fd %s = %s" % (f, fds.get(int(f), "?")) for f in pf)
        ret = _ret(line)
        if name == "openat" and m and ret is not None and ret >= 0:
            path = m.group(2)
            if m.group(1) != "AT_FDCWD":
                path = fds.get(int(m.group(1)), "?") + "/" + path
            fds[ret] = path
        elif name == "socket" and ret is not None and ret >= 0:
            fds[ret] = "socket"
        elif name == "pidfd_open" and ret is not None and ret >= 0:
            fds[ret] = "pidfd"
        elif name == "fcntl" and "F_DUPFD" in args and m_fd and ret is not None and ret >= 0:
            fds[ret] = fds.get(int(m_fd.group(1)), "?")
        elif name == "close" and m_fd:
            fds.pop(int(m_fd.group(1)), None)
        short = line if len(line) <= 140 else line[:137] + "..."
        out.append(short + ("   [" + note + "]" if note else ""))
    return out


# ---------------------------------------------------------------------------
# The worker: runs inside its own unshare --ipc --mount

class Result:
    def __init__(self, argv, rc, out, err, secs, hung):
        self.argv, self.rc, self.out, self.err, self.secs, self.hung = argv, rc, out, err, secs, hung


class Worker:
    def __init__(self, cfg):
        self.cfg = cfg
        self.shmprov = cfg["shmprov"]
        self.src = cfg["src"]
        self.helper = cfg["helper"]
        self.scenarios = [BY_NAME[n] for n in cfg["scenarios"]]
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.collector = None
        self.live = None
        self.live_id = None
        self.log_path = WORK + "/collector.jsonl"
        self.log_off = 0
        self.dropins = {}
        self.rt = {"default": DEFAULTS}
        self.snapshots = {"empty": []}
        self.case_no = 0
        env = dict(os.environ)
        env["LC_ALL"] = "C"
        env.pop("LANGUAGE", None)
        self.env = env
        traced = dict(env)
        # LeakSanitizer cannot run under ptrace (sanitizer builds).
        asan = traced.get("ASAN_OPTIONS", "")
        traced["ASAN_OPTIONS"] = (asan + ":" if asan else "") + "detect_leaks=0"
        self.traced_env = traced

    # -- namespace ----------------------------------------------------------

    def enter(self):
        """Mounts as tests/integration/lib.sh enter_private_namespace does. We
        are already in fresh IPC and mount namespaces (unshare); check it."""
        host = self.cfg["host_ns"]
        for ns in ("ipc", "mnt"):
            if os.stat("/proc/self/ns/" + ns).st_ino == host[ns]:
                raise SystemExit("worker: not in a private %s namespace; refusing to run" % ns)
        scratch = self.cfg["scratch"]
        sh = lambda *a: subprocess.run(a, check=True)
        sh("mount", "--make-rprivate", "/")
        sh("mount", "-t", "tmpfs", "-o", "size=512m,mode=0700", "shmprov-faults", scratch)
        for d in ("/etc", "/var/lib", "/run"):
            os.makedirs(scratch + "/upper" + d)
            os.makedirs(scratch + "/work" + d)
            sh("mount", "-t", "overlay", "shmprov-overlay", "-o",
               "lowerdir=%s,upperdir=%s/upper%s,workdir=%s/work%s" % (d, scratch, d, scratch, d), d)
        for d in ("/etc/sysctl.d", "/run/sysctl.d", "/etc/shmprov", "/var/lib/shmprov", "/run/shmprov"):
            os.makedirs(d, exist_ok=True)
            sh("mount", "-t", "tmpfs", "-o", "size=4m,mode=0755", "shmprov-test", d)
        os.makedirs(PROFILES)
        os.makedirs(WORK + "/tmp")
        os.environ["TMPDIR"] = WORK + "/tmp"
        with open("/etc/sysctl.conf", "w") as f:
            f.write("# (test) nothing here\n")

    # -- processes ----------------------------------------------------------

    def run(self, argv, timeout=CLEAN_TIMEOUT, env=None):
        t0 = time.monotonic()
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=env or self.env, start_new_session=True)
        hung = False
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            hung = True
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            out, err = p.communicate()
        return Result(argv, p.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"),
                      time.monotonic() - t0, hung)

    def shmprov_argv(self, profile, args):
        return [self.shmprov, "--profile", "%s/%s.yaml" % (PROFILES, profile)] + list(args)

    def clean(self, profile, args, timeout=CLEAN_TIMEOUT):
        return self.run(self.shmprov_argv(profile, args), timeout=timeout)

    def start_collector(self):
        out = WORK + "/collector.out"
        with open(out, "w") as f:
            self.collector = subprocess.Popen(
                ["/usr/bin/python3", self.src + "/tests/collector/collector.py", "--port", "0", "--log",
                 self.log_path], stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent)
        for _ in range(400):
            text = open(out).read()
            m = re.search(r"^listening on 127\.0\.0\.1:(\d+)", text, re.M)
            if m:
                return int(m.group(1))
            if self.collector.poll() is not None:
                break
            time.sleep(0.025)
        raise RuntimeError("the test collector did not start: " + open(out).read())

    def start_live_helper(self):
        self.live = subprocess.Popen([self.helper, "create", "0x%08x" % LIVE_KEY, "4096", "--attach", "--hold"],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     preexec_fn=die_with_parent)
        line = self.live.stdout.readline().decode().strip()
        if not line.isdigit():
            raise RuntimeError("shm_helper (live holder) did not start: " + self.live.stderr.read().decode())
        self.live_id = int(line)

    def stop(self):
        for p in (self.collector, self.live):
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()

    # -- state --------------------------------------------------------------

    @staticmethod
    def read_rt():
        vals = []
        for k in KEYS:
            with open("%s/%s" % (KERNEL, k)) as f:
                vals.append(int(f.read().strip()))
        return tuple(vals)

    @staticmethod
    def write_rt(vals):
        for k, v in zip(KEYS, vals):
            with open("%s/%s" % (KERNEL, k), "w") as f:
                f.write("%d\n" % v)

    @staticmethod
    def read_dropin():
        try:
            with open(DROPIN, "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None

    @staticmethod
    def segments():
        """{shmid: (key, bytes, nattch)} of this IPC namespace."""
        segs = {}
        with open("/proc/sysvipc/shm") as f:
            next(f)
            for line in f:
                p = line.split()
                if len(p) >= 7:
                    segs[int(p[1])] = (int(p[0]) & 0xFFFFFFFF, int(p[3]), int(p[6]))
        return segs

    def remove_segments(self, keep=()):
        for shmid in self.segments():
            if shmid not in keep:
                self.libc.shmctl(shmid, 0, None)  # IPC_RMID

    @staticmethod
    def temp_files():
        return sorted(n for n in os.listdir("/etc/sysctl.d") if n.startswith(TEMP_PREFIX))

    @staticmethod
    def clear_dir(d):
        for name in os.listdir(d):
            p = os.path.join(d, name)
            if os.path.isdir(p) and not os.path.islink(p):
                shutil.rmtree(p)
            else:
                os.unlink(p)

    @staticmethod
    def write_file(path, data, mode):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
        try:
            os.write(fd, data)
            os.fchmod(fd, mode)
        finally:
            os.close(fd)

    def snapshot_spool(self):
        files = []
        for name in sorted(os.listdir(SPOOL)):
            p = os.path.join(SPOOL, name)
            if os.path.isfile(p) and not os.path.islink(p):
                with open(p, "rb") as f:
                    files.append((name, f.read(), os.stat(p).st_mode & 0o7777))
        return files

    def restore_spool(self, files):
        if os.path.lexists(SPOOL):
            shutil.rmtree(SPOOL)
        os.mkdir(SPOOL, 0o700)
        os.chmod(SPOOL, 0o700)
        for name, data, mode in files:
            self.write_file(os.path.join(SPOOL, name), data, mode)

    @staticmethod
    def spool_state():
        """(event ids directly in the spool, ids in quarantine/ or rejected/,
        problems: event files that are not a whole event)."""
        ids, held, problems = set(), set(), []
        try:
            names = os.listdir(SPOOL)
        except FileNotFoundError:
            names = []
        for name in names:
            m = EVENT_RE.match(name)
            p = os.path.join(SPOOL, name)
            if not m or not os.path.isfile(p) or os.path.islink(p):
                continue
            ids.add(m.group(1))
            try:
                with open(p, "rb") as f:
                    ev = json.loads(f.read().decode("utf-8"))
                if not isinstance(ev, dict) or ev.get("id") != m.group(1):
                    problems.append("%s: not the event its name says (id %r)" % (name, ev.get("id")
                                                                                if isinstance(ev, dict) else None))
            except (OSError, ValueError) as e:
                problems.append("%s: not a whole event (%s)" % (name, e))
        for sub in ("quarantine", "rejected"):
            for root, _dirs, files in os.walk(os.path.join(SPOOL, sub)):
                for name in files:
                    found = UUID_RE.findall(name)
                    if not found:
                        try:
                            with open(os.path.join(root, name), "rb") as f:
                                doc = json.loads(f.read().decode("utf-8"))
                            for ev in doc if isinstance(doc, list) else [doc]:
                                if isinstance(ev, dict) and isinstance(ev.get("id"), str):
                                    found.append(ev["id"])
                        except (OSError, ValueError):
                            pass
                    held.update(found)
        return ids, held, problems

    def collector_skip(self):
        self.log_off = os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0

    def collector_read(self):
        """Events in the requests logged since the last call: [event dict]."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self.log_off)
                data = f.read()
        except FileNotFoundError:
            return []
        end = data.rfind(b"\n")
        if end < 0:
            return []
        self.log_off += end + 1
        events = []
        for line in data[:end + 1].splitlines():
            try:
                rec = json.loads(line)
                doc = json.loads(rec.get("body") or "null")
            except ValueError:
                continue
            for ev in doc if isinstance(doc, list) else [doc]:
                if isinstance(ev, dict) and isinstance(ev.get("id"), str):
                    events.append(ev)
        return events

    def make_orphans(self):
        for key in ORPHAN_KEYS + (PERSISTENT_KEY,):
            r = subprocess.run([self.helper, "create", "0x%08x" % key, "4096"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
            if r.returncode != 0:
                raise RuntimeError("shm_helper create 0x%08x: %s" % (key, r.stderr.decode()))

    def reset(self, sc):
        """The scenario's start state, in Python, no extra process (except
        shm_helper for the orphans, which must be made by a process that
        exits)."""
        for d in SYSCTL_DIRS:
            self.clear_dir(d)
        if sc.start_dropin:
            self.write_file(DROPIN, self.dropins[sc.start_dropin], 0o644)
        self.write_rt(self.rt[sc.start_rt])
        keep = (self.live_id,) if self.live_id is not None else ()
        self.remove_segments(keep)
        if sc.spool:
            self.restore_spool(self.snapshots[sc.spool])
        if sc.report:
            self.collector_skip()
        if sc.kind == "status":
            if self.live is None or self.live.poll() is not None:
                raise RuntimeError("the live shm_helper died")
            self.make_orphans()

    def state(self):
        return {"dropin": self.read_dropin(), "rt": self.read_rt()}

    def dropin_label(self, data, sc):
        if data is None:
            return "absent"
        for name in ("A", sc.profile):
            if data == self.dropins.get(name):
                return name
        return "other(%d bytes)" % len(data)

    # -- setup --------------------------------------------------------------

    def setup(self):
        self.enter()
        names = {s.name for s in self.scenarios}
        need_report = any(s.report for s in self.scenarios)
        profiles = {"A": PROFILE_A, "B": PROFILE_B,
                    "S": PROFILE_B + "segments: {persistent_keys: [0x%08x]}\n" % PERSISTENT_KEY}
        port = None
        if need_report:
            port = self.start_collector()
            rep = "report: {url: http://127.0.0.1:%d/v1/events, timeout: 5" % port
            profiles["AR"] = PROFILE_A + rep + "}\n"
            profiles["BR"] = PROFILE_B + rep + "}\n"
            profiles["BRS"] = PROFILE_B + rep + ", spool_max_events: 2}\n"
        for name, text in profiles.items():
            path = "%s/%s.yaml" % (PROFILES, name)
            with open(path, "w") as f:
                f.write(text)
            os.chmod(path, 0o644)
        if "status-remove-orphans" in names:
            self.start_live_helper()

        # A's and B's drop-in bytes and runtime values, from clean applies.
        class Fresh:
            start_dropin, start_rt, spool, report, kind = None, "default", None, False, "apply"
        self.reset(Fresh)
        for name in ["A", "B"] + [n for n in ("BR", "BRS", "S") if n in profiles]:
            r = self.clean(name, ["apply", "--no-report"])
            if r.rc != 0:
                raise RuntimeError("setup: clean apply of profile %s exited %s: %s" % (name, r.rc, r.err))
            self.dropins[name] = self.read_dropin()
            if name in ("A", "B"):
                self.rt[name] = self.read_rt()
            elif self.read_rt() != self.rt["B"]:
                raise RuntimeError("setup: profile %s did not set B's values" % name)
        if self.rt["A"] == self.rt["B"] or self.dropins["A"] == self.dropins["B"]:
            raise RuntimeError("setup: A and B do not differ")

        # Spool snapshots: 3 deferred reports (flush), 2 (bounded spool).
        if need_report:
            for snap, runs in (("flush", ["AR", "BR", "AR"]), ("bounded", ["AR", "BR"])):
                self.restore_spool([])
                for name in runs:
                    r = self.clean(name, ["apply", "--defer-report"])
                    if r.rc != 0:
                        raise RuntimeError("setup: apply --defer-report %s exited %s: %s" % (name, r.rc, r.err))
                files = self.snapshot_spool()
                n = sum(1 for f in files if EVENT_RE.match(f[0]))
                if n != len(runs):
                    raise RuntimeError("setup: the %s snapshot holds %d events, not %d" % (snap, n, len(runs)))
                self.snapshots[snap] = files
        self.remove_segments((self.live_id,) if self.live_id is not None else ())
        return {"port": port, "rt": self.rt, "live_id": self.live_id}

    # -- one run ------------------------------------------------------------

    def strace_argv(self, sc, trace, syscall=None, occ=None, fault=None, base=None, discover=False):
        # No -f: only the main process is traced, so when=N counts that one
        # process's calls and the numbers found by discovery stay the same
        # from run to run (a libcurl thread runs untraced).
        argv = ["strace", "-qq", "-o", trace]
        if discover:
            traced = list(SWEPT)
        else:
            traced = [syscall] if syscall else []
            if base and "shmget" not in traced:
                traced.append("shmget")
        # strace injects only into traced calls: trace what is injected.
        argv += ["-e", "trace=" + (",".join(traced) if traced else "none")]
        if syscall:
            if fault == "KILL":
                argv += ["-e", "inject=%s:signal=KILL:when=%d" % (syscall, occ)]
            else:
                argv += ["-e", "inject=%s:error=%s:when=%d" % (syscall, fault, occ)]
        if base:
            argv += ["-e", "inject=shmget:error=ENOMEM:when=%d" % base]
        return argv + self.shmprov_argv(sc.profile, sc.args)

    def discover(self, name):
        sc = BY_NAME[name]
        trace = WORK + "/tmp/discover-%s.trace" % name
        base = None
        if sc.probe_fails:
            # First a plain run, to find the acceptance step: the shmget of
            # exactly B's shmmax bytes.
            self.reset(sc)
            r = self.run(self.strace_argv(sc, trace, discover=True), timeout=RUN_TIMEOUT, env=self.traced_env)
            calls = parse_trace(open(trace, errors="replace").read())
            n = 0
            for cname, line in calls:
                if cname == "shmget":
                    n += 1
                    m = re.match(r"shmget\([^,]*, (\d+),", line)
                    if m and int(m.group(1)) == self.rt["B"][0]:
                        base = n
                        break
            if base is None:
                raise RuntimeError("apply-probe-fails: no shmget of %d bytes in the discovery run (exit %s): %s"
                                   % (self.rt["B"][0], r.rc, r.err))
        argv = self.strace_argv(sc, trace, discover=True, base=base)
        res = self.case({"scenario": name, "syscall": None, "occ": None, "fault": None, "base": base,
                         "clean_sig": None, "before_profile": False, "stderr_write": False},
                        argv_override=argv, trace=trace)
        calls = parse_trace(open(trace, errors="replace").read())
        prof = '"%s/%s.yaml"' % (PROFILES, sc.profile)
        marker = next((i for i, (n, l) in enumerate(calls) if n == "openat" and prof in l), None)
        if marker is None:
            raise RuntimeError("%s: the discovery run never opened its profile (exit %s): %s"
                               % (name, res["rc"], res["stderr"]))
        # The profile is loaded (its URL known) once its fd is closed.
        fd = _ret(calls[marker][1])
        loaded = marker
        for i in range(marker + 1, len(calls)):
            if calls[i][0] == "close" and calls[i][1].startswith("close(%d)" % fd):
                loaded = i
                break
        notes = annotate(calls)
        counts, points, skipped = {}, [], 0
        for i, (cname, line) in enumerate(calls):
            if cname not in SWEPT:
                continue
            counts[cname] = counts.get(cname, 0) + 1
            if i < marker:
                skipped += 1
                continue
            if sc.probe_fails and cname == "shmget":
                continue
            points.append({"syscall": cname, "occ": counts[cname], "context": notes[i],
                           "before_profile": i <= loaded, "stderr_write": line.startswith("write(2,"),
                           "dso": bool(DSO_RE.search(notes[i]))})
        return {"scenario": name, "points": points, "skipped": skipped, "base": base, "clean": res,
                "calls": len(calls)}

    def case(self, req, argv_override=None, trace=None):
        self.case_no += 1
        sc = BY_NAME[req["scenario"]]
        syscall, occ, fault, base = req["syscall"], req["occ"], req["fault"], req["base"]
        trace = trace or "%s/tmp/case.trace" % WORK
        argv = argv_override or self.strace_argv(sc, trace, syscall, occ, fault, base)
        v = []   # violations: (kind, text)

        def bad(kind, text):
            v.append((kind, text))

        phases = [("start", time.monotonic())]
        self.reset(sc)
        phases.append(("reset", time.monotonic()))
        start = self.state()
        start_segs = self.segments()
        snap_ids = {EVENT_RE.match(f[0]).group(1) for f in self.snapshots.get(sc.spool, []) if
                    EVENT_RE.match(f[0])} if sc.report else set()

        # ---- the run --------------------------------------------------------
        if argv_override is None and os.path.exists(trace):
            os.unlink(trace)
        res = self.run(argv, timeout=RUN_TIMEOUT, env=self.traced_env)
        phases.append(("run", time.monotonic()))
        try:
            text = open(trace, errors="replace").read()
        except FileNotFoundError:
            text = ""
        lines = text.splitlines()
        killed = any(l.startswith("+++ killed by SIGKILL") for l in lines)
        injected = False
        if syscall:
            injected = any(l.startswith(syscall + "(") and "(INJECTED)" in l for l in lines)
            if fault == "KILL":
                injected = killed
        base_hit = bool(base) and any(l.startswith("shmget(") and "(INJECTED)" in l
                                      for l in lines)
        rc = res.rc
        was_killed = fault == "KILL" and rc == -signal.SIGKILL
        exited = rc is not None and rc >= 0 and not res.hung
        err = res.err
        after = self.state()
        after_segs = self.segments()
        start_label = self.dropin_label(start["dropin"], sc)
        label = self.dropin_label(after["dropin"], sc)
        rt_a, rt_b, rt_start = self.rt["A"], self.rt["B"], start["rt"]

        # ---- exit code, crash, sanitizers ------------------------------------
        if res.hung:
            bad("hang", "did not finish within %d s (killed)" % RUN_TIMEOUT)
        elif rc < 0 and not was_killed:
            bad("crash", "killed by signal %d (%s)" % (-rc, signal.Signals(-rc).name if -rc in
                                                        signal.valid_signals() else "?"))
        elif rc not in (0, 1) and rc >= 0:
            bad("exit-code", "exit %d (only 0 or 1 are allowed under an I/O fault)" % rc)
        for word in ("AddressSanitizer", "runtime error:", "LeakSanitizer"):
            if word in err:
                bad("sanitizer", "stderr mentions %r" % word)

        # ---- the error message -----------------------------------------------
        if exited and rc != 0 and not req.get("stderr_write"):
            # The errno is named by its strerror text (or its symbolic name,
            # e.g. "refused with ENOSPC", which says the same).
            wanted = []
            if injected and fault not in (None, "KILL"):
                wanted += [strerror(fault), re.compile(r"\b%s\b" % fault)]
            if base_hit:
                wanted += [strerror("ENOMEM"), re.compile(r"\bENOMEM\b")]
            names = lambda l: any((w.search(l) if hasattr(w, "search") else w in l) for w in wanted)
            elines = [l for l in err.splitlines() if "error:" in l]
            texts = " or ".join(repr(w) for w in wanted if isinstance(w, str))
            if not wanted:
                bad("exit-without-fault", "exit %d although no fault was injected" % rc)
            elif not elines:
                bad("errno-missing", "exit %d without any 'error:' line" % rc)
            elif not any(names(l) for l in elines):
                if any(names(l) for l in err.splitlines()):
                    bad("errno-only-in-warning", "exit %d: %s is on stderr, but in no 'error:' line" % (rc, texts))
                else:
                    bad("errno-missing", "exit %d: no 'error:' line names %s" % (rc, texts))

        # ---- state: drop-in and kernel limits ------------------------------
        allowed = {start_label, sc.profile} if sc.kind == "apply" else {start_label}
        if label not in allowed:
            bad("dropin-damaged", "the drop-in is %s (start %s, target %s)%s" % (
                label, start_label, sc.profile,
                ": %r" % after["dropin"][:120] if after["dropin"] and label.startswith("other") else ""))
        for i, k in enumerate(KEYS):
            val = after["rt"][i]
            if val not in (rt_a[i], rt_b[i], rt_start[i]):
                bad("limit-foreign", "kernel.%s is %d: neither profile's value (A %d, B %d) nor the start's (%d)"
                    % (k, val, rt_a[i], rt_b[i], rt_start[i]))

        said = res.out + "\n" + err
        not_applicable = "runtime not applicable here" in said
        at_start = label == start_label and after["rt"] == rt_start
        at_target = label == sc.profile and after["rt"] == rt_b
        if sc.kind == "apply" and exited:
            if rc == 0:
                if not_applicable and at_start:
                    pass
                elif not at_target:
                    bad("success-not-applied", "exit 0 but drop-in %s and runtime %s, not %s and %s" % (
                        label, after["rt"], sc.profile, rt_b))
                else:
                    vr = self.clean(sc.profile, ["verify"])
                    if vr.rc != 0:
                        bad("success-verify", "exit 0 but a clean verify exits %s: %s" % (vr.rc, tail(vr.out + vr.err)))
            elif at_target and STDOUT_FAILED in err:
                pass  # the change was made; only its result could not be shown (README)
            elif not at_start:
                self.check_not_restored(bad, err, start, after, sc, label, start_label)
        elif sc.kind in ("flush", "status") and not at_start:
            bad("state-touched", "%s changed the drop-in (%s) or the runtime (%s)" % (sc.args[0], label, after["rt"]))

        # ---- status: segments ----------------------------------------------
        if sc.kind == "status":
            keys_after = {k for (k, _b, _n) in after_segs.values()}
            if self.live_id not in after_segs:
                bad("orphans-live-removed", "the segment attached by a live process (id %d) was removed"
                    % self.live_id)
            if PERSISTENT_KEY not in keys_after:
                bad("orphans-persistent-removed", "the persistent-key segment 0x%08x was removed" % PERSISTENT_KEY)
            if exited and rc == 0:
                left = [k for k in ORPHAN_KEYS if k in keys_after]
                if left:
                    bad("orphans-left", "exit 0 but orphan(s) %s still there" % ", ".join("0x%08x" % k for k in left))

        # ---- reports: the spool right after the run --------------------------
        sig_extra = {}
        if sc.report:
            s1, q1, problems = self.spool_state()
            for p in problems:
                bad("spool-damaged", p)
            r1 = self.collector_read()
            sig_extra = {"spooled": len(s1), "received_in_run": len({e["id"] for e in r1})}
            # a clean flush, then (below) a clean apply that reports
            fr = self.clean(sc.profile, ["flush"])
            r2 = self.collector_read()
            s2, q2, _ = self.spool_state()
            if fr.rc != 0:
                bad("recovery-flush", "a clean flush after the run exits %s: %s" % (fr.rc, tail(fr.out + fr.err)))
            if fr.secs > STALE_LOCK_SECONDS:
                bad("stale-lock", "a clean flush took %.1f s (a lock left held?)" % fr.secs)

        # ---- recovery: a clean apply, verify, no temp, no segment ------------
        phases.append(("checks+flush", time.monotonic()))
        ra = self.clean(sc.profile, sc.recover_args)
        if ra.rc != 0 or ra.hung:
            bad("recovery-apply", "a clean apply after the run exits %s: %s" % (ra.rc, tail(ra.err or ra.out)))
        if ra.secs > STALE_LOCK_SECONDS:
            bad("stale-lock", "a clean apply took %.1f s (a lock left held?)" % ra.secs)
        vr = self.clean(sc.profile, ["verify"])
        if vr.rc != 0:
            bad("recovery-verify", "verify after the clean apply exits %s: %s" % (vr.rc, tail(vr.out + vr.err)))
        phases.append(("recovery", time.monotonic()))
        temps = self.temp_files()
        if temps:
            bad("temp-left", "temporary file(s) left in /etc/sysctl.d after a clean apply: %s" % ", ".join(temps))
        segs = self.segments()
        if sc.kind == "status":
            allowed_ids = {self.live_id} | {i for i, s in start_segs.items() if s[0] in ORPHAN_KEYS + (
                PERSISTENT_KEY,) and i in after_segs}
            extra = {i: s for i, s in segs.items() if i not in allowed_ids}
        else:
            extra = {i: s for i, s in segs.items() if i != self.live_id}
        if extra:
            bad("segment-left", "segment(s) left after the clean apply: %s" % ", ".join(
                "id %d key 0x%08x %d bytes nattch %d" % (i, s[0], s[1], s[2]) for i, s in sorted(extra.items())))

        # ---- reports: every event accounted for ------------------------------
        if sc.report:
            r3 = self.collector_read()
            s3, q3, _ = self.spool_state()
            got12 = {e["id"] for e in r1 + r2}
            for i in sorted(s1):
                if i not in got12 and i not in q2:
                    bad("report-not-flushed", "event %s was in the spool after the run; the clean flush neither "
                        "delivered nor quarantined it (still spooled: %s)" % (i, i in s2))
            gone = snap_ids - s1 - got12 - q2 - q1
            if gone and sc.spool != "bounded":
                bad("report-disappeared", "event(s) of the start spool gone without being received or "
                    "quarantined: %s" % ", ".join(sorted(gone)))
            if sc.spool == "bounded":
                received = {}
                for e in r1 + r2 + r3:
                    received.setdefault(e["id"], e)
                dropped = 0
                unknown = False
                for e in received.values():
                    d = e.get("data") if isinstance(e.get("data"), dict) else {}
                    if isinstance(d.get("reports_dropped"), int):
                        dropped += d["reports_dropped"]
                    if d.get("reports_dropped_unknown") is True:
                        unknown = True
                if len(gone) > dropped and not unknown:
                    bad("drop-undercount", "%d event(s) of the start spool gone without delivery (%s) but the "
                        "received events report %d dropped" % (len(gone), ", ".join(sorted(gone)), dropped))
            new = (got12 | s1 | q2 | q1) - snap_ids
            limit = 1 if sc.kind == "apply" else 0
            if len(new) > limit:
                bad("report-new-ids", "%d new event id(s) (at most %d for one %s): %s" % (
                    len(new), limit, sc.args[0], ", ".join(sorted(new))))
            if sc.kind == "apply" and exited:
                if "report LOST" in err:
                    if new:
                        bad("report-lost-untrue", "stderr says 'report LOST' but event %s exists"
                            % ", ".join(sorted(new)))
                elif not new:
                    # Every apply that loaded its profile reports, refusals
                    # (lock, plan, guard, boot order) included, and says its
                    # result on stdout ("shmprov apply: refused"); only one
                    # that never got that far (the profile unreadable) has
                    # nothing to report.
                    if reached_result(res.out, err):
                        bad("report-missing", "apply exited %d without an event and without 'report LOST'" % rc)
                else:
                    own = sorted(new)[0]
                    if own not in got12:
                        bad("report-not-flushed", "apply exited %d; its event %s was not received after the "
                            "clean flush (%s)" % (rc, own, "quarantined or rejected" if own in q2 | q1 else
                                                  "still spooled" if own in s2 else "gone"))
            if sc.kind == "flush" and req["fault"] is None:
                if not snap_ids <= {e["id"] for e in r1} or rc != 0:
                    bad("flush-clean", "the clean flush run delivered %d of the %d spooled events (exit %s)" % (
                        len(snap_ids & {e["id"] for e in r1}), len(snap_ids), rc))

        # ---- EINTR on calls that must retry: ends as the clean run -----------
        phases.append(("end", time.monotonic()))
        sig = {"rc": rc, "dropin": label, "runtime": list(after["rt"])}
        sig.update(sig_extra)
        if sc.kind == "status":
            sig["segments"] = sorted("0x%08x" % s[0] for s in after_segs.values())
        clean_sig = req.get("clean_sig")
        if fault == "EINTR" and syscall in MUST_RETRY_EINTR and injected and clean_sig is not None \
                and sig != clean_sig:
            diff = ", ".join("%s %s (clean: %s)" % (k, sig.get(k), clean_sig.get(k)) for k in sorted(clean_sig)
                             if sig.get(k) != clean_sig.get(k))
            # ld.so does not retry EINTR while dlopen() reads a library:
            # a class of its own, which only shmprov's caller can handle.
            bad("eintr-not-retried-dlopen" if req.get("dso") else "eintr-not-retried",
                "EINTR was not retried: %s" % diff)

        return {"scenario": sc.name, "syscall": syscall, "occ": occ, "fault": fault,
                "cmd": " ".join(argv), "rc": rc, "stdout": tail(res.out, 1500), "stderr": tail(err, 3000),
                "injected": injected, "killed": killed, "base_hit": base_hit, "secs": round(res.secs, 3),
                "violations": v, "sig": sig,
                "phases": {phases[i][0]: round(phases[i][1] - phases[i - 1][1], 4) for i in range(1, len(phases))}}

    def check_not_restored(self, bad, err, start, after, sc, label, start_label):
        """A failed apply must leave the start state; where it could not,
        every item that differs must be named in a 'NOT restored' message."""
        clauses = [c for c in re.split(r"[;\n]", err) if "NOT restored" in c]
        missing = []
        if label != start_label:
            if not any(DROPIN in c for c in clauses):
                missing.append("the drop-in (%s, start %s)" % (label, start_label))
        for i, k in enumerate(KEYS):
            now, was = after["rt"][i], start["rt"][i]
            if now != was and not any("kernel." + k in c and (str(was) in c or str(now) in c) for c in clauses):
                missing.append("kernel.%s (%d, start %d)" % (k, now, was))
        if missing:
            if clauses:
                bad("not-restored-unnamed", "failed, and 'NOT restored' does not name: %s" % "; ".join(missing))
            else:
                bad("failed-not-rolled-back", "exit %s but the start state is not back: %s" % (
                    "non-zero", "; ".join(missing)))


STDOUT_FAILED = "cannot write the result to standard output"


def reached_result(out, err):
    """Whether apply got as far as its result, refused included (and so
    to its report)."""
    return re.search(r"^shmprov apply: ", out, re.M) is not None or STDOUT_FAILED in err


def tail(s, n=600):
    s = s.strip()
    return s if len(s) <= n else "..." + s[-n:]


def worker_main(cfg):
    die_with_parent()
    w = Worker(cfg)
    out = sys.stdout
    sys.stdout = sys.stderr      # nothing but the protocol on the pipe
    try:
        try:
            info = w.setup()
            out.write(json.dumps({"op": "ready", "info": info}) + "\n")
        except Exception as e:  # noqa: BLE001 - reported to the main process
            out.write(json.dumps({"op": "fatal", "error": "%s\n%s" % (e, traceback.format_exc())}) + "\n")
            out.flush()
            return 1
        out.flush()
        for line in sys.stdin:
            req = json.loads(line)
            try:
                if req["op"] == "quit":
                    break
                if req["op"] == "discover":
                    reply = {"op": "discovered", "result": w.discover(req["scenario"])}
                else:
                    reply = {"op": "result", "result": w.case(req)}
            except Exception as e:  # noqa: BLE001
                reply = {"op": "error", "error": "%s\n%s" % (e, traceback.format_exc()), "req": req}
            out.write(json.dumps(reply) + "\n")
            out.flush()
    finally:
        w.stop()
    return 0


# ---------------------------------------------------------------------------
# The main process: discovery, cases, two workers, the report

class WorkerProc:
    def __init__(self, idx, cfg):
        self.idx = idx
        self.scratch = tempfile.mkdtemp(prefix="shmprov-faults.", dir="/tmp")
        cfg = dict(cfg, scratch=self.scratch)
        self.p = subprocess.Popen(
            ["unshare", "--ipc", "--mount", "--", "/usr/bin/python3", os.path.abspath(__file__), "--worker",
             json.dumps(cfg)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        msg = self.recv()
        if msg is None or msg["op"] != "ready":
            raise SystemExit("worker %d did not start: %s" % (idx, (msg or {}).get("error", "no answer")))
        self.info = msg["info"]

    def recv(self):
        line = self.p.stdout.readline()
        return json.loads(line) if line else None

    def ask(self, req):
        self.p.stdin.write(json.dumps(req) + "\n")
        self.p.stdin.flush()
        msg = self.recv()
        if msg is None:
            raise RuntimeError("worker %d died" % self.idx)
        return msg

    def close(self):
        try:
            if self.p.poll() is None:
                self.p.stdin.write(json.dumps({"op": "quit"}) + "\n")
                self.p.stdin.close()
                self.p.wait(30)
        except (BrokenPipeError, subprocess.TimeoutExpired):
            self.p.kill()
            self.p.wait()
        try:
            os.rmdir(self.scratch)
        except OSError:
            pass


def run_parallel(workers, reqs, on_result, fatal=True):
    """Hands reqs to the workers as they become free. A worker that dies
    leaves its remaining work to the others."""
    q = queue.Queue()
    for r in reqs:
        q.put(r)
    errors = []

    def loop(w):
        while True:
            try:
                req = q.get_nowait()
            except queue.Empty:
                return
            try:
                on_result(req, w.ask(req))
            except Exception as e:  # noqa: BLE001
                errors.append("worker %d: %s" % (w.idx, e))
                return

    threads = [threading.Thread(target=loop, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors and (fatal or len(errors) == len(workers)):
        raise SystemExit("; ".join(errors))
    for e in errors:
        print("faults: " + e, flush=True)


def describe(r, point, repro):
    lines = ["[%s] %s #%s %s%s" % (r["scenario"], r["syscall"] or "(clean run)", r["occ"] or "-", r["fault"] or "",
                                   "" if r["injected"] or not r["syscall"] else " (not reached)")]
    if point:
        lines.append("  at:      " + point["context"])
    lines.append("  strace:  " + r["cmd"])
    lines.append("  exit:    %s%s   (%.2f s)" % (r["rc"], " (killed by the injected SIGKILL)" if r["fault"] == "KILL"
                                                  and r["rc"] == -9 else "", r["secs"]))
    for kind, text in r["violations"]:
        lines.append("  FAIL %-22s %s" % (kind + ":", text))
    if r["stderr"]:
        lines.append("  stderr:")
        lines.extend("    | " + l for l in r["stderr"].splitlines()[-25:])
    lines.append("  repro:   " + repro)
    return "\n".join(lines)


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("shmprov")
    ap.add_argument("source_dir")
    ap.add_argument("shm_helper")
    ap.add_argument("--stride", type=int, default=1, help="run every Nth case of each scenario")
    ap.add_argument("--jobs", type=int, default=2, help="parallel workers, each in its own namespace")
    ap.add_argument("--scenario", action="append", default=[], help="only these (repeatable, or a,b)")
    ap.add_argument("--only", default=None, help="one point and fault: SYSCALL:N:FAULT (e.g. read:37:EIO)")
    ap.add_argument("--log-dir", default=None, help="where faults-failures.log goes (default: the binary's dir)")
    ap.add_argument("--details", type=int, default=40, help="failures printed in detail")
    a = ap.parse_args(argv)

    if os.geteuid() != 0:
        print("FAIL tests/faults needs root for unshare --ipc --mount (CI runs as root)")
        print("0 passed, 1 failed")
        return 1
    if shutil.which("strace") is None:
        print("FAIL strace is not installed")
        print("0 passed, 1 failed")
        return 1
    shmprov = os.path.abspath(a.shmprov)
    src = os.path.abspath(a.source_dir)
    helper = os.path.abspath(a.shm_helper)
    names = [n for s in a.scenario for n in s.split(",") if n] or [s.name for s in SCENARIOS]
    for n in names:
        if n not in BY_NAME:
            ap.error("unknown scenario %r (known: %s)" % (n, ", ".join(BY_NAME)))
    names = [s.name for s in SCENARIOS if s.name in names]
    only = None
    if a.only:
        m = re.fullmatch(r"([a-z0-9_]+):(\d+):([A-Z]+)", a.only)
        if not m or m.group(3) not in FAULTS:
            ap.error("--only wants SYSCALL:N:FAULT with FAULT one of %s" % ", ".join(FAULTS))
        only = (m.group(1), int(m.group(2)), m.group(3))
    stride = max(1, a.stride)
    log_dir = os.path.abspath(a.log_dir or os.path.dirname(shmprov))
    log_path = os.path.join(log_dir, "faults-failures.log")
    repro_base = "%s/tests/faults/run.sh %s %s %s" % (src, shmprov, src, helper)

    t0 = time.monotonic()
    cfg = {"shmprov": shmprov, "src": src, "helper": helper, "scenarios": names,
           "host_ns": {ns: os.stat("/proc/self/ns/" + ns).st_ino for ns in ("ipc", "mnt")}}
    jobs = max(1, a.jobs)
    workers = []
    try:
        for i in range(jobs):
            workers.append(WorkerProc(i, cfg))
        print("faults: %d worker(s), each in its own IPC + mount namespace; scenarios: %s%s" % (
            jobs, ", ".join(names), "; every %dth case" % stride if stride > 1 else ""), flush=True)

        # ---- discovery ----------------------------------------------------
        disc = {}

        def got_disc(req, msg):
            if msg["op"] != "discovered":
                raise RuntimeError("discovery of %s failed: %s" % (req["scenario"], msg.get("error")))
            disc[req["scenario"]] = msg["result"]

        run_parallel(workers, [{"op": "discover", "scenario": n} for n in names], got_disc)
        t_disc = time.monotonic() - t0

        # ---- the cases ----------------------------------------------------
        reqs, points = [], {}
        for n in names:
            d = disc[n]
            k = 0
            for pt in d["points"]:
                points[(n, pt["syscall"], pt["occ"])] = pt
                for f in faults_for(pt["syscall"]):
                    if only and (pt["syscall"], pt["occ"], f) != only:
                        continue
                    if not only and k % stride != 0:
                        k += 1
                        continue
                    k += 1
                    reqs.append({"op": "case", "scenario": n, "syscall": pt["syscall"], "occ": pt["occ"],
                                 "fault": f, "base": d["base"], "clean_sig": d["clean"]["sig"],
                                 "before_profile": pt["before_profile"], "stderr_write": pt["stderr_write"],
                                 "dso": pt["dso"],
                                 "order": len(reqs)})
        if only and not reqs:
            print("FAIL --only %s: no such point in %s" % (a.only, ", ".join(names)))
            print("0 passed, 1 failed")
            return 1
        print("faults: discovery done in %.1f s; %d cases to run" % (t_disc, len(reqs)), flush=True)
        results = [None] * len(reqs)
        done = [0]
        last = [time.monotonic()]
        lock = threading.Lock()

        def got_case(req, msg):
            if msg["op"] != "result":
                r = {"scenario": req["scenario"], "syscall": req["syscall"], "occ": req["occ"],
                     "fault": req["fault"], "cmd": "(harness error)", "rc": None, "stdout": "", "stderr": "",
                     "injected": False, "killed": False, "base_hit": False, "secs": 0.0,
                     "violations": [("harness-error", msg.get("error", "?"))], "sig": {}}
            else:
                r = msg["result"]
            with lock:
                results[req["order"]] = r
                done[0] += 1
                if time.monotonic() - last[0] > 30:
                    last[0] = time.monotonic()
                    print("faults: %d/%d cases, %.0f s" % (done[0], len(reqs), time.monotonic() - t0), flush=True)

        run_parallel(workers, reqs, got_case, fatal=False)
        for req in reqs:
            if results[req["order"]] is None:
                got_case(req, {"op": "error", "error": "never run: its worker died"})
    finally:
        for w in workers:
            w.close()
    elapsed = time.monotonic() - t0

    # ---- the report ----------------------------------------------------------
    passed = sum(1 for r in results if not r["violations"])
    failed = len(results) - passed
    sanity = []
    for n in names:
        c = disc[n]["clean"]
        expect_rc = 1 if BY_NAME[n].probe_fails else 0
        if c["violations"] or c["rc"] != expect_rc:
            sanity.append("%s: the clean run does not hold its invariants (exit %s, expected %d): %s" % (
                n, c["rc"], expect_rc, "; ".join("%s: %s" % x for x in c["violations"]) or "-"))
        if BY_NAME[n].probe_fails and not c["base_hit"]:
            sanity.append("%s: the base ENOMEM injection was not reached in the clean run" % n)
        if not only:
            mine = [r for r in results if r["scenario"] == n]
            if not any(r["injected"] and (r["rc"] == 1 or r["rc"] == -9) for r in mine):
                sanity.append("%s: no case was injected and ended with exit 1 or a kill" % n)

    print()
    print("Fault injection: cases per scenario and system call (passed/cases per fault; "
          "inj = injected or killed; n/r = not reached)")
    hdr = "%-22s %-12s" % ("scenario", "syscall") + "".join("%10s" % f for f in FAULTS) + "%10s%6s" % ("inj", "n/r")
    print(hdr)
    print("-" * len(hdr))
    rows = {}
    for r in results:
        rows.setdefault((r["scenario"], r["syscall"]), []).append(r)
    for n in names:
        for (sn, sysc), rs in sorted(((k, v) for k, v in rows.items() if k[0] == n), key=lambda kv: kv[0][1]):
            cells = []
            for f in FAULTS:
                fr = [r for r in rs if r["fault"] == f]
                cells.append("%d/%d" % (sum(1 for r in fr if not r["violations"]), len(fr)) if fr else "-")
            inj = sum(1 for r in rs if r["injected"])
            print("%-22s %-12s" % (sn, sysc) + "".join("%10s" % c for c in cells) +
                  "%10s%6d" % ("%d/%d" % (inj, len(rs)), len(rs) - inj))
    print()
    print("%-22s %7s %7s %9s %7s %7s %7s %13s" % ("scenario", "points", "cases", "injected", "n/r", "passed", "failed",
                                                "loader-skip"))
    for n in names:
        rs = [r for r in results if r["scenario"] == n]
        inj = sum(1 for r in rs if r["injected"])
        ok = sum(1 for r in rs if not r["violations"])
        print("%-22s %7d %7d %9d %7d %7d %7d %13d" % (n, len(disc[n]["points"]), len(rs), inj, len(rs) - inj, ok,
                                                      len(rs) - ok, disc[n]["skipped"]))
    print("(loader-skip: (syscall, occurrence) points before the first openat() of the profile, "
          "the dynamic loader and libc start-up, not swept)")
    for n in names:
        if disc[n]["base"]:
            print("%s: base injection shmget:error=ENOMEM:when=%d (the acceptance step) in every case"
                  % (n, disc[n]["base"]))

    # failure classes: violation kind x syscall
    fails = [r for r in results if r["violations"]]
    classes = {}
    for r in fails:
        for kind, _t in r["violations"]:
            classes.setdefault(kind, []).append(r)
    if classes:
        print()
        print("Failure classes (violation: cases; scenarios; system calls x faults):")
        for kind, rs in sorted(classes.items(), key=lambda kv: -len(kv[1])):
            scs = sorted({r["scenario"] for r in rs})
            sysf = {}
            for r in rs:
                sysf.setdefault(r["syscall"], set()).add(r["fault"])
            print("  %-26s %5d  %s" % (kind, len(rs), ", ".join(scs)))
            print("  %-26s        %s" % ("", "; ".join("%s %s" % (s, "/".join(sorted(f))) for s, f in sorted(sysf.items()))))
            r = rs[0]
            print("  %-26s        e.g. --scenario %s --only %s:%s:%s" % ("", r["scenario"], r["syscall"], r["occ"],
                                                                       r["fault"]))

    os.makedirs(log_dir, exist_ok=True)
    with open(log_path, "w") as f:
        f.write("shmprov fault injection: %d cases, %d failed, %.0f s\n\n" % (len(results), failed, elapsed))
        for r in fails:
            pt = points.get((r["scenario"], r["syscall"], r["occ"]))
            f.write(describe(r, pt, "%s --scenario %s --only %s:%s:%s" % (
                repro_base, r["scenario"], r["syscall"], r["occ"], r["fault"])) + "\n\n")
        for s in sanity:
            f.write("SANITY: %s\n" % s)
    with open(os.path.join(log_dir, "faults-results.json"), "w") as f:
        json.dump({"elapsed": elapsed, "discovery": {n: {k: v for k, v in d.items() if k != "points"} |
                                                     {"points": len(d["points"])} for n, d in disc.items()},
                   "results": results}, f)

    if only:
        print()
        for r in results:
            pt = points.get((r["scenario"], r["syscall"], r["occ"]))
            print(describe(r, pt, "(this run)"))
            print("  stdout:")
            print("\n".join("    | " + l for l in r["stdout"].splitlines()[-15:]))
    elif fails:
        # The first failure of each class, then the others in order.
        firsts = []
        for kind, rs in classes.items():
            if rs[0] not in firsts:
                firsts.append(rs[0])
        firsts.sort(key=results.index)
        shown = (firsts + [r for r in fails if r not in firsts])[:a.details]
        print()
        print("%d of %d failures in detail (the first of each class, then in order; all in %s):" % (
            len(shown), len(fails), log_path))
        for r in shown:
            pt = points.get((r["scenario"], r["syscall"], r["occ"]))
            print(describe(r, pt, "%s --scenario %s --only %s:%s:%s" % (
                repro_base, r["scenario"], r["syscall"], r["occ"], r["fault"])))
            print()
    for s in sanity:
        print("SANITY FAIL: " + s)
    print("faults: %.0f s (discovery %.0f s), %d cases, %d worker(s); failures: %s" % (
        elapsed, t_disc, len(results), jobs, log_path))
    print("%d passed, %d failed" % (passed, failed))
    return 0 if failed == 0 and not sanity else 1


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "--worker":
        sys.exit(worker_main(json.loads(sys.argv[2])))
    sys.exit(main(sys.argv[1:]))
