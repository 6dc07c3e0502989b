#!/usr/bin/python3
"""Every request body the receiver recorded, as a Python consumer reads it:
bytes.decode('utf-8') (strict) then json.loads. Prints one PASS or FAIL
line for run.sh.

Usage: check_bodies.py LOG.jsonl
"""
import json
import sys

records = [json.loads(line) for line in open(sys.argv[1], encoding="utf-8") if line.strip()]
bad = []
for rec in records:
    raw = open(rec["body_file"], "rb").read()
    try:
        json.loads(raw.decode("utf-8"))  # errors="strict" is the default
    except UnicodeDecodeError as e:
        bad.append(f"[{rec['label']} #{rec['n']}] not UTF-8: {e}: ...{raw[max(0, e.start - 20):e.end + 4]!r}")
    except ValueError as e:
        bad.append(f"[{rec['label']} #{rec['n']}] not JSON: {e}")

name = f"every request body ({len(records)}) decodes as strict UTF-8 and JSON in Python (bytes.decode + json.loads)"
if records and not bad:
    print(f"PASS {name}")
else:
    print(f"FAIL {name}: {len(bad)} failed: {' | '.join(bad[:3]) or 'no request recorded'}")
