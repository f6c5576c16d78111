// Graceful restart (issue 7): `megaphone` stops on SIGTERM without leaving a client hanging, a
// new server binds the same port at once, and web/megaphone.js clients carry on with it.
//
// On SIGTERM the server closes its listening socket first (and says so), answers every held
// request {"type":"terminate","condition":"system-shutdown"} with `Connection: close`, waits
// until those answers are written (at most --drain), and exits 0. Sessions live in memory, so
// the clients open fresh sessions on the new server (megaphone.js `reconnect`) and subscribe
// again; messages published after the restart reach every one of them.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { connect } from '../../web/megaphone.js';
import { nextEvent, stampOf, unstamped, waitFor } from './helpers.mjs';
import { startServer } from './server.mjs';

const CLIENTS = 20;
const DRAIN_S = 3;

/** POST /publish/{channel}: its answer, {epoch, offset, sessions} (the stamp checked here). */
async function publish(server, channel, data) {
    const res = await fetch(`${server.internalUrl}/publish/${channel}`, { method: 'POST', body: JSON.stringify(data) });
    assert.equal(res.status, 200);
    const answer = await res.json();
    const at = stampOf(answer);
    assert.ok(at && at.offset >= 1, `a position in the answer: ${JSON.stringify(answer)}`);
    return answer;
}

test(`SIGTERM: held requests answered, the port taken over at once, ${CLIENTS} clients carry on`, async (t) => {
    const args = ['--wait', '20', '--drain', String(DRAIN_S)];
    const first = await startServer('megaphone', args);
    let second = null;
    const clients = [];
    try {
        for (let i = 0; i < CLIENTS; i++) {
            const c = connect(`${first.url}/comet`, { wait: 20, backoff: { initial: 50, max: 400 }, closeOnUnload: false });
            const rec = { c, opens: [], closes: [], news: [] };
            c.on('open', (s) => rec.opens.push(s.sid));
            c.on('close', (info) => rec.closes.push(info));
            c.on('message', (m) => { if (m.channel === 'news') rec.news.push(m.data); });
            c.subscribe('news');
            clients.push(rec);
        }
        // Everyone subscribed and holding a request.
        let before = null;
        await waitFor(async () => (await publish(first, 'probe', 0)).sessions === 0 &&
            (before = await publish(first, 'news', 'before')).sessions === CLIENTS,
            { timeout: 10000, interval: 50, message: 'every client subscribed' });
        await waitFor(() => clients.every((r) => r.news.includes('before')), { timeout: 5000, message: 'before' });

        // A held request of our own, to see its answer.
        const created = await (await fetch(`${first.url}/comet`, { method: 'POST', body: '{"rid":1000,"wait":20}' })).json();
        const held = fetch(`${first.url}/comet`, { method: 'POST', body: JSON.stringify({ sid: created.sid, rid: 1001 }) });
        await new Promise((r) => setTimeout(r, 100)); // let it be held (its answer is checked below)

        const stopAt = Date.now();
        first.process.kill('SIGTERM');
        await waitFor(() => /megaphone: stopping; no longer accepting/.test(first.output().stdout),
            { timeout: 5000, message: 'the first server to stop accepting' });
        // The port is free: a new server takes it while the first may still be draining.
        second = await startServer('megaphone', [...args, '--port', String(first.port)]);
        assert.equal(second.port, first.port);

        const heldAnswer = await held;
        assert.equal(heldAnswer.status, 200);
        assert.equal(heldAnswer.headers.get('connection'), 'close');
        assert.deepEqual(await heldAnswer.json(), { rid: 1001, type: 'terminate', condition: 'system-shutdown' });

        const exit = await first.exited;
        const stopMs = Date.now() - stopAt;
        assert.deepEqual(exit, { code: 0, signal: null });
        assert.ok(stopMs < (DRAIN_S + 2) * 1000, `the first server took ${stopMs} ms to exit`);
        assert.match(first.output().stdout, /megaphone: stopped/);

        // Every client hears its session ended, opens a fresh one on the new server and
        // subscribes again; then a message published there reaches each exactly once.
        await waitFor(async () => (await publish(second, 'probe', 0)).sessions === 0 &&
            (await publish(second, 'news', 'ping')).sessions === CLIENTS,
            { timeout: 15000, interval: 50, message: 'every client back and subscribed' });
        const recovered = Date.now() - stopAt;
        const got = clients.map((r) => nextEvent(r.c, 'message', { pred: (m) => m.data === 'after', timeout: 10000 }));
        const after = await publish(second, 'news', 'after');
        assert.deepEqual(unstamped(after), { sessions: CLIENTS });
        // Each got it at the position the publish answered. The new server's channel is a new
        // stream (sessions and history lived in the first one's memory): a new epoch.
        for (const m of await Promise.all(got)) assert.deepEqual(stampOf(m), stampOf(after));
        assert.notEqual(after.epoch, before.epoch);
        for (const [i, r] of clients.entries()) {
            assert.equal(r.opens.length, 2, `client ${i}: a second session`);
            assert.notEqual(r.opens[0], r.opens[1]);
            assert.equal(r.closes.length, 1, `client ${i}: closed once: ${JSON.stringify(r.closes)}`);
            assert.ok(['system-shutdown', 'item-not-found'].includes(r.closes[0].condition), r.closes[0].condition);
            assert.equal(r.closes[0].reconnecting, true);
            assert.equal(r.news.filter((d) => d === 'after').length, 1, `client ${i}: 'after' once`);
            assert.equal(r.news[0], 'before');
        }
        const shutdowns = clients.filter((r) => r.closes[0].condition === 'system-shutdown').length;
        const figures = { clients: CLIENTS, drain: DRAIN_S, firstExitMs: stopMs, allRecoveredMs: recovered, systemShutdownCloses: shutdowns };
        t.diagnostic(`restart figures: ${JSON.stringify(figures)}`);
        console.log(`restart figures: ${JSON.stringify(figures)}`);
    } finally {
        for (const r of clients) r.c._destroy();
        await first.stop();
        if (second) assert.deepEqual(await second.stop(), { code: 0, signal: null });
    }
});
