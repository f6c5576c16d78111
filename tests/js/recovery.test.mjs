// web/megaphone.js recovers by itself (docs/PROTOCOL.md, "Recovery"), against the real
// `megaphone` binary without Redis (the in-process bus keeps the history in memory):
// - a client cut off until its session expired gets, in its new session, every message published
//   meanwhile, exactly once and in order, and a 'recovered' event with recovered: true;
// - after the server restarted (new epochs) it is told recovered: false, and live messages follow.
// Run: MEGAPHONE_BIN=build/bin/megaphone node --test tests/js/recovery.test.mjs
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from '../../web/megaphone.js';
import { startServer } from './server.mjs';
import { waitFor, nextEvent, loggingFetch } from './helpers.mjs';

const ARGS = ['--wait', '1', '--inactivity', '2', '--threads', '2', '--placement', 'spread'];
const clients = [];
const servers = [];

after(async () => {
    for (const c of clients) c._destroy();
    for (const s of servers) await s.stop().catch(() => {});
});

async function publish(server, channel, value) {
    const res = await fetch(`${server.internalUrl}/publish/${encodeURIComponent(channel)}`, {
        method: 'POST',
        body: JSON.stringify(value),
    });
    assert.equal(res.status, 200);
    return res.json();
}

/** Every 'message' and 'recovered' event of `c`, in order. */
function events(c) {
    const log = [];
    c.on('message', (m) => log.push({ message: m }));
    c.on('recovered', (r) => log.push({ recovered: r }));
    return log;
}

test('a session that expired while the client was cut off: recovered, every message once', async () => {
    const server = await startServer('megaphone', ARGS);
    servers.push(server);
    let cut = false;
    const logged = loggingFetch({ fail: () => (cut ? 'before' : false) });
    const c = connect(`${server.url}/comet`, { wait: 1, fetch: logged.fetch, backoff: { initial: 50, max: 200 } });
    clients.push(c);
    const log = events(c);
    await nextEvent(c, 'open');
    c.subscribe('news');
    // The subscription's position comes back first: from then on nothing can be missed.
    await waitFor(() => c.position('news'), { message: 'the position of news' });
    assert.equal(c.position('news').offset, 0);
    for (let i = 1; i <= 3; i++) await publish(server, 'news', i);
    await waitFor(() => log.filter((e) => e.message).length === 3, { message: 'three messages' });

    cut = true;
    // Published while the client cannot reach the server: its session expires meanwhile.
    for (let i = 4; i <= 8; i++) await publish(server, 'news', i);
    await waitFor(async () => {
        const res = await fetch(`${server.url}/metrics`);
        const text = await res.text();
        return /megaphone_sessions_closed_total\{reason="inactivity"\} [1-9]/.test(text);
    }, { timeout: 10000, interval: 100, message: 'the server to expire the session' });
    const recovered = nextEvent(c, 'recovered', { timeout: 10000 });
    cut = false;
    const r = await recovered;
    assert.equal(r.channel, 'news');
    assert.equal(r.recovered, true);
    assert.equal(r.offset, 8);
    await waitFor(() => log.filter((e) => e.message).length >= 8, { message: 'the missed messages' });
    await publish(server, 'news', 9);
    await waitFor(() => log.filter((e) => e.message).length >= 9, { message: 'a live message' });

    const data = log.filter((e) => e.message).map((e) => e.message.data);
    assert.deepEqual(data, [1, 2, 3, 4, 5, 6, 7, 8, 9], 'every message once, in order');
    // The recovery notice came before the replayed messages (the request held when the cut came
    // may still have brought message 4), and the new session asked from the last one received.
    const at = log.findIndex((e) => e.recovered);
    const before = log.slice(0, at).filter((e) => e.message).length;
    assert.ok(before >= 3 && before < 8, `received before the recovery: ${before}`);
    const creation = logged.log.filter((e) => !e.sid && e.recover).at(-1);
    assert.equal(creation.recover.news.offset, before);
    assert.equal(creation.recover.news.epoch, log[0].message.epoch);
});

test('after a server restart (new epochs) the client is told recovered: false, live messages follow', async () => {
    let server = await startServer('megaphone', ARGS);
    servers.push(server);
    const port = server.port;
    const c = connect(`${server.url}/comet`, { wait: 1, backoff: { initial: 50, max: 200 } });
    clients.push(c);
    const log = events(c);
    await nextEvent(c, 'open');
    c.subscribe('ticker');
    await waitFor(() => c.position('ticker'), { message: 'the position of ticker' });
    await publish(server, 'ticker', 'before');
    await waitFor(() => log.some((e) => e.message && e.message.data === 'before'));
    const epoch = c.position('ticker').epoch;

    const recovered = nextEvent(c, 'recovered', { timeout: 15000 });
    await server.stop();
    server = await startServer('megaphone', [...ARGS, '--port', String(port)]);
    servers.push(server);
    const r = await recovered;
    assert.equal(r.recovered, false);
    assert.notEqual(r.epoch, epoch);
    await publish(server, 'ticker', 'after');
    await waitFor(() => log.some((e) => e.message && e.message.data === 'after'), { message: 'a live message' });
    assert.equal(c.position('ticker').epoch, r.epoch);
});
