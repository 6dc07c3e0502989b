#!/bin/bash
# The reports in a real PostgreSQL (Debian's postgresql package): every body
# run.sh recorded goes in as jsonb, every event into shmprov_events (the
# table schemas/latest-state.sql reads) and into typed columns (bigint
# sizes, timestamptz time), with no error; then latest-state.sql runs on
# them, and on made-up hosts whose state is known.
# Usage: pg.sh DIR   (DIR: run.sh's OUTDIR: log.jsonl, bodies/, expected-latest-state)
set -u
py=/usr/bin/python3
in=$(realpath "${1:?usage: pg.sh DIR}")
src=$(cd "$(dirname "$(realpath "$0")")/../.." && pwd)
. "$src/tests/integration/lib.sh"
n=0
ok() { n=$((n + 1)); pass=$((pass + 1)); echo "ok $n - $1"; }
bad() { n=$((n + 1)); fail=$((fail + 1)); echo "not ok $n - $1"; }
die() { bad "$1"; echo "1..$n"; finish; exit 1; }

# Debian's layout (never a pg_ctl elsewhere on PATH): the newest installed.
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -x "$bin/initdb" ] || die "Debian's PostgreSQL in /usr/lib/postgresql/*/bin (apt-get install -y postgresql)"
[ -s "$in/log.jsonl" ] || die "run.sh's recorded requests in $in (run tests/consumers/run.sh SHMPROV $in first)"

# PostgreSQL refuses to run as root: the server and psql run as nobody, in
# a private directory, on a Unix socket there only (no TCP at all).
dir=$(mktemp -d /tmp/shmprov-pg.XXXXXX)
as=() who=$(id -un)
if [ "$(id -u)" = 0 ]; then
    chown nobody:nogroup "$dir"
    as=(setpriv --reuid=nobody --regid=nogroup --clear-groups --) who=nobody
fi
cleanup() {
    [ -f "$dir/data/postmaster.pid" ] && "${as[@]}" "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 1' INT TERM # so that cleanup runs then too
cd "$dir" || exit 1

"${as[@]}" "$bin/initdb" -D "$dir/data" -U shmprov --auth=trust -E UTF8 --locale=C >"$dir/initdb.log" 2>&1 ||
    die "initdb: $(tail -n 5 "$dir/initdb.log")"
"${as[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
    -o "-c listen_addresses='' -c unix_socket_directories='$dir'" start >/dev/null 2>&1 ||
    die "pg_ctl start: $(tail -n 5 "$dir/server.log")"
ok "PostgreSQL $("$bin/postgres" --version | awk '{print $3}') started from $bin, as $who, on a Unix socket only"
psql() { "${as[@]}" "$bin/psql" -h "$dir" -U shmprov -d postgres -X -q -v ON_ERROR_STOP=1 "$@"; }
# value SQL: one value, unaligned
value() { psql -A -t -c "$1"; }

# The bodies, readable by the server (pg_read_binary_file runs in it).
mkdir "$dir/bodies"
cp "$in"/bodies/*.body "$dir/bodies/"
chmod -R a+rX "$dir/bodies"

# Every body as PostgreSQL decodes it: strict UTF-8 (convert_from), then
# jsonb; every event into shmprov_events and into typed columns. A failure
# is recorded in ingest_errors with the file and the message, never skipped
# silently.
psql -v bodies="$dir/bodies" >"$dir/ingest.out" 2>&1 <<'SQL' || die "ingest: $(cat "$dir/ingest.out")"
CREATE TABLE ingest_errors (what text, error text);
CREATE TABLE raw_bodies (file text PRIMARY KEY, body jsonb NOT NULL);
CREATE TABLE shmprov_events (
    id text PRIMARY KEY, source text NOT NULL, time timestamptz NOT NULL,
    sequence text, type text NOT NULL, data jsonb NOT NULL);
-- What a dashboard needs as real types. A size beyond 2^53-1 is null in the
-- report with the exact value in <name>_decimal: bigint holds the one,
-- numeric the other (18446744073692774399 is beyond bigint too).
CREATE TABLE shmprov_runs (
    id text PRIMARY KEY REFERENCES shmprov_events, source text NOT NULL,
    time timestamptz NOT NULL, sequence text, hostname text, command text, result text NOT NULL,
    corrective_change boolean, error_code text,
    shmmax_before bigint, shmmax_target bigint, shmmax_after bigint, shmmax_before_exact numeric,
    shmall_before bigint, shmall_target bigint, shmall_after bigint,
    memtotal_bytes bigint, page_size bigint, duration_ms bigint, reports_dropped bigint);

SELECT set_config('ingest.dir', :'bodies', false);
DO $$
DECLARE
    f text;
    dir text := current_setting('ingest.dir');
BEGIN
    FOR f IN SELECT pg_ls_dir(dir) ORDER BY 1 LOOP
        BEGIN
            INSERT INTO raw_bodies VALUES (f, convert_from(pg_read_binary_file(dir || '/' || f), 'UTF8')::jsonb);
        EXCEPTION WHEN others THEN
            INSERT INTO ingest_errors VALUES ('body ' || f, SQLERRM);
        END;
    END LOOP;
END $$;

-- Each event of each body (a batch is an array); retries carry the same id.
CREATE VIEW all_events AS
    SELECT file, e FROM raw_bodies,
        jsonb_array_elements(CASE jsonb_typeof(body) WHEN 'array' THEN body ELSE jsonb_build_array(body) END) e;
DO $$
DECLARE
    r record;
    mx jsonb;
    ma jsonb;
BEGIN
    FOR r IN SELECT DISTINCT ON (e->>'id') file, e FROM all_events ORDER BY e->>'id', file LOOP
        BEGIN
            INSERT INTO shmprov_events
                VALUES (r.e->>'id', r.e->>'source', (r.e->>'time')::timestamptz, r.e->>'sequence',
                        r.e->>'type', r.e->'data');
            mx := jsonb_path_query_first(r.e->'data', '$.keys[*] ? (@.key == "kernel.shmmax")');
            ma := jsonb_path_query_first(r.e->'data', '$.keys[*] ? (@.key == "kernel.shmall")');
            INSERT INTO shmprov_runs VALUES (
                r.e->>'id', r.e->>'source', (r.e->>'time')::timestamptz, r.e->>'sequence',
                r.e->'data'->'host'->>'hostname', r.e->'data'->>'command', r.e->'data'->>'result',
                (r.e->'data'->>'corrective_change')::boolean, r.e->'data'->'error'->>'code',
                (mx->>'before')::bigint, (mx->>'target')::bigint, (mx->>'after')::bigint,
                coalesce(mx->>'before', mx->>'before_decimal')::numeric,
                (ma->>'before')::bigint, (ma->>'target')::bigint, (ma->>'after')::bigint,
                (r.e->'data'->'host'->>'memtotal_bytes')::bigint, (r.e->'data'->'host'->>'page_size')::bigint,
                (r.e->'data'->>'duration_ms')::bigint, (r.e->'data'->>'reports_dropped')::bigint);
        EXCEPTION WHEN others THEN
            INSERT INTO ingest_errors VALUES ('event ' || (r.e->>'id') || ' in ' || r.file, SQLERRM);
        END;
    END LOOP;
END $$;
SQL

bodies=$(ls "$dir/bodies" | wc -l)
errors=$(value "SELECT count(*) FROM ingest_errors")
expect "every body ($bodies) and every event went in as jsonb and typed columns with no error ($errors errors)" test "$errors" = 0
[ "$errors" = 0 ] || psql -c "SELECT * FROM ingest_errors LIMIT 10" | sed 's/^/#   /'
want=$("$py" -c '
import json, sys
print(len({e["id"] for l in open(sys.argv[1]) if l.strip() for e in json.loads(l)["events"]}))' "$in/log.jsonl")
have=$(value "SELECT count(*) FROM shmprov_events")
expect "shmprov_events holds each event the receiver saw, once ($have of $want)" test "$have" = "$want"
expect "a retried event (batch refused, then one by one) is the same event each time" \
    test "$(value "SELECT count(*) FROM (SELECT e->>'id' FROM all_events GROUP BY 1 HAVING count(DISTINCT e) > 1) d")" = 0
expect "time keeps its microseconds in timestamptz" \
    test "$(value "SELECT count(*) FROM shmprov_events WHERE extract(microseconds FROM time)::bigint % 1000 <> 0")" -gt 0
expect "the kernel's default shmmax (beyond 2^53-1) is exact in numeric" \
    test "$(value "SELECT count(*) FROM shmprov_runs WHERE shmmax_before_exact = 18446744073692774399")" -gt 0

echo "# ---- what got in, per result (shmprov_runs) ----"
psql -c "SELECT result, command, count(*), min(shmmax_after) AS shmmax_after_min, max(shmmax_after) AS shmmax_after_max,
                bool_or(corrective_change) AS any_corrective FROM shmprov_runs GROUP BY 1, 2 ORDER BY 1, 2" | sed 's/^/# /'

echo "# ---- schemas/latest-state.sql on what the consumers run sent ----"
psql -f "$src/schemas/latest-state.sql" | sed 's/^/# /'
expected=$(cat "$in/expected-latest-state" 2>/dev/null)
got=$(psql -A -t -F ' ' -c "\\i $src/schemas/latest-state.sql" | awk '{print $1}' | sort -u | tr '\n' ' ')
expect "latest-state: the one host is ${expected:-?} (got: $got)" test "$got" = "$expected "

# Made-up hosts, each history ending in one state (rolled back afterwards).
psql --csv -v silent_after='2 hours' >"$dir/synthetic.csv" 2>&1 <<SQL
BEGIN;
INSERT INTO shmprov_events (id, source, time, sequence, type, data)
SELECT 'fake-' || row_number() OVER (), 'urn:test:' || host, now() - ago::interval, seq, 'dev.shmprov.run.v2', data::jsonb
FROM (VALUES
    ('in-sync',        '10 min', '00000000000000000001', '{"result": "changed", "corrective_change": false}'),
    ('in-sync',        '5 min',  '00000000000000000002', '{"result": "unchanged"}'),
    ('corrected',      '5 min',  '00000000000000000001', '{"result": "changed", "corrective_change": true}'),
    ('drifted',        '5 min',  '00000000000000000001', '{"result": "drift"}'),
    ('failed',         '5 min',  '00000000000000000001', '{"result": "failed", "error": {"code": "probe-failed"}}'),
    ('refused',        '5 min',  '00000000000000000001', '{"result": "refused", "error": {"code": "conflict"}}'),
    ('not-applicable', '5 min',  '00000000000000000001', '{"result": "not-applicable"}'),
    ('drifted-dryrun', '10 min', '00000000000000000001', '{"result": "drift"}'),
    ('drifted-dryrun', '1 min',  '00000000000000000002', '{"result": "dry-run"}'),
    ('silent',         '3 hours','00000000000000000001', '{"result": "in-sync"}'),
    ('seq-breaks-tie', '5 min',  '00000000000000000002', '{"result": "in-sync"}'),
    ('seq-breaks-tie', '5 min',  '00000000000000000001', '{"result": "drift"}'),
    ('time-first',     '10 min', '00000000000000000009', '{"result": "in-sync"}'),
    ('time-first',     '5 min',  '00000000000000000002', '{"result": "failed"}'),
    ('dry-run-only',   '5 min',  '00000000000000000001', '{"result": "dry-run"}'),
    ('removed',        '10 min', '00000000000000000001', '{"command": "apply", "result": "changed"}'),
    ('removed',        '5 min',  '00000000000000000002', '{"command": "remove", "result": "removed"}'),
    ('removed-twice',  '5 min',  '00000000000000000001', '{"command": "remove", "result": "unchanged"}')
) AS v(host, ago, seq, data);
\i $src/schemas/latest-state.sql
ROLLBACK;
SQL
want_states="corrected=corrected drifted-dryrun=drifted drifted=drifted dry-run-only=unknown failed=failed in-sync=in-sync not-applicable=not-applicable refused=refused removed-twice=removed removed=removed seq-breaks-tie=in-sync silent=silent time-first=failed"
got_states=$("$py" -c '
import csv, sys
rows = [r for r in csv.DictReader(open(sys.argv[1])) if r.get("source", "").startswith("urn:test:")]
print(" ".join(sorted(r["source"][9:] + "=" + r["state"] for r in rows)))' "$dir/synthetic.csv" 2>&1)
expect "latest-state maps made-up histories to their states (dry run ignored, silent after 2 h, time then sequence)" \
    test "$got_states" = "$want_states"
[ "$got_states" = "$want_states" ] || { echo "#   got:      $got_states"; echo "#   expected: $want_states"; sed 's/^/#   /' "$dir/synthetic.csv" | head -n 20; }

echo "1..$n"
finish
