// A report collector as a shmprov user would write one, on the official
// CloudEvents SDK: HTTP and HTTPS (mTLS when the client offers a
// certificate) on 127.0.0.1, every request checked (checks.mjs) and logged
// as one JSON line, its raw body kept in a file.
//
// node receiver.mjs --schema schemas/report.schema.json --out DIR
//     [--cert server.pem --key server.key --ca ca.pem]
//
// Prints "listening http=P https=Q control=R" once all three accept.
// Control (its own port, so it never counts as the agent's connection):
//   POST /_control {"label": "http/changed", "status": 202, "batch_status": 415,
//                   "id_status": {"<event id>": 422}, "delay_ms": 0, "reset_counters": true}
//     every member optional; a new label applies to the requests after it.
//   GET /_stats -> {"http": {"connections", "requests"}, "https": {"connections",
//                   "handshakes", "resumed", "requests"}, "requests"}
// DIR/log.jsonl: one line per request; DIR/bodies/NNNN.body: the raw bytes.
import { appendFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import http from "node:http";
import https from "node:https";
import { parseArgs } from "node:util";
import * as checks from "./checks.mjs";

const { values: opt } = parseArgs({
    options: {
        schema: { type: "string" },
        out: { type: "string" },
        cert: { type: "string" },
        key: { type: "string" },
        ca: { type: "string" },
    },
});
if (!opt.schema || !opt.out) {
    console.error("usage: receiver.mjs --schema FILE --out DIR [--cert F --key F --ca F]");
    process.exit(2);
}
const schema = checks.loadSchema(opt.schema);
mkdirSync(`${opt.out}/bodies`, { recursive: true });
const logFile = `${opt.out}/log.jsonl`;

// What to answer, and the label logged with each request (set by run.sh).
const conf = { label: "", status: 202, batch_status: null, id_status: {}, delay_ms: 0 };
const fresh = () => ({
    http: { connections: 0, requests: 0 },
    https: { connections: 0, handshakes: 0, resumed: 0, requests: 0 },
    requests: 0,
});
let stats = fresh();
let seq = 0; // request number, for the body file names
let connSeq = 0; // connection number, to see which requests shared one

// Each socket gets a number when it is accepted, so the log shows which
// requests shared a connection (one handshake per flush).
function track(server, name) {
    server.on("connection", (sock) => {
        stats[name].connections++;
        sock.shmprovConn = ++connSeq;
    });
    if (name === "https") {
        server.on("secureConnection", (tls) => {
            stats.https.handshakes++;
            if (tls.isSessionReused()) stats.https.resumed++;
        });
    }
}

async function handle(name, req, res) {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const raw = Buffer.concat(chunks);
    stats[name].requests++;
    stats.requests++;
    const n = ++seq;
    const bodyFile = `${opt.out}/bodies/${String(n).padStart(4, "0")}.body`;
    writeFileSync(bodyFile, raw);

    const headers = req.headers;
    const type = (headers["content-type"] ?? "").split(";")[0].trim().toLowerCase();
    const batch = type === checks.BATCH;
    const rec = {
        n,
        label: conf.label,
        server: name,
        conn: req.socket.shmprovConn ?? req.socket._parent?.shmprovConn ?? null,
        method: req.method,
        path: req.url,
        headers,
        mode: batch ? "batch" : type === checks.STRUCTURED ? "structured" : "other",
        body_file: bodyFile,
        body_bytes: raw.length,
    };
    if (name === "https") {
        rec.tls = {
            resumed: req.socket.isSessionReused(),
            client_cert: req.socket.authorized ? "verified" : (req.socket.authorizationError ?? null),
        };
    }

    // Every check, on every request: none of them stops the others.
    const text = raw.toString("utf8");
    const c = {};
    c.content_type = rec.mode !== "other" ? { ok: true } : { ok: false, error: `Content-Type ${headers["content-type"]}` };
    c.utf8 = checks.checkUtf8(raw);
    const sdk = checks.parseWithSdk(headers, text);
    c.sdk = { ok: sdk.ok, ...(sdk.error && { error: sdk.error }) };
    c.schema = sdk.ok ? checks.checkSchema(schema, sdk.events) : { ok: false, error: "not parsed by the SDK" };
    c.envelope = sdk.ok ? checks.checkEnvelope(schema, sdk.events) : { ok: false, error: "not parsed by the SDK" };
    c.numbers = checks.checkNumbers(text);
    c.idempotency_key = checks.checkIdempotencyKey(headers["idempotency-key"], sdk.events.map((e) => e.id), batch);
    // The raw events, for what the SDK rewrites (time) and the v2 contract.
    let rawEvents = [];
    try {
        const j = JSON.parse(text);
        rawEvents = Array.isArray(j) ? j : [j];
    } catch {
        // c.sdk already says why
    }
    c.v2_envelope = rawEvents.length ? checks.checkV2Envelope(rawEvents) : { ok: false, error: "not JSON" };
    c.v2_decimal_siblings = rawEvents.length ? checks.checkDecimalSiblings(rawEvents) : { ok: false, error: "not JSON" };
    rec.checks = c;

    // The events as the SDK gave them (what the closing note shows), with
    // the raw time beside the SDK's (which it cuts to milliseconds).
    rec.events = sdk.events.map((ev, i) => ({
        id: ev.id,
        type: ev.type,
        source: ev.source,
        time: ev.time,
        raw_time: rawEvents[i]?.time,
        sequence: ev.sequence,
        command: ev.data?.command,
        result: ev.data?.result,
        corrective_change: ev.data?.corrective_change,
        rollback_complete: ev.data?.rollback?.complete,
        hostname: ev.data?.host?.hostname,
    }));

    // The answer: configured per event id, for batches, or the default.
    let status = conf.status;
    if (batch && conf.batch_status) status = conf.batch_status;
    else if (!batch && rec.events[0] && conf.id_status[rec.events[0].id]) status = conf.id_status[rec.events[0].id];
    if (conf.delay_ms) await new Promise((r) => setTimeout(r, conf.delay_ms));
    rec.status = status;
    appendFileSync(logFile, JSON.stringify(rec) + "\n");
    res.writeHead(status, { "content-type": "application/json" });
    res.end(JSON.stringify({ n, status }));
}

function control(req, res) {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => {
        if (req.method === "POST" && req.url === "/_control") {
            const set = JSON.parse(body || "{}");
            if (set.reset_counters) stats = fresh();
            for (const k of ["label", "status", "batch_status", "id_status", "delay_ms"]) if (k in set) conf[k] = set[k];
            res.writeHead(200).end(JSON.stringify(conf));
        } else if (req.url === "/_stats") {
            res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(stats));
        } else {
            res.writeHead(404).end();
        }
    });
}

const onError = (name) => (req, res) =>
    handle(name, req, res).catch((e) => {
        console.error(`receiver: ${name} request failed: ${e.stack}`);
        res.writeHead(500).end();
    });
const plain = http.createServer(onError("http"));
track(plain, "http");
const servers = [plain];
let secure = null;
if (opt.cert) {
    secure = https.createServer(
        {
            cert: readFileSync(opt.cert),
            key: readFileSync(opt.key),
            ...(opt.ca && { ca: readFileSync(opt.ca), requestCert: true, rejectUnauthorized: false }),
        },
        onError("https"),
    );
    track(secure, "https");
    servers.push(secure);
}
const ctl = http.createServer(control);
servers.push(ctl);

const listen = (s) => new Promise((r) => s.listen(0, "127.0.0.1", r));
await Promise.all(servers.map(listen));
const port = (s) => (s ? s.address().port : "none");
console.log(`listening http=${port(plain)} https=${port(secure)} control=${port(ctl)}`);
for (const sig of ["SIGTERM", "SIGINT"]) process.on(sig, () => process.exit(0));
