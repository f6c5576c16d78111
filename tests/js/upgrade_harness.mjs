// What the upgrade tests share (upgrade.test.mjs: SSE; websocket-upgrade.test.mjs: WebSocket): the
// real `megaphone` binary with a heartbeat of HEARTBEAT s, started before a file's tests and
// stopped after them; clients that record everything web/megaphone.js tells the application (and
// count the POSTs they make); stream proxies; all destroyed after each test.
import { before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from '../../web/megaphone.js';
import { startServer } from './server.mjs';

export const HEARTBEAT = 1; // s: a stream is taken for dead after 2 s + 2 s of silence

/**
 * Registers the hooks; `defaults` are every client's options (the test's own override them).
 * h.server once started; h.client(base, options) → {c, rec}; h.publish(channel, data);
 * h.proxies: push a test's proxies there to have them closed after it.
 */
export function upgradeHarness(defaults) {
    const h = { server: null, clients: [], proxies: [] };
    before(async () => {
        h.server = await startServer('megaphone', [
            '--wait', '10', '--inactivity', '20', '--threads', '2', '--placement', 'spread', '--heartbeat', String(HEARTBEAT),
            '--client-publish', '*',
        ]);
    });
    after(async () => {
        for (const c of h.clients) c._destroy();
        for (const p of h.proxies) await p.close();
        if (h.server) await h.server.stop();
    });
    afterEach(async () => {
        for (const c of h.clients.splice(0)) c._destroy();
        for (const p of h.proxies.splice(0)) await p.close();
    });
    /** A client on `base` (default the server) that records what it tells the app and every POST. */
    h.client = (base, options = {}) => {
        const rec = { messages: [], errors: [], transports: [], debug: [], closes: [], posts: 0 };
        const fetchCounting = (url, init) => {
            rec.posts += 1;
            return fetch(url, init);
        };
        const c = connect(`${base || h.server.url}/comet`, {
            fetch: fetchCounting, backoff: { initial: 20, max: 200 }, closeOnUnload: false, ...defaults, ...options,
        });
        h.clients.push(c);
        c.on('message', (m) => rec.messages.push(m));
        c.on('error', (e) => rec.errors.push(e));
        c.on('transport', (t) => rec.transports.push({ ...t, at: Date.now() }));
        c.on('debug', (d) => rec.debug.push(d));
        c.on('close', (i) => rec.closes.push(i));
        return { c, rec };
    };
    /** POST /publish/<channel> on the internal door. */
    h.publish = async (channel, data) => {
        const res = await fetch(`${h.server.internalUrl}/publish/${encodeURIComponent(channel)}`, {
            method: 'POST', body: JSON.stringify(data),
        });
        assert.equal(res.status, 200);
    };
    return h;
}
