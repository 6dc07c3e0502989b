-- latest-state.sql: the latest state of every host from shmprov's run
-- reports (CloudEvents type dev.shmprov.run.v2, data per
-- schemas/report.schema.json), one row per host, worst first.
--
-- The table it reads, one row per event (a collector inserts each event it
-- accepts; a retried or re-flushed event has the same id, so
-- INSERT ... ON CONFLICT (id) DO NOTHING keeps one):
--
--   CREATE TABLE shmprov_events (
--       id       text PRIMARY KEY,     -- the CloudEvents id (also the Idempotency-Key)
--       source   text NOT NULL,        -- urn:shmprov:host:<32 hex>: one per host
--       time     timestamptz NOT NULL, -- the CloudEvents time (microseconds)
--       sequence text,                 -- 20-digit zero-padded decimal, so text order is
--                                      -- numeric order; NULL when the agent could not
--                                      -- update its state file
--       type     text NOT NULL,        -- dev.shmprov.run.v2
--       data     jsonb NOT NULL        -- the report
--   );
--
-- Run it with psql (tests/consumers/pg.sh does, on a real PostgreSQL):
--
--   psql -v silent_after='2 hours' -f schemas/latest-state.sql
--
-- silent_after (default 2 hours) is any PostgreSQL interval. The
-- shmprov-drift timer verifies every hour, so a healthy host reports at
-- least hourly: 2 hours of silence is one missed run and then some.
--
-- state, per host:
--   silent          no report at all (dry runs included: the agent is alive)
--                   for longer than silent_after; last_state keeps what it was
-- otherwise that of the latest report that could change the host, i.e. any
-- result but dry-run (a dry run changes nothing and says nothing about
-- whether the host is in sync), the latest by time, then sequence:
--   in-sync         changed or unchanged (apply), in-sync (verify)
--   corrected       changed with corrective_change true: in sync now, but
--                   shmprov had to put back a value or a drop-in that differed
--                   from what it last set: something else changes this host.
--                   Counts as in sync (column in_sync). The next hourly verify
--                   says in-sync again, or drifted if the fight goes on.
--   drifted         drift (verify found a discrepancy; see data.drift)
--   failed          failed (rolled back; data.rollback.complete says whether
--                   everything was put back, data.error why)
--   refused         refused (nothing changed; data.error says why: a conflicting
--                   sysctl file, segments in use, ...)
--   not-applicable  not-applicable (read-only /proc/sys, e.g. a container)
--   removed         removed, or unchanged from remove (nothing to remove):
--                   shmprov's drop-in is gone and the kernel holds what boot
--                   gives without it; the host no longer follows a profile
--   unknown         only dry runs so far, or a result this query does not know
--                   (a newer agent)
--
-- Ordering by time first, then sequence: time is the run's own clock, with
-- microseconds; sequence (per host, it only grows) breaks ties and orders
-- events from the same microsecond. Events that arrive late (spooled while
-- the collector was down, flushed hours later) still sort by when they
-- happened. A host whose clock jumps backwards sorts by the wrong time:
-- compare sequence within one source to see it.

\if :{?silent_after}
\else
\set silent_after '2 hours'
\endif

WITH last_heard AS (         -- every host, and when it last said anything
    SELECT source, max(time) AS last_report
    FROM shmprov_events
    GROUP BY source
), latest AS (               -- each host's latest report that can change its state
    SELECT DISTINCT ON (source) source, time, sequence, data
    FROM shmprov_events
    WHERE data->>'result' IS DISTINCT FROM 'dry-run'
    ORDER BY source, time DESC, sequence DESC NULLS LAST, id DESC
), mapped AS (
    SELECT h.source, h.last_report, l.time, l.sequence, l.data,
           CASE l.data->>'result'
               WHEN 'changed' THEN
                   CASE WHEN (l.data->>'corrective_change')::boolean THEN 'corrected' ELSE 'in-sync' END
               WHEN 'unchanged' THEN
                   CASE WHEN l.data->>'command' = 'remove' THEN 'removed' ELSE 'in-sync' END
               WHEN 'removed' THEN 'removed'
               WHEN 'in-sync' THEN 'in-sync'
               WHEN 'drift' THEN 'drifted'
               WHEN 'failed' THEN 'failed'
               WHEN 'refused' THEN 'refused'
               WHEN 'not-applicable' THEN 'not-applicable'
               ELSE 'unknown'
           END AS last_state
    FROM last_heard h
    LEFT JOIN latest l USING (source)
), stated AS (
    SELECT *, CASE WHEN last_report < now() - :'silent_after'::interval THEN 'silent' ELSE last_state END AS state
    FROM mapped
)
SELECT state,
       source,
       data->'host'->>'hostname' AS hostname,
       last_state,
       last_state IN ('in-sync', 'corrected') AS in_sync,
       data->>'result' AS result,
       data->'error'->>'code' AS error,
       time AS state_time,
       sequence AS state_sequence,
       last_report
FROM stated
ORDER BY array_position(ARRAY['failed', 'refused', 'drifted', 'silent', 'unknown', 'corrected',
                              'not-applicable', 'removed', 'in-sync'], state),
         source;
