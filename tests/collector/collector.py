#!/usr/bin/python3
"""Test collector for shmprov's report delivery (README "Reports").

A tiny HTTP/1.1 server, stdlib only, bound to 127.0.0.1 and nothing else.
Every request it receives is recorded as one JSON line in the log file and
answered according to the current mode; the mode can be changed at run time
through the control endpoints. See tests/collector/README.md.

    collector.py --port N --log FILE [--mode MODE] [--control-port M]

Control endpoints (served on the main port and, if given, on --control-port;
never recorded in the log, never counted in the stats):

    GET  /_control              -> {"mode": "..."}
    POST /_control {"mode": M}  -> {"mode": M, "previous": "..."}; 400 if M is invalid
    POST /_control {"reset": true}   clears the stats (not the log); may be
                                     combined with "mode"
    GET  /_stats                -> counters, see README.md
    POST /_reset                -> same as {"reset": true}
"""

import argparse
import base64
import json
import os
import select
import signal
import socket
import sys
import threading
import time
from datetime import datetime, timezone
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOST = "127.0.0.1"
MAX_BODY = 64 * 1024 * 1024           # refuse (413) request bodies above this
BIG_BODY = 10 * 1024 * 1024           # "big" mode response size
REDIRECT_TO = "http://127.0.0.2:9/"   # "redirect" mode target: must never be followed
CONTROL_PATHS = ("/_control", "/_stats", "/_reset")
CE_STRUCTURED = "application/cloudevents+json"
CE_BATCH = "application/cloudevents-batch+json"

STOP = threading.Event()               # set on SIGTERM/SIGINT: ends hang/slow/endless


def utc_now():
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --------------------------------------------------------------------------
# Modes
#
# A mode string is one step or a comma-separated sequence of steps, each
# "BASE[*N]": the first N requests get that step, then the next step; the last
# step repeats forever. "status:503*2,accept" = two 503s, then 202s.

def _num(s, what, integer=False):
    try:
        v = int(s) if integer else float(s)
    except ValueError:
        raise ValueError("%s: not a number: %r" % (what, s))
    if v < 0:
        raise ValueError("%s: negative: %r" % (what, s))
    return v


def parse_step(text):
    """Returns (kind, arg). Raises ValueError on anything unknown."""
    text = text.strip()
    name, _, arg = text.partition(":")
    simple = ("accept", "hang", "cut", "redirect", "big", "endless", "drop")
    if name in simple:
        if arg:
            raise ValueError("mode %s takes no argument" % name)
        return (name, None)
    if name not in ("status", "retry-after", "retry-after-date", "slow", "outage"):
        raise ValueError("unknown mode %r" % text)
    if not arg:
        raise ValueError("mode %s needs an argument (%s:VALUE)" % (name, name))
    if name == "status":
        code = _num(arg, "status", integer=True)
        if not 200 <= code <= 599:
            raise ValueError("status: code must be 200..599")
        return (name, code)
    if name == "retry-after":
        # sent verbatim (normally delta-seconds; anything without a comma, so
        # a test can also send garbage)
        return (name, arg.strip())
    if name in ("slow", "outage", "retry-after-date"):
        return (name, _num(arg, name))
    raise ValueError("unknown mode %r" % text)


def parse_mode(text):
    steps = []
    parts = [p for p in text.split(",")]
    if not text.strip() or any(not p.strip() for p in parts):
        raise ValueError("empty mode")
    for i, part in enumerate(parts):
        base, star, count = part.strip().rpartition("*")
        if star:
            n = _num(count, "repeat count", integer=True)
            if n < 1:
                raise ValueError("repeat count must be >= 1")
        else:
            base, n = part.strip(), None
        if n is None and i != len(parts) - 1:
            n = 1
        steps.append((parse_step(base), n))
    return steps


class ModeState:
    def __init__(self, text, started):
        self.lock = threading.Lock()
        self.set(text, started)

    def set(self, text, since):
        steps = parse_mode(text)          # raises before changing anything
        with self.lock:
            prev = getattr(self, "text", None)
            self.text = text
            self.steps = steps
            self.used = 0                 # requests answered under this mode
            self.since = since            # outage windows count from here
        return prev

    def pick(self, now):
        """Chooses the step for one request. Returns (kind, arg, step_text)."""
        with self.lock:
            k = self.used
            self.used += 1
            for (kind, arg), n in self.steps:
                if n is None or k < n:
                    break
                k -= n
            else:
                (kind, arg), n = self.steps[-1]
            if kind == "outage":
                if now - self.since < arg:
                    return ("status", 503, "outage:%g (in outage)" % arg)
                return ("accept", None, "outage:%g (over)" % arg)
            return (kind, arg, self.text)


# --------------------------------------------------------------------------
# Stats

class Stats:
    def __init__(self, started):
        self.lock = threading.Lock()
        self.started = started
        self.reset(started)

    def reset(self, now):
        with self.lock:
            self.epoch = now
            self.total = 0
            self.by_status = {}
            self.rps = {}                  # second since epoch -> requests
            self.rps_by_status = {}        # status -> {second -> requests}
            self.ids = {}                  # id -> times received
            self.ids_accepted = {}         # id -> times answered 2xx
            self.batches = 0
            self.structured = 0
            self.other_bodies = 0
            self.problem_posts = 0
            self.connections_dropped = 0

    def record(self, now, status, ids, kind):
        with self.lock:
            self.total += 1
            sec = str(int(now - self.epoch))
            self.rps[sec] = self.rps.get(sec, 0) + 1
            skey = str(status) if status is not None else "none"
            self.by_status[skey] = self.by_status.get(skey, 0) + 1
            h = self.rps_by_status.setdefault(skey, {})
            h[sec] = h.get(sec, 0) + 1
            for i in ids:
                self.ids[i] = self.ids.get(i, 0) + 1
                if status is not None and 200 <= status < 300:
                    self.ids_accepted[i] = self.ids_accepted.get(i, 0) + 1
            if kind == "batch":
                self.batches += 1
            elif kind == "structured":
                self.structured += 1
            elif kind == "other":
                self.other_bodies += 1

    def snapshot(self, mode_text):
        with self.lock:
            def peak(h):
                if not h:
                    return 0, None
                sec = max(h, key=lambda s: (h[s], -int(s)))
                return h[sec], int(sec)
            p, ps = peak(self.rps)
            dups = {i: c for i, c in self.ids.items() if c > 1}
            dups_acc = {i: c for i, c in self.ids_accepted.items() if c > 1}
            return {
                "mode": mode_text,
                "started_at": self.started,
                "stats_since": self.epoch,
                "uptime_s": round(time.time() - self.started, 3),
                "total_requests": self.total,
                "by_status": dict(self.by_status),
                "rps": dict(sorted(self.rps.items(), key=lambda kv: int(kv[0]))),
                "peak_rps": p,
                "peak_second": ps,
                "rps_by_status": {k: dict(sorted(v.items(), key=lambda kv: int(kv[0])))
                                  for k, v in self.rps_by_status.items()},
                "peak_rps_by_status": {k: peak(v)[0] for k, v in self.rps_by_status.items()},
                "structured_posts": self.structured,
                "batch_posts": self.batches,
                "other_posts": self.other_bodies,
                "problem_posts": self.problem_posts,
                "events_received": sum(self.ids.values()),
                "distinct_ids": len(self.ids),
                "duplicate_ids": len(dups),
                "duplicate_receipts": sum(self.ids.values()) - len(self.ids),
                "duplicates": dict(sorted(dups.items())),
                "ids": sorted(self.ids),
                "distinct_ids_accepted": len(self.ids_accepted),
                "duplicate_ids_accepted": len(dups_acc),
                "ids_accepted": sorted(self.ids_accepted),
            }


# --------------------------------------------------------------------------
# CloudEvents inspection

def inspect_body(content_type, body):
    """Returns (kind, ids, parsed_json_or_None, problems)."""
    ct = (content_type or "").split(";")[0].strip().lower()
    problems = []
    if not body:
        return ("empty", [], None, problems)
    try:
        doc = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        return ("other", [], None, ["body is not JSON: %s" % e])

    def check_event(ev, where):
        if not isinstance(ev, dict):
            problems.append("%s: event is not an object" % where)
            return None
        for attr in ("id", "source", "specversion", "type"):
            v = ev.get(attr)
            if not isinstance(v, str) or not v:
                problems.append("%s: missing or empty '%s'" % (where, attr))
        if ev.get("specversion") not in (None, "1.0"):
            problems.append("%s: specversion %r is not '1.0'" % (where, ev.get("specversion")))
        i = ev.get("id")
        return i if isinstance(i, str) and i else None

    ids = []
    if ct == CE_BATCH:
        kind = "batch"
        if not isinstance(doc, list):
            problems.append("batch body is not a JSON array")
        else:
            for n, ev in enumerate(doc):
                i = check_event(ev, "batch[%d]" % n)
                if i is not None:
                    ids.append(i)
    elif ct == CE_STRUCTURED:
        kind = "structured"
        i = check_event(doc, "event")
        if i is not None:
            ids.append(i)
    else:
        kind = "other"
        problems.append("content-type %r is neither %s nor %s" % (ct, CE_STRUCTURED, CE_BATCH))
        # still count ids, so a wrong content type does not hide deliveries
        for n, ev in enumerate(doc if isinstance(doc, list) else [doc]):
            if isinstance(ev, dict) and isinstance(ev.get("id"), str) and ev.get("id"):
                ids.append(ev["id"])
    return (kind, ids, doc, problems)


# --------------------------------------------------------------------------
# HTTP

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "shmprov-test-collector/1"

    def version_string(self):
        return self.server_version
    control_only = False               # True on the --control-port listener
    timeout = 120                      # idle keep-alive connections are reaped

    # quiet: the log file is the record
    def log_message(self, fmt, *args):
        pass

    # -- plumbing ---------------------------------------------------------

    def _read_body(self):
        te = self.headers.get("Transfer-Encoding", "")
        if "chunked" in te.lower():
            chunks, size = [], 0
            while True:
                line = self.rfile.readline(65537)
                if not line:
                    raise ConnectionError("EOF in chunked body")
                n = int(line.split(b";")[0].strip() or b"0", 16)
                if n == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                size += n
                if size > MAX_BODY:
                    raise ValueError("body too large")
                chunks.append(self.rfile.read(n))
                self.rfile.readline(3)
            return b"".join(chunks)
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        n = int(length)
        if n > MAX_BODY:
            raise ValueError("body too large")
        data = self.rfile.read(n)
        if len(data) != n:
            raise ConnectionError("client sent %d of %d body bytes" % (len(data), n))
        return data

    def _send(self, status, body=b"", ctype="application/json", extra=(), close=False):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)
        self.wfile.flush()

    def _json(self, status, obj):
        self._send(status, (json.dumps(obj, indent=1) + "\n").encode())

    # -- dispatch ---------------------------------------------------------

    def do_GET(self):
        self._dispatch()

    def do_POST(self):
        self._dispatch()

    def do_PUT(self):
        self._dispatch()

    def do_HEAD(self):
        self._dispatch()

    def do_DELETE(self):
        self._dispatch()

    def do_PATCH(self):
        self._dispatch()

    def do_OPTIONS(self):
        self._dispatch()

    def _dispatch(self):
        path = self.path.split("?")[0]
        if path in CONTROL_PATHS:
            return self._control(path)
        if self.control_only:
            return self._json(404, {"error": "control port: only %s" % ", ".join(CONTROL_PATHS)})
        return self._collect()

    # -- control ----------------------------------------------------------

    def _control(self, path):
        srv = self.server.collector
        try:
            body = self._read_body()
        except (ValueError, ConnectionError) as e:
            return self._json(400, {"error": str(e)})
        if path == "/_stats" and self.command in ("GET", "HEAD"):
            return self._json(200, srv.stats.snapshot(srv.mode.text))
        if path == "/_reset" and self.command == "POST":
            srv.stats.reset(time.time())
            return self._json(200, {"reset": True, "mode": srv.mode.text})
        if path == "/_control" and self.command in ("GET", "HEAD"):
            return self._json(200, {"mode": srv.mode.text})
        if path == "/_control" and self.command == "POST":
            try:
                req = json.loads(body.decode("utf-8") or "{}")
                if not isinstance(req, dict):
                    raise ValueError("expected a JSON object")
            except ValueError as e:
                return self._json(400, {"error": "bad JSON: %s" % e})
            out = {}
            if "mode" in req:
                if not isinstance(req["mode"], str):
                    return self._json(400, {"error": "mode must be a string"})
                try:
                    out["previous"] = srv.mode.set(req["mode"], time.time())
                except ValueError as e:
                    return self._json(400, {"error": str(e)})
            if req.get("reset"):
                srv.stats.reset(time.time())
                out["reset"] = True
            out["mode"] = srv.mode.text
            return self._json(200, out)
        return self._json(405, {"error": "method not allowed on %s" % path})

    # -- collection -------------------------------------------------------

    def _collect(self):
        srv = self.server.collector
        now = time.time()
        record = {
            "time": utc_now(),
            "t": round(now, 6),
            "client": "%s:%d" % self.client_address[:2],
            "method": self.command,
            "path": self.path,
            "version": self.request_version,
            "headers": [[k, v] for k, v in self.headers.items()],
            "authorization": self.headers.get("Authorization"),
            "idempotency_key": self.headers.get("Idempotency-Key"),
            "content_type": self.headers.get("Content-Type"),
        }
        try:
            body = self._read_body()
        except ValueError as e:
            record.update(body=None, error=str(e), response={"status": 413, "mode": "(body)"})
            srv.write_log(record)
            srv.stats.record(now, 413, [], "other")
            return self._send(413, b'{"error":"body too large"}\n', close=True)
        except ConnectionError as e:
            # the client gave up half way: record it, nothing to answer
            record.update(body=None, error=str(e), response={"status": None, "mode": "(incomplete)"})
            srv.write_log(record)
            srv.stats.record(now, None, [], "incomplete")
            self.close_connection = True
            return

        try:
            record["body"] = body.decode("utf-8")
        except UnicodeDecodeError:
            record["body_base64"] = base64.b64encode(body).decode()
        record["body_bytes"] = len(body)
        kind, ids, _doc, problems = inspect_body(record["content_type"], body)
        record["kind"] = kind
        record["ids"] = ids
        if problems:
            record["problems"] = problems
            with srv.stats.lock:
                srv.stats.problem_posts += 1

        step, arg, mode_text = srv.mode.pick(now)
        status, resp_headers, note = self._plan(step, arg)
        record["response"] = {"status": status, "mode": mode_text, "step": step}
        if resp_headers:
            record["response"]["headers"] = resp_headers
        if note:
            record["response"]["note"] = note
        # recorded before answering, so a hang or a cut is in the log too
        srv.write_log(record)
        srv.stats.record(now, status, ids, kind)
        try:
            self._answer(step, arg, status, resp_headers, ids)
        except (BrokenPipeError, ConnectionResetError, socket.timeout, OSError):
            self.close_connection = True

    @staticmethod
    def _plan(step, arg):
        """Decides status and headers for the log before anything is sent."""
        if step == "accept" or step == "big" or step == "endless":
            return 202, [], {"big": "10 MB body", "endless": "chunked, never ends"}.get(step)
        if step == "slow":
            return 202, [], "after %gs" % arg
        if step == "status":
            return arg, [], None
        if step == "retry-after":
            return 429, [["Retry-After", arg]], None
        if step == "retry-after-date":
            when = formatdate(time.time() + arg, usegmt=True)
            return 429, [["Retry-After", when]], "HTTP-date %gs ahead" % arg
        if step == "redirect":
            return 302, [["Location", REDIRECT_TO]], None
        if step == "cut":
            return 202, [], "Content-Length 1000, 10 bytes sent, then closed"
        if step == "hang":
            return None, [], "never answered"
        if step == "drop":
            return None, [], "closed without an answer"
        raise AssertionError(step)

    def _ack(self, ids, status):
        return (json.dumps({"status": status, "ids": ids}) + "\n").encode()

    def _answer(self, step, arg, status, headers, ids):
        if step in ("accept", "status", "retry-after", "retry-after-date", "redirect"):
            if status in (204, 304):
                body = b""
            elif status < 300:
                body = self._ack(ids, status)
            else:
                body = (json.dumps({"status": status, "error": "test collector mode"}) + "\n").encode()
            return self._send(status, body, extra=[tuple(h) for h in headers])
        if step == "slow":
            if STOP.wait(arg):
                self.close_connection = True
                return
            return self._send(202, self._ack(ids, 202))
        if step == "big":
            self.send_response(202)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(BIG_BODY))
            self.end_headers()
            block = b"x" * 65536
            for _ in range(BIG_BODY // len(block)):
                self.wfile.write(block)
            self.wfile.flush()
            return
        if step == "endless":
            self.send_response(202)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            chunk = b"%x\r\n%s\r\n" % (16384, b"y" * 16384)
            while not STOP.is_set():
                self.wfile.write(chunk)       # raises once the client goes away
                self.wfile.flush()
                time.sleep(0.002)
            self.close_connection = True
            return
        if step == "cut":
            self.send_response(202)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b'{"status":')   # 10 bytes of the promised 1000
            self.wfile.flush()
            self._hard_close()
            return
        if step == "drop":
            self._hard_close()
            return
        if step == "hang":
            # keep the socket open, never answer; end when the client closes
            # or the collector stops
            sock = self.connection
            while not STOP.is_set():
                r, _, _ = select.select([sock], [], [], 0.2)
                if r:
                    try:
                        if not sock.recv(65536):
                            break
                    except OSError:
                        break
            self.close_connection = True
            return
        raise AssertionError(step)

    def _hard_close(self):
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class ControlHandler(Handler):
    control_only = True


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 4096        # fleet drill: hundreds of connects at once

    def handle_error(self, request, client_address):
        # a client that went away is not an error worth a traceback
        exc = sys.exc_info()[1]
        if isinstance(exc, (BrokenPipeError, ConnectionResetError, socket.timeout)):
            return
        super().handle_error(request, client_address)


class Collector:
    def __init__(self, log_path, mode):
        self.started = time.time()
        self.mode = ModeState(mode, self.started)
        self.stats = Stats(self.started)
        self.log_lock = threading.Lock()
        self.log = open(log_path, "a", encoding="utf-8")

    def write_log(self, record):
        line = json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n"
        with self.log_lock:
            self.log.write(line)
            self.log.flush()

    def close(self):
        with self.log_lock:
            self.log.close()


def main():
    ap = argparse.ArgumentParser(description="shmprov test collector (127.0.0.1 only)")
    ap.add_argument("--port", type=int, required=True, help="port on 127.0.0.1 (0: pick a free one)")
    ap.add_argument("--log", required=True, help="JSON-lines file, one line per request (appended)")
    ap.add_argument("--mode", default="accept", help="initial mode (default: accept)")
    ap.add_argument("--control-port", type=int, default=None,
                    help="extra port on 127.0.0.1 serving only /_control, /_stats, /_reset")
    args = ap.parse_args()

    try:
        parse_mode(args.mode)
    except ValueError as e:
        ap.error("--mode: %s" % e)

    col = Collector(args.log, args.mode)
    def listen(port, handler):
        try:
            return Server((HOST, port), handler)
        except OSError as e:
            print("collector: cannot listen on %s:%d: %s" % (HOST, port, e), file=sys.stderr)
            sys.exit(1)

    httpd = listen(args.port, Handler)
    ctl = listen(args.control_port, ControlHandler) if args.control_port is not None else None
    httpd.collector = col
    servers = [httpd]
    if ctl is not None:
        ctl.collector = col
        servers.append(ctl)
        threading.Thread(target=ctl.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
        print("control on %s:%d" % (HOST, ctl.server_address[1]), flush=True)

    def stop(signum, frame):
        STOP.set()
        # shutdown() waits for serve_forever, which runs in this very thread:
        # do it from another one
        for s in servers:
            threading.Thread(target=s.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    print("listening on %s:%d" % (HOST, httpd.server_address[1]), flush=True)
    try:
        httpd.serve_forever(poll_interval=0.1)
    finally:
        STOP.set()
        for s in servers:
            s.server_close()
        col.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
