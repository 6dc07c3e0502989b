// The checks a real consumer of shmprov's reports makes on one HTTP request,
// each with the library such a consumer would use. Pure functions: the
// receiver runs them on every request and logs the results; nothing here
// decides what the receiver answers.
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { HTTP } from "cloudevents";
import { parseItem } from "structured-headers";

const require = createRequire(import.meta.url);
// ajv ships CommonJS: its 2020-12 build, as the schema's "$schema" asks.
const Ajv2020 = require("ajv/dist/2020").default;
const addFormats = require("ajv-formats").default;

export const STRUCTURED = "application/cloudevents+json";
export const BATCH = "application/cloudevents-batch+json";
export const V2_TYPE = "dev.shmprov.run.v2";
export const V2_SCHEMA_ID = "https://shmprov.dev/schemas/report.v2.schema.json";
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

// The report schema, compiled once. A schema ajv cannot compile (strict
// mode: unknown keywords, bad types) fails every schema check, loudly.
export function loadSchema(path) {
    const schema = JSON.parse(readFileSync(path, "utf8"));
    const ajv = new Ajv2020({ allErrors: true });
    addFormats(ajv);
    try {
        return { id: schema.$id, validate: ajv.compile(schema) };
    } catch (e) {
        return { id: schema.$id, error: `ajv cannot compile ${path}: ${e.message}` };
    }
}

// Every check returns { ok: true } or { ok: false, error: "why" }.
const pass = { ok: true };
const failed = (error) => ({ ok: false, error });

// The body, as strict UTF-8 (a consumer in Python, Go or Rust refuses
// anything else). The Python check of the same bytes is check_bodies.py.
export function checkUtf8(raw) {
    try {
        new TextDecoder("utf-8", { fatal: true }).decode(raw);
        return pass;
    } catch {
        const at = firstInvalidUtf8(raw);
        return failed(`not valid UTF-8 at byte ${at}: ...${JSON.stringify(raw.subarray(Math.max(0, at - 20), at + 4).toString("latin1"))}`);
    }
}

// Where strict decoding stops, for the message (RFC 3629's table).
function firstInvalidUtf8(b) {
    for (let i = 0; i < b.length; ) {
        const c = b[i];
        let n, lo = 0x80, hi = 0xbf;
        if (c < 0x80) { i++; continue; }
        else if (c >= 0xc2 && c <= 0xdf) n = 1;
        else if (c >= 0xe0 && c <= 0xef) { n = 2; if (c === 0xe0) lo = 0xa0; if (c === 0xed) hi = 0x9f; }
        else if (c >= 0xf0 && c <= 0xf4) { n = 3; if (c === 0xf0) lo = 0x90; if (c === 0xf4) hi = 0x8f; }
        else return i;
        for (let k = 1; k <= n; k++) {
            const d = b[i + k];
            if (d === undefined || d < (k === 1 ? lo : 0x80) || d > (k === 1 ? hi : 0xbf)) return i;
        }
        i += n + 1;
    }
    return b.length;
}

// Every number token of the raw JSON text, with its offset: strings are
// skipped (escapes included), so digits inside strings never count.
export function numberTokens(text) {
    const tokens = [];
    const num = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
    for (let i = 0; i < text.length; i++) {
        const c = text[i];
        if (c === '"') {
            for (i++; i < text.length && text[i] !== '"'; i++) if (text[i] === "\\") i++;
        } else if (c === "-" || (c >= "0" && c <= "9")) {
            num.lastIndex = i;
            const m = num.exec(text);
            if (!m) return tokens; // not JSON: the SDK check says so
            tokens.push({ text: m[0], at: i });
            i += m[0].length - 1;
        }
    }
    return tokens;
}

// Every number survives JSON.parse exactly: String(JSON.parse(token)) is
// the token, and no integer is beyond 2^53-1 (where doubles skip integers:
// 18446744073692774399 parses as 18446744073692774000).
export function checkNumbers(text) {
    const bad = [];
    for (const t of numberTokens(text)) {
        const parsed = JSON.parse(t.text);
        const integer = /^-?[0-9]+$/.test(t.text);
        if (String(parsed) !== t.text) bad.push(`${t.text} parses as ${parsed}`);
        else if (integer && (BigInt(t.text) > MAX_SAFE || BigInt(t.text) < -MAX_SAFE)) bad.push(`${t.text} is beyond 2^53-1`);
    }
    return bad.length ? failed(`numbers not exact in JavaScript: ${[...new Set(bad)].join(", ")}`) : pass;
}

// Idempotency-Key: an sf-string (RFC 9651 parseItem gives a JS string, not
// a Token), equal to "<id>" for one event and "batch-<sha256 of each id and
// a newline>" for a batch.
export function checkIdempotencyKey(header, ids, batch) {
    if (header === undefined) return failed("no Idempotency-Key header");
    let item;
    try {
        item = parseItem(header);
    } catch (e) {
        return failed(`Idempotency-Key ${header} is not a Structured Field item: ${e.message}`);
    }
    const [value, params] = item;
    if (typeof value !== "string") return failed(`Idempotency-Key ${header} is not an sf-string (a ${value?.constructor?.name ?? typeof value})`);
    if (params.size) return failed(`Idempotency-Key ${header} has parameters`);
    const want = batch
        ? "batch-" + createHash("sha256").update(ids.map((id) => id + "\n").join("")).digest("hex")
        : ids[0];
    return value === want ? pass : failed(`Idempotency-Key is "${value}", expected "${want}"`);
}

// The official SDK, as a consumer's HTTP handler calls it: toEvent() on the
// headers and the body as received, then validate() (true, or it throws).
// Structured mode gives one event; the batch content type an array.
export function parseWithSdk(headers, bodyText) {
    try {
        const parsed = HTTP.toEvent({ headers, body: bodyText });
        const events = Array.isArray(parsed) ? parsed : [parsed];
        if (events.length === 0) return { ...failed("an empty batch"), events };
        for (const ev of events) if (ev.validate() !== true) return { ...failed(`validate() said no for ${ev.id}`), events };
        return { ...pass, events };
    } catch (e) {
        const detail = e.errors ? ` ${JSON.stringify(e.errors)}` : "";
        return { ...failed(`${e.name}: ${e.message}${detail}`), events: [] };
    }
}

// Each event's data against schemas/report.schema.json (ajv, draft 2020-12,
// with formats).
export function checkSchema(schema, events) {
    if (schema.error) return failed(schema.error);
    for (const ev of events) {
        if (!schema.validate(ev.data)) {
            const errs = schema.validate.errors.slice(0, 5).map((e) => `${e.instancePath || "/"} ${e.message}`);
            return failed(`${ev.id}: data does not match ${schema.id}: ${errs.join("; ")}`);
        }
    }
    return pass;
}

// The envelope every version promises (README "Reports").
export function checkEnvelope(schema, events) {
    for (const ev of events) {
        if (ev.specversion !== "1.0") return failed(`${ev.id}: specversion ${ev.specversion}`);
        if (!/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/.test(ev.id)) return failed(`id ${ev.id} is not a v4 UUID`);
        if (ev.datacontenttype !== "application/json") return failed(`${ev.id}: datacontenttype ${ev.datacontenttype}`);
        if (ev.dataschema !== schema.id) return failed(`${ev.id}: dataschema ${ev.dataschema} is not the schema file's $id ${schema.id}`);
    }
    return pass;
}

// The v2 contract: the envelope as the raw JSON has it (the SDK
// rewrites "time" to milliseconds, so it is read from the raw event).
export function checkV2Envelope(rawEvents) {
    for (const ev of rawEvents) {
        const who = ev.id;
        if (ev.type !== V2_TYPE) return failed(`${who}: type ${ev.type}, expected ${V2_TYPE}`);
        if (!/^urn:shmprov:host:[0-9a-f]{32}$/.test(ev.source)) return failed(`${who}: source ${ev.source} is not urn:shmprov:host:<32 hex>`);
        if (!/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/.test(ev.time) || Number.isNaN(Date.parse(ev.time))) return failed(`${who}: time ${ev.time} is not RFC 3339 UTC with microseconds`);
        if (ev.dataschema !== V2_SCHEMA_ID) return failed(`${who}: dataschema ${ev.dataschema}, expected ${V2_SCHEMA_ID}`);
        if (typeof ev.sequence !== "string" || !/^[0-9]{20}$/.test(ev.sequence)) return failed(`${who}: sequence ${JSON.stringify(ev.sequence)} is not a 20-digit string`);
    }
    return pass;
}

// The v2 number contract: a value beyond 2^53-1 is null with a sibling
// "<name>_decimal" holding it as a decimal string; every "_decimal" has a
// null sibling and holds a value that needed it.
export function checkDecimalSiblings(rawEvents) {
    const bad = [];
    const walk = (node, path) => {
        if (Array.isArray(node)) return node.forEach((v, i) => walk(v, `${path}/${i}`));
        if (node === null || typeof node !== "object") return;
        for (const [k, v] of Object.entries(node)) {
            const m = /^(.*)_decimal$/.exec(k);
            if (m) {
                if (!(m[1] in node) || node[m[1]] !== null) bad.push(`${path}/${k} without a null ${m[1]}`);
                else if (typeof v !== "string" || !/^[0-9]+$/.test(v) || BigInt(v) <= MAX_SAFE) bad.push(`${path}/${k} = ${JSON.stringify(v)} is not a decimal beyond 2^53-1`);
            }
            walk(v, `${path}/${k}`);
        }
    };
    for (const ev of rawEvents) walk(ev.data, ev.id);
    return bad.length ? failed(bad.slice(0, 5).join("; ")) : pass;
}

// The design's escaping of strings that are not UTF-8 (or hold a
// backslash), reversed: "\xHH" -> byte 0xHH, everything else as UTF-8.
export function unescapeBytes(s) {
    const out = [];
    for (let i = 0; i < s.length; ) {
        const m = /^\\x([0-9a-f]{2})/.exec(s.slice(i, i + 4));
        if (m) {
            out.push(parseInt(m[1], 16));
            i += 4;
        } else {
            const cp = s.codePointAt(i);
            const ch = String.fromCodePoint(cp);
            out.push(...Buffer.from(ch, "utf8"));
            i += ch.length;
        }
    }
    return Buffer.from(out);
}
