#!/usr/bin/python3
"""Validates JSON documents against a JSON Schema (2020-12).

Usage: validate_json.py SCHEMA [--data] FILE...
With --data each FILE is a CloudEvent (or a batch: a JSON array of events)
and its "data" member is what is validated. Prints one line per document and
exits 1 when any is invalid or no document was given."""
import json
import sys

import jsonschema


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    schema = json.load(open(argv[1]))
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    files = argv[2:]
    events = files[0] == "--data"
    if events:
        files = files[1:]
    checked = bad = 0
    for name in files:
        doc = json.load(open(name))
        docs = doc if events and isinstance(doc, list) else [doc]
        for d in docs:
            target = d["data"] if events else d
            errors = sorted(validator.iter_errors(target), key=lambda e: list(e.path))
            checked += 1
            if errors:
                bad += 1
                for e in errors:
                    print(f"{name}: {'/'.join(map(str, e.path)) or '(top)'}: {e.message}")
            else:
                print(f"{name}: valid")
    print(f"{checked - bad} passed, {bad} failed")
    return 0 if checked and not bad else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
