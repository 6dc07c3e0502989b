#!/usr/bin/python3
"""Polls a Prometheus's /api/v1/alerts until an alert is in a state.

Usage: wait_alert.py PORT ALERTNAME INSTANCE firing|gone SECONDS
  firing: until ALERTNAME for INSTANCE is firing; prints that alert (JSON)
  gone:   until no ALERTNAME alert for INSTANCE is left (pending or firing)
Exit 0 when reached, 1 on timeout (printing every alert seen last), 2 when
Prometheus cannot be asked at all before the deadline.
"""
import json
import sys
import time
import urllib.request

port, name, instance, want, secs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5])
deadline = time.monotonic() + secs
last, asked = None, False
while True:
    try:
        with urllib.request.urlopen("http://127.0.0.1:%s/api/v1/alerts" % port, timeout=5) as r:
            last = json.load(r)["data"]["alerts"]
        asked = True
    except Exception as e:  # not ready yet, or a transient error
        last = "error: %s" % e
    if isinstance(last, list):
        mine = [a for a in last if a["labels"].get("alertname") == name and a["labels"].get("instance") == instance]
        if want == "firing" and any(a["state"] == "firing" for a in mine):
            print(json.dumps([a for a in mine if a["state"] == "firing"][0], indent=2, sort_keys=True))
            sys.exit(0)
        if want == "gone" and not mine:
            sys.exit(0)
    if time.monotonic() >= deadline:
        print("after %gs, alerts: %s" % (secs, json.dumps(last, indent=2, sort_keys=True)))
        sys.exit(1 if asked else 2)
    time.sleep(0.5)
