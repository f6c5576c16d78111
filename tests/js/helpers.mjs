// Small helpers shared by the JS tests: bounded waits on conditions and on client events.

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
