// Small helpers shared by the JS tests: bounded waits on conditions and on client events.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';

/** Resolves when predicate() is truthy (polled every `interval` ms); rejects after `timeout` ms. */
export async function waitFor(predicate, { timeout = 5000, interval = 10, message = 'condition' } = {}) {
    const deadline = Date.now() + timeout;
    for (;;) {
        const value = await predicate();
        if (value) return value;
        if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${message}`);
        await new Promise((r) => setTimeout(r, interval));
    }
}

/** Resolves with the first `event` of `client` for which pred(arg) holds; rejects after `timeout`. */
export function nextEvent(client, event, { pred = () => true, timeout = 5000 } = {}) {
    return new Promise((resolve, reject) => {
        const fn = (arg) => {
            if (!pred(arg)) return;
            clearTimeout(timer);
            client.off(event, fn);
            resolve(arg);
        };
        const timer = setTimeout(() => {
            client.off(event, fn);
            reject(new Error(`timed out after ${timeout} ms waiting for '${event}'`));
        }, timeout);
        client.on(event, fn);
    });
}

/** Records every event of a client: rec.open, rec.messages, rec.close, rec.errors. */
/**
 * A test file's clients: client(options) connects one to `endpoint()` (fast backoff) and keeps
 * it; closeAll() closes every one kept so far (a goodbye within 3 s, else stopped hard).
 */
export function clientPool(connect, endpoint) {
    const clients = [];
    return {
        clients,
        client(options = {}) {
            const c = connect(endpoint(), { backoff: { initial: 20, max: 200 }, ...options });
            clients.push(c);
            return c;
        },
        async closeAll() {
            const open = clients.splice(0);
            await Promise.all(open.map(async (c) => {
                if (c.state !== 'closed') {
                    const closed = nextEvent(c, 'close', { pred: (i) => !i.reconnecting, timeout: 3000 }).catch(() => {});
                    c.close();
                    await closed;
                }
                c._destroy();
            }));
        },
    };
}

export function record(client) {
    const rec = { open: [], messages: [], close: [], errors: [] };
    client.on('open', (s) => rec.open.push(s));
    client.on('message', (m) => rec.messages.push(m));
    client.on('close', (c) => rec.close.push(c));
    client.on('error', (e) => rec.errors.push(e));
    return rec;
}

/**
 * A fetch wrapper that logs every request ({rid, sid, body, ack, type, messages}) and can fail
 * chosen ones: fail(entry) returns false, 'before' (reject without sending) or 'after' (send,
 * read the whole answer, then reject as if the connection broke and the answer was lost).
 */
export function loggingFetch({ fail = () => false, realFetch = globalThis.fetch } = {}) {
    const log = [];
    const failures = { before: 0, after: 0 };
    async function wrapped(url, init) {
        const body = JSON.parse(init.body);
        const entry = { ...body, raw: init.body, url: String(url), at: Date.now() };
        log.push(entry);
        const mode = fail(entry, log);
        if (mode === 'before') {
            failures.before++;
            throw new TypeError('injected network failure (before the server)');
        }
        const res = await realFetch(url, init);
        if (mode === 'after') {
            await res.text();
            failures.after++;
            throw new TypeError('injected network failure (answer lost)');
        }
        return res;
    }
    return { fetch: wrapped, log, failures };
}

/**
 * Messages published to a channel come stamped with their position in it (cluster/bus.hpp): a
 * JSON object gains "epoch" (a string, the channel's stream) and "offset" (1, 2, 3, ... in it);
 * POST /publish/{channel} answers the same two next to "sessions".
 *
 * unstamped(value): a copy of `value` (a message or a publish answer) without "epoch" and
 * "offset", when both are there and well typed (a non-empty string, an integer >= 0); anything
 * else is returned as it is, so an ill-formed stamp still shows in a comparison.
 */
export function unstamped(value) {
    if (!isStamped(value)) return value;
    const { epoch, offset, ...rest } = value;
    return rest;
}

/** Whether `value` is an object with a well-formed stamp. */
export function isStamped(value) {
    return value !== null && typeof value === 'object' && !Array.isArray(value) &&
        typeof value.epoch === 'string' && value.epoch.length > 0 &&
        Number.isInteger(value.offset) && value.offset >= 0;
}

/** The {epoch, offset} of a stamped message or publish answer, or undefined. */
export function stampOf(value) {
    return isStamped(value) ? { epoch: value.epoch, offset: value.offset } : undefined;
}

/** Debian's Chromium (MEGAPHONE_CHROMIUM names another), never a browser a tool downloads. */
export const CHROMIUM = process.env.MEGAPHONE_CHROMIUM || '/usr/bin/chromium';
export const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'];
/** playwright-core's launch() options for CHROMIUM. */
export const CHROMIUM_LAUNCH = { executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, timeout: 30000 };

/**
 * CHROMIUM launched headless by playwright-core with CHROMIUM_ARGS; launch() gives it a fresh
 * temporary profile (user-data-dir), removed on close. A clear error names what is missing.
 */
export async function launchChromium() {
    let chromium;
    try {
        ({ chromium } = await import('playwright-core'));
    } catch (err) {
        throw new Error('playwright-core is missing (node_modules/playwright-core): run scripts/setup, ' +
            `or PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci. (${err.message})`);
    }
    if (!existsSync(CHROMIUM)) throw new Error(`no browser at ${CHROMIUM}: apt-get install chromium`);
    return chromium.launch(CHROMIUM_LAUNCH);
}

/**
 * playwright-core's chromium, once it, Strophe.js at `strophe` and the browser at CHROMIUM
 * are all there (scripts/setup installs them): a clear error naming what is missing otherwise.
 */
export async function stropheBrowser(strophe) {
    let chromium;
    try {
        ({ chromium } = await import('playwright-core'));
    } catch (err) {
        throw new Error(`playwright-core is missing: run scripts/setup (${err.message})`);
    }
    if (!existsSync(strophe)) throw new Error(`no Strophe.js at ${strophe}: run scripts/setup (npm ci)`);
    if (!existsSync(CHROMIUM)) throw new Error(`no browser at ${CHROMIUM}: apt-get install chromium`);
    return chromium;
}

/** Subscribes `client` to `channel`; resolves once the subscription is in effect (its position came back). */
export async function subscribed(client, channel) {
    client.subscribe(channel);
    await waitFor(() => client.position(channel), { timeout: 10000, message: `subscribed to ${channel}` });
}

/** The data of the messages of `channel` among `rec.messages`, in order. */
export const channelValues = (rec, channel) => rec.messages.filter((m) => m && m.channel === channel).map((m) => m.data);

/** [from, from + 1, ..., to]. */
export const range = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

/**
 * Plain HTTP against a server (`serverOf()` returns it, once started): comet(body[, base]) POSTs
 * /comet and resolves to its JSON answer; session(channel) makes a session subscribed to
 * `channel` → {sid, rid} (rid: the next one to use; sessions' rids start 1000 apart from
 * `firstRid`); publish(channel, data) POSTs /publish on the internal door → its JSON answer.
 */
export function plainClient(serverOf, firstRid) {
    let nextRid = firstRid;
    const comet = async (body, base = serverOf().url) => {
        const res = await fetch(`${base}/comet`, { method: 'POST', body: JSON.stringify(body) });
        assert.equal(res.status, 200, `POST /comet answered ${res.status}`);
        return res.json();
    };
    const session = async (channel) => {
        const rid = nextRid;
        nextRid += 1000;
        const created = await comet({ rid, wait: 10, messages: [{ subscribe: channel }] });
        return { sid: created.sid, rid: rid + 1 };
    };
    const publish = async (channel, data) => {
        const res = await fetch(`${serverOf().internalUrl}/publish/${encodeURIComponent(channel)}`, {
            method: 'POST', body: JSON.stringify(data),
        });
        assert.equal(res.status, 200);
        return res.json();
    };
    return { comet, session, publish };
}
