// Assertions over the receiver's log, for run.sh: each prints
// "PASS name" or "FAIL name: why" lines (run.sh numbers and counts them).
//
//   node check.mjs requests LOG        every per-request check, over all requests
//   node check.mjs event LOG LABEL RESULT [command=apply|verify]
//                        [corrective=true|false] [rollback_complete=true|false]
//                        [events=N] [batches=N] [hostname_hex=HEX]
//                                      the requests made under LABEL delivered (2xx)
//                                      an event with that result (and those fields)
//   node check.mjs order LOG           no event delivered twice; per source,
//                                      sequence grows in the order events arrive
//   node check.mjs show LOG LABEL...   the events as the SDK parsed them
import { existsSync, readFileSync } from "node:fs";
import { unescapeBytes } from "./checks.mjs";

const [cmd, logFile, ...args] = process.argv.slice(2);
// No log yet: the receiver has had no request.
const log = (existsSync(logFile) ? readFileSync(logFile, "utf8") : "").split("\n").filter(Boolean).map((l) => JSON.parse(l));
const ok2xx = (r) => r.status >= 200 && r.status < 300;
const say = (pass, name, why) => console.log(pass ? `PASS ${name}` : `FAIL ${name}: ${why}`);

// What each per-request check means, in the order they are printed.
const CHECKS = {
    content_type: "Content-Type is application/cloudevents+json or application/cloudevents-batch+json",
    sdk: "CloudEvents SDK 10: HTTP.toEvent() parses it and event.validate() is true",
    schema: "ajv 2020 + ajv-formats: every data matches schemas/report.schema.json",
    envelope: "id is a v4 UUID, datacontenttype application/json, dataschema is the schema's $id",
    utf8: "the body is strict UTF-8 (TextDecoder fatal)",
    idempotency_key: "Idempotency-Key is an sf-string (structured-headers parseItem): the id, or batch-<sha256>",
    numbers: "every number survives JSON.parse exactly (none beyond 2^53-1)",
    v2_envelope: "v2: type dev.shmprov.run.v2, urn:shmprov:host source, time with microseconds, 20-digit sequence, v2 dataschema",
    v2_decimal_siblings: "v2: every <name>_decimal holds a value beyond 2^53-1 beside a null <name>",
};

function requests() {
    if (!log.length) return say(false, "requests: the receiver got requests", "the log is empty");
    for (const [name, what] of Object.entries(CHECKS)) {
        const bad = log.filter((r) => !r.checks[name].ok);
        const detail = bad.slice(0, 3).map((r) => `[${r.label} #${r.n}] ${r.checks[name].error}`).join(" | ");
        say(!bad.length, `every request (${log.length}): ${what}`, `${bad.length} failed: ${detail}`);
    }
    const elsewhere = log.filter((r) => r.method !== "POST" || r.path !== "/v1/events");
    say(!elsewhere.length, "every request is a POST to the profile's /v1/events", elsewhere.map((r) => `#${r.n} ${r.method} ${r.path}`).join(", "));
    const tls = log.filter((r) => r.server === "https");
    const noCert = tls.filter((r) => r.tls.client_cert !== "verified");
    say(tls.length && !noCert.length, `every HTTPS request (${tls.length}) came with a verified client certificate (mTLS)`,
        tls.length ? noCert.map((r) => `#${r.n}: ${r.tls.client_cert}`).join(", ") : "no HTTPS request");
}

function event(label, result, opts) {
    const reqs = log.filter((r) => r.label === label);
    const delivered = reqs.filter(ok2xx).flatMap((r) => r.events);
    const name = `${label}: a ${result} event delivered`;
    if (!reqs.length) return say(false, name, "no request was made");
    const ev = delivered.find((e) => e.result === result);
    if (!ev) return say(false, name, `delivered results: [${delivered.map((e) => e.result).join(", ")}]`);
    say(true, name);
    if (opts.command) say(ev.command === opts.command, `${label}: data.command is ${opts.command}`, `it is ${ev.command}`);
    if (opts.corrective) say(String(ev.corrective_change) === opts.corrective, `${label}: data.corrective_change is ${opts.corrective}`, `it is ${ev.corrective_change}`);
    if (opts.rollback_complete) say(String(ev.rollback_complete) === opts.rollback_complete, `${label}: data.rollback.complete is ${opts.rollback_complete}`, `it is ${ev.rollback_complete}`);
    if (opts.batches) {
        const batches = reqs.filter((r) => ok2xx(r) && r.mode === "batch").length;
        say(batches === Number(opts.batches), `${label}: ${opts.batches} batch(es) delivered`, `${batches} were`);
    }
    if (opts.events) say(delivered.length === Number(opts.events), `${label}: ${opts.events} events delivered`, `${delivered.length} were`);
    if (opts.hostname_hex) {
        const got = typeof ev.hostname === "string" ? unescapeBytes(ev.hostname).toString("hex") : String(ev.hostname);
        say(got === opts.hostname_hex, `${label}: data.host.hostname un-escaped (\\xHH -> byte) gives back the host's bytes`,
            `${JSON.stringify(ev.hostname)} gives ${got}, expected ${opts.hostname_hex}`);
    }
}

function order() {
    const delivered = log.filter(ok2xx).flatMap((r) => r.events);
    const seen = new Map();
    const twice = [];
    for (const e of delivered) {
        if (seen.has(e.id)) twice.push(e.id);
        seen.set(e.id, e);
    }
    say(!twice.length, `every event (${delivered.length}) got a 2xx once, never twice`, `delivered again: ${twice.join(", ")}`);
    const bySource = new Map();
    for (const e of delivered) bySource.set(e.source, [...(bySource.get(e.source) ?? []), e]);
    const bad = [];
    for (const [source, evs] of bySource) {
        for (let i = 1; i < evs.length; i++) {
            const [a, b] = [evs[i - 1].sequence, evs[i].sequence];
            if (typeof a !== "string" || typeof b !== "string" || !(a < b)) bad.push(`${source}: ${a} then ${b}`);
        }
    }
    say(!bad.length, "per source, sequence grows in the order the events were delivered", bad.slice(0, 3).join("; "));
}

// One block per label: what a consumer's handler got from the SDK.
function show(labels) {
    for (const label of labels) {
        const reqs = log.filter((r) => r.label === label);
        console.log(`--- ${label}: ${reqs.length} request(s)`);
        for (const r of reqs) {
            console.log(`  #${r.n} ${r.server} ${r.mode} -> ${r.status}${r.tls ? ` (TLS conn ${r.conn}${r.tls.resumed ? ", resumed" : ""})` : ""}`);
            for (const e of r.events) {
                console.log(`    type=${e.type} source=${e.source} id=${e.id}`);
                console.log(`    time=${e.time} (raw ${e.raw_time}) sequence=${e.sequence} data.result=${e.result}`);
            }
            if (!r.events.length) console.log(`    (the SDK did not parse it: ${r.checks.sdk.error})`);
        }
    }
}

const kv = Object.fromEntries(args.slice(2).map((a) => a.split(/=(.*)/s).slice(0, 2)));
switch (cmd) {
    case "requests": requests(); break;
    case "event": event(args[0], args[1], kv); break;
    case "order": order(); break;
    case "show": show(args); break;
    default:
        console.error("usage: check.mjs requests|event|order|show LOG ...");
        process.exit(2);
}
