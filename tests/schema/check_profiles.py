#!/usr/bin/python3
"""Check shmprov profiles against schemas/profile.schema.json.

Usage: check_profiles.py SCHEMA DIR [--bad DIR2]

  SCHEMA       the JSON Schema (draft 2020-12) for profiles
  DIR          every DIR/*.yaml must be a valid profile
  --bad DIR2   every file named in DIR2/schema-invalid.txt (one file name per
               line; blank lines and '#' comments ignored) must be rejected by
               the schema; skipped when that list does not exist

Checks, each counted once in the final "N passed, N failed" line:
  * the schema itself is a valid draft 2020-12 schema (check_schema);
  * built-in self-checks: inline documents the schema must reject (for the
    intended reason: an error at the expected key), inline documents it must
    accept, and inline documents the strict YAML pass must reject;
  * every DIR/*.yaml: loaded with yaml.safe_load and validated against the
    schema, plus a strict pass for what PyYAML silently tolerates but shmprov
    rejects (duplicate keys, anchors/aliases, explicit tags, YAML 1.1 integer
    spellings such as 010 / 0x10 / 1_000 / 1:20, floats such as 20.0 that
    JSON Schema counts as integers, non-UTF-8, files over 1 MiB; label
    values are exempt from the number checks, shmprov takes them as text);
  * every file listed in DIR2/schema-invalid.txt (schema only, no strict pass).

Exit status: 0 when every check passes, 1 when any fails, 2 on bad usage.
Needs Debian's python3-yaml and python3-jsonschema (run with /usr/bin/python3).
"""

import argparse
import json
import os
import re
import sys

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

MAX_PROFILE_BYTES = 1 << 20          # README "Profile reference": files over 1 MiB are refused
INVALID_LIST = "schema-invalid.txt"
PLAIN_DECIMAL = re.compile(r"^[-+]?(0|[1-9][0-9]*)$")
INT_TAG = "tag:yaml.org,2002:int"
FLOAT_TAG = "tag:yaml.org,2002:float"


# --------------------------------------------------------------------------
# Built-in self-checks.  ("reject", label, yaml, path): the schema must report
# an error whose instance path is `path` (so the document is rejected for the
# intended reason, not by accident).  ("accept", label, yaml): the schema must
# accept it.  ("strict", label, yaml): the strict YAML pass must reject it.
# ("strict-ok", label, yaml): the strict YAML pass must accept it.
# --------------------------------------------------------------------------
FULL_PROFILE = """\
version: 1
host:
  ram_tier: medium
  workload: database
policy: raise-only
limits:
  shmmax: 16 GiB
  shmall: 4194304
  shmmni: 32768
dropin: /etc/sysctl.d/60-shmprov.conf
report:
  url: https://collector.example.net/v1/events
  token_file: /etc/shmprov/token
  ca_file: /etc/shmprov/ca.pem
  client_cert: /etc/shmprov/client.pem
  client_key: /etc/shmprov/client.key
  timeout: 300
  spool_dir: /var/lib/shmprov/spool
"""

SELF_CHECKS = [
    # --- must be rejected by the schema -----------------------------------
    ("reject", "unknown top-level key", "version: 1\nshmmax: 1\n", ()),
    ("reject", "unknown key in host", "version: 1\nhost:\n  ram: 8GiB\n", ("host",)),
    ("reject", "unknown key in limits", "version: 1\nlimits:\n  shmseg: 1\n", ("limits",)),
    ("reject", "unknown key in report", "version: 1\nreport:\n  token: abc\n", ("report",)),
    ("reject", "missing version", "policy: enforce\n", ()),
    ("reject", "version 2", "version: 2\n", ("version",)),
    ("reject", "version quoted", "version: '1'\n", ("version",)),
    ("reject", "empty document", "", ()),
    ("reject", "top level is a list", "- version: 1\n", ()),
    ("reject", "host: with no value (null)", "version: 1\nhost:\n", ("host",)),
    ("reject", "ram_tier tiny", "version: 1\nhost:\n  ram_tier: tiny\n", ("host", "ram_tier")),
    ("reject", "workload web", "version: 1\nhost:\n  workload: web\n", ("host", "workload")),
    ("reject", "policy lower-only", "version: 1\npolicy: lower-only\n", ("policy",)),
    ("reject", "policy yes (YAML bool)", "version: 1\npolicy: yes\n", ("policy",)),
    ("reject", "shmmni 0", "version: 1\nlimits:\n  shmmni: 0\n", ("limits", "shmmni")),
    ("reject", "shmmni 40000", "version: 1\nlimits:\n  shmmni: 40000\n", ("limits", "shmmni")),
    ("reject", "shmmni 32769", "version: 1\nlimits:\n  shmmni: 32769\n", ("limits", "shmmni")),
    ("reject", "shmmni quoted \"4096\"", "version: 1\nlimits:\n  shmmni: \"4096\"\n", ("limits", "shmmni")),
    ("reject", "shmmax 16GB", "version: 1\nlimits:\n  shmmax: 16GB\n", ("limits", "shmmax")),
    ("reject", "shmmax 16gib (case)", "version: 1\nlimits:\n  shmmax: 16gib\n", ("limits", "shmmax")),
    ("reject", "shmmax two spaces", "version: 1\nlimits:\n  shmmax: \"16  GiB\"\n", ("limits", "shmmax")),
    ("reject", "shmmax 1.5GiB", "version: 1\nlimits:\n  shmmax: 1.5GiB\n", ("limits", "shmmax")),
    ("reject", "shmmax 101%", "version: 1\nlimits:\n  shmmax: 101%\n", ("limits", "shmmax")),
    ("reject", "shmmax 0%", "version: 1\nlimits:\n  shmmax: 0%\n", ("limits", "shmmax")),
    ("reject", "shmmax '50 %'", "version: 1\nlimits:\n  shmmax: 50 %\n", ("limits", "shmmax")),
    ("reject", "shmmax 0", "version: 1\nlimits:\n  shmmax: 0\n", ("limits", "shmmax")),
    ("reject", "shmmax -1", "version: 1\nlimits:\n  shmmax: -1\n", ("limits", "shmmax")),
    ("reject", "shmmax above kernel maximum",
     "version: 1\nlimits:\n  shmmax: 18446744073692774400\n", ("limits", "shmmax")),
    ("reject", "shmmax block scalar with trailing newline",
     "version: 1\nlimits:\n  shmmax: |\n    16GiB\n", ("limits", "shmmax")),
    ("reject", "shmall 50% (no percent for shmall)", "version: 1\nlimits:\n  shmall: 50%\n", ("limits", "shmall")),
    ("reject", "shmall 0", "version: 1\nlimits:\n  shmall: 0\n", ("limits", "shmall")),
    ("reject", "limits is a list", "version: 1\nlimits:\n  - shmmax: 1\n", ("limits",)),
    ("reject", "dropin relative", "version: 1\ndropin: sysctl.d/60-shmprov.conf\n", ("dropin",)),
    ("reject", "dropin not .conf", "version: 1\ndropin: /etc/sysctl.d/60-shmprov\n", ("dropin",)),
    ("reject", "dropin with a space", "version: 1\ndropin: \"/etc/sysctl.d/60 shmprov.conf\"\n", ("dropin",)),
    ("reject", "dropin trailing newline", "version: 1\ndropin: \"/etc/sysctl.d/60-shmprov.conf\\n\"\n", ("dropin",)),
    ("reject", "report url ftp://", "version: 1\nreport:\n  url: ftp://collector.example.net/\n", ("report", "url")),
    ("reject", "report url without host", "version: 1\nreport:\n  url: https://\n", ("report", "url")),
    ("reject", "report token_file relative", "version: 1\nreport:\n  token_file: token\n", ("report", "token_file")),
    ("reject", "report client_key is a directory", "version: 1\nreport:\n  client_key: /etc/shmprov/\n", ("report", "client_key")),
    ("reject", "report timeout 0", "version: 1\nreport:\n  timeout: 0\n", ("report", "timeout")),
    ("reject", "report timeout 301", "version: 1\nreport:\n  timeout: 301\n", ("report", "timeout")),
    ("reject", "report timeout quoted", "version: 1\nreport:\n  timeout: \"20\"\n", ("report", "timeout")),
    ("reject", "report spool_dir relative", "version: 1\nreport:\n  spool_dir: spool\n", ("report", "spool_dir")),
    ("reject", "labels is a list", "version: 1\nlabels: [role, db]\n", ("labels",)),
    ("reject", "labels: with no value (null)", "version: 1\nlabels:\n", ("labels",)),
    ("reject", "label name uppercase", "version: 1\nlabels:\n  Role: db\n", ("labels",)),
    ("reject", "label name with '/'", "version: 1\nlabels:\n  app/name: db\n", ("labels",)),
    ("reject", "label name of 64 characters", "version: 1\nlabels:\n  " + "a" * 64 + ": x\n", ("labels",)),
    ("reject", "label name with a trailing newline", "version: 1\nlabels:\n  \"role\\n\": db\n", ("labels",)),
    ("reject", "17 labels", "version: 1\nlabels:\n" + "".join(f"  l{i}: v\n" for i in range(17)), ("labels",)),
    ("reject", "label value a list", "version: 1\nlabels:\n  env: [prod]\n", ("labels", "env")),
    ("reject", "label value a mapping", "version: 1\nlabels:\n  env: {a: b}\n", ("labels", "env")),
    ("reject", "label value missing (null)", "version: 1\nlabels:\n  env:\n", ("labels", "env")),
    ("reject", "label value ~", "version: 1\nlabels:\n  env: ~\n", ("labels", "env")),
    ("reject", "label value of 257 characters", "version: 1\nlabels:\n  env: " + "x" * 257 + "\n", ("labels", "env")),
    ("reject", "label value with a tab", "version: 1\nlabels:\n  env: \"a\\tb\"\n", ("labels", "env")),
    ("reject", "label value with a newline", "version: 1\nlabels:\n  env: |\n    prod\n", ("labels", "env")),
    ("reject", "label value with a C1 control", "version: 1\nlabels:\n  env: \"a\\x85\"\n", ("labels", "env")),
    # --- must be accepted by the schema -----------------------------------
    ("accept", "minimal (version only)", "version: 1\n"),
    ("accept", "every key set", FULL_PROFILE),
    ("accept", "empty host mapping", "version: 1\nhost: {}\n"),
    ("accept", "shmmax 1%", "version: 1\nlimits:\n  shmmax: 1%\n"),
    ("accept", "shmmax 60%", "version: 1\nlimits:\n  shmmax: 60%\n"),
    ("accept", "shmmax 100%", "version: 1\nlimits:\n  shmmax: 100%\n"),
    ("accept", "size string without unit", "version: 1\nlimits:\n  shmmax: \"4096\"\n  shmall: \"1024\"\n"),
    ("accept", "shmmax kernel maximum 18446744073692774399",
     "version: 1\nlimits:\n  shmmax: 18446744073692774399\n  shmall: 18446744073692774399\n"),
    ("accept", "sizes with units, shmmni 1",
     "version: 1\nlimits:\n  shmmax: 512M\n  shmall: 1 TiB\n  shmmni: 1\n"),
    ("accept", "report url http://, timeout 1",
     "version: 1\nreport:\n  url: http://127.0.0.1:8080/events\n  timeout: 1\n"),
    ("accept", "labels: strings, plain scalars, empty value",
     "version: 1\nlabels:\n  role: database\n  environment: \"prod\"\n  rack: 12\n  pci: yes\n"
     "  schema_version: 1.10\n  note: ''\n  owner.team_a-b: Zürich\n"),
    ("accept", "labels: empty mapping", "version: 1\nlabels: {}\n"),
    ("accept", "16 labels, 63-character name, 256-character value",
     "version: 1\nlabels:\n  z" + "a" * 62 + ": " + "é" * 256 + "\n"
     + "".join(f"  l{i}: v\n" for i in range(15))),
    # --- must be rejected by the strict YAML pass -------------------------
    ("strict", "duplicate key", "version: 1\npolicy: enforce\npolicy: raise-only\n"),
    ("strict", "anchor and alias", "version: 1\nhost: &h {workload: general}\nx: *h\n"),
    ("strict", "octal-looking integer 010", "version: 1\nlimits:\n  shmmni: 010\n"),
    ("strict", "hex integer 0x1000", "version: 1\nlimits:\n  shmmni: 0x1000\n"),
    ("strict", "integer with underscore", "version: 1\nlimits:\n  shmall: 1_048_576\n"),
    ("strict", "float 20.0 as timeout", "version: 1\nreport:\n  timeout: 20.0\n"),
    ("strict", "explicit tag !!int on a quoted value", "version: 1\nlimits:\n  shmmni: !!int \"4096\"\n"),
    ("strict", "duplicate label", "version: 1\nlabels:\n  role: a\n  role: b\n"),
    ("strict", "float outside labels", "version: 1\nreport:\n  timeout: 1.5\nlabels:\n  v: 1.5\n"),
    # --- must be accepted by the strict YAML pass -------------------------
    # Label values are taken as the text written, so YAML 1.1 number
    # spellings and floats there are not mistakes.
    ("strict-ok", "label values 010, 0x10, 1_000, 1.10",
     "version: 1\nlabels:\n  a: 010\n  b: 0x10\n  c: 1_000\n  d: 1.10\n"),
]


class Tally:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def ok(self, label, note=None):
        self.passed += 1
        print(f"PASS {label}" + (f" ({note})" if note else ""))

    def fail(self, label, details):
        self.failed += 1
        print(f"FAIL {label}")
        for line in details:
            print(f"  {line}")


def path_str(path):
    return ".".join(str(p) for p in path) if path else "(top level)"


def mapping_get(node, key):
    """Value node for key in a composed MappingNode; the last one wins, as in safe_load."""
    found = None
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode) and k.value == str(key):
                found = (k, v)
    return found


def locate(root, path, extra_key=None):
    """1-based (line, col) of the node at `path` (or of key `extra_key` in it)."""
    if root is None:
        return None
    node = root
    mark = root.start_mark
    for part in list(path) + ([extra_key] if extra_key is not None else []):
        if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            mark = node.start_mark
            continue
        kv = mapping_get(node, part)
        if kv is None:
            break
        key_node, node = kv
        mark = key_node.start_mark if part == extra_key else node.start_mark
    return mark.line + 1, mark.column + 1


def schema_errors(validator, doc, hint=False):
    """Schema errors as (path tuple, message, error) sorted by location.

    With hint, an anyOf/oneOf failure (which jsonschema words vaguely) gets
    the property's description appended, saying what is accepted."""
    out = []
    for err in validator.iter_errors(doc):
        path = tuple(err.absolute_path)
        msg = err.message
        if hint and err.validator in ("anyOf", "oneOf") and isinstance(err.schema, dict) and "description" in err.schema:
            msg += f"; expected {err.schema['description']}"
        out.append((path, msg, err))
    out.sort(key=lambda t: ([str(p) for p in t[0]], t[1]))
    return out


def extra_keys(err):
    """Unexpected keys named by an additionalProperties error."""
    if err.validator != "additionalProperties" or not isinstance(err.instance, dict):
        return []
    known = err.schema.get("properties", {})
    return [k for k in err.instance if k not in known]


def strict_problems(text):
    """What PyYAML's safe_load tolerates but the profile contract forbids.

    Returns a list of (line, col, message), 1-based.
    """
    problems = []
    try:
        for ev in yaml.parse(text, Loader=yaml.SafeLoader):
            m = ev.start_mark
            if isinstance(ev, yaml.AliasEvent):
                problems.append((m.line + 1, m.column + 1, f"alias *{ev.anchor} is not allowed"))
            elif getattr(ev, "anchor", None):
                problems.append((m.line + 1, m.column + 1, f"anchor &{ev.anchor} is not allowed"))
            if isinstance(ev, (yaml.ScalarEvent, yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                implicit = ev.implicit if isinstance(ev.implicit, tuple) else (ev.implicit,)
                if ev.tag is not None and not any(implicit):
                    problems.append((m.line + 1, m.column + 1, f"explicit tag {ev.tag} is not allowed"))
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return problems       # safe_load reports the syntax error itself

    def walk(node, as_text=False):
        if isinstance(node, yaml.MappingNode):
            seen = {}
            for k, v in node.value:
                m = k.start_mark
                if not isinstance(k, yaml.ScalarNode):
                    problems.append((m.line + 1, m.column + 1, "mapping keys must be plain scalars"))
                elif k.value in seen:
                    first = seen[k.value]
                    problems.append((m.line + 1, m.column + 1,
                                     f"duplicate key '{k.value}' (first at line {first.line + 1})"))
                else:
                    seen[k.value] = m
                walk(k)
                # shmprov takes a label value as the text written: 010 is "010".
                walk(v, as_text=as_text or (node is root and isinstance(k, yaml.ScalarNode) and k.value == "labels"))
        elif isinstance(node, yaml.SequenceNode):
            for item in node.value:
                walk(item)
        elif isinstance(node, yaml.ScalarNode) and node.style is None and not as_text:
            m = node.start_mark
            if node.tag == INT_TAG and not PLAIN_DECIMAL.match(node.value):
                problems.append((m.line + 1, m.column + 1,
                                 f"integer '{node.value}' is not plain decimal (YAML 1.1 reads it "
                                 f"as {yaml.safe_load(node.value)}); write plain decimal digits"))
            elif node.tag == FLOAT_TAG:
                problems.append((m.line + 1, m.column + 1,
                                 f"'{node.value}' is a floating-point number; profiles take integers or strings only"))

    walk(root)
    return problems


def check_profile(validator, path, tally):
    """A profile that must be valid: schema plus strict pass."""
    errors = []                # (line, col, message)
    root = None
    doc = None
    loaded = False
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_PROFILE_BYTES + 1)
    except OSError as e:
        tally.fail(path, [f"{path}: error: cannot read: {e.strerror}"])
        return
    if len(raw) > MAX_PROFILE_BYTES:
        errors.append((1, 1, "file is larger than 1 MiB"))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        tally.fail(path, [f"{path}: error: not UTF-8 (byte offset {e.start})"])
        return
    try:
        doc = yaml.safe_load(text)
        loaded = True
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        where = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        what = " ".join(str(x) for x in (getattr(e, "context", None), getattr(e, "problem", None)) if x) or str(e)
        errors.append((*where, f"YAML: {what}"))
    if loaded:
        try:
            root = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError:
            root = None
        errors.extend(strict_problems(text))
        for epath, msg, err in schema_errors(validator, doc, hint=True):
            extras = extra_keys(err)
            where = locate(root, epath, extras[0] if extras else None) or (1, 1)
            errors.append((*where, f"{path_str(epath)}: {msg}"))
    if errors:
        errors.sort(key=lambda t: (t[0], t[1]))
        tally.fail(path, [f"{path}:{ln}:{col}: error: {msg}" for ln, col, msg in errors])
    else:
        tally.ok(path)


def check_bad_dir(validator, bad_dir, tally):
    list_path = os.path.join(bad_dir, INVALID_LIST)
    if not os.path.isfile(list_path):
        print(f"SKIP {list_path}: not present, no schema-invalid fixtures checked")
        return
    with open(list_path, encoding="utf-8") as f:
        names = [ln.strip() for ln in f if ln.strip() and not ln.strip().startswith("#")]
    if not names:
        print(f"SKIP {list_path}: lists no files")
    for name in names:
        path = os.path.join(bad_dir, name)
        label = f"{path} (must be rejected)"
        if os.path.basename(name) != name:
            tally.fail(label, [f"{list_path}: error: '{name}' must be a plain file name in {bad_dir}"])
            continue
        try:
            with open(path, encoding="utf-8") as f:
                doc = yaml.safe_load(f)
        except OSError as e:
            tally.fail(label, [f"{path}: error: listed in {INVALID_LIST} but cannot be read: {e.strerror}"])
            continue
        except (UnicodeDecodeError, yaml.YAMLError) as e:
            tally.fail(label, [f"{path}: error: listed in {INVALID_LIST} but is not loadable YAML, so it "
                               f"cannot test the schema ({type(e).__name__}); list it elsewhere"])
            continue
        errs = schema_errors(validator, doc)
        if errs:
            epath, msg, _ = errs[0]
            tally.ok(label, f"rejected: {path_str(epath)}: {msg}")
        else:
            tally.fail(label, [f"{path}: error: listed in {INVALID_LIST} but the schema accepts it"])


def run_self_checks(validator, tally):
    for kind, label, text, *rest in SELF_CHECKS:
        name = f"self-check {kind}: {label}"
        doc = yaml.safe_load(text)
        if kind == "reject":
            want = tuple(rest[0])
            errs = schema_errors(validator, doc)
            hit = [e for e in errs if e[0] == want]
            if hit:
                tally.ok(name, f"{path_str(want)}: {hit[0][1]}")
            elif errs:
                tally.fail(name, [f"rejected, but not at {path_str(want)}: "
                                  + "; ".join(f"{path_str(p)}: {m}" for p, m, _ in errs)])
            else:
                tally.fail(name, [f"schema accepted {text!r}"])
        elif kind == "accept":
            errs = schema_errors(validator, doc)
            if errs:
                tally.fail(name, [f"{path_str(p)}: {m}" for p, m, _ in errs])
            else:
                tally.ok(name)
        elif kind == "strict":
            probs = strict_problems(text)
            if probs:
                tally.ok(name, f"{probs[0][0]}:{probs[0][1]}: {probs[0][2]}")
            else:
                tally.fail(name, [f"strict pass accepted {text!r}"])
        elif kind == "strict-ok":
            probs = strict_problems(text)
            if probs:
                tally.fail(name, [f"{ln}:{col}: {msg}" for ln, col, msg in probs])
            else:
                tally.ok(name)


def main(argv):
    ap = argparse.ArgumentParser(description="Validate shmprov profiles against the profile JSON Schema.")
    ap.add_argument("schema", metavar="SCHEMA", help="path of profile.schema.json")
    ap.add_argument("dir", metavar="DIR", help="directory whose *.yaml files must all be valid")
    ap.add_argument("--bad", metavar="DIR2",
                    help=f"directory whose files listed in {INVALID_LIST} must be rejected")
    args = ap.parse_args(argv)
    for d in [args.dir] + ([args.bad] if args.bad else []):
        if not os.path.isdir(d):
            ap.error(f"{d}: not a directory")

    tally = Tally()
    try:
        with open(args.schema, encoding="utf-8") as f:
            schema = json.load(f)
        Draft202012Validator.check_schema(schema)
    except (OSError, ValueError) as e:
        tally.fail(f"schema {args.schema}", [f"{args.schema}: error: cannot load: {e}"])
    except SchemaError as e:
        tally.fail(f"schema {args.schema}",
                   [f"{args.schema}: error: not a valid draft 2020-12 schema at "
                    f"{path_str(tuple(e.absolute_path))}: {e.message}"])
    else:
        tally.ok(f"schema {args.schema}", "valid draft 2020-12 schema")
    if tally.failed:
        print(f"{tally.passed} passed, {tally.failed} failed")
        return 1
    validator = Draft202012Validator(schema)

    run_self_checks(validator, tally)

    profiles = sorted(os.path.join(args.dir, n) for n in os.listdir(args.dir)
                      if n.endswith(".yaml") and os.path.isfile(os.path.join(args.dir, n)))
    if not profiles:
        tally.fail(f"{args.dir}", [f"{args.dir}: error: no *.yaml files to check"])
    for path in profiles:
        check_profile(validator, path, tally)

    if args.bad:
        check_bad_dir(validator, args.bad, tally)

    print(f"{tally.passed} passed, {tally.failed} failed")
    return 0 if tally.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
