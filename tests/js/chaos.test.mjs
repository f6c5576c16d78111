// The chaos test (issue 7, "no loss under broken connections"): 200 web/megaphone.js clients talk
// to megaphone-chaos-server through a proxy (tests/js/chaos_proxy.mjs) that kills 20% of the
// connections at seeded random points: part way through a request, while the server holds a
// request, and part way through an answer. Each session sends 50 numbered messages up and
// receives 50 numbered messages down (20,000 in all); every one must arrive exactly once and in
// order, through the protocol's rid replay and ack alone: no session may end or be replaced.
//
// Half the clients use Node's fetch (keep-alive connections, several requests each), half a
// fetch that opens one connection per request (so that most kills hit a request in flight).
// Across both, a third of the sessions stay on long-polling, a third upgrade to Server-Sent
// Events (npm `eventsource`), and a third use the default transports: WebSocket first (npm `ws`;
// their requests then go as frames on it), SSE when a WebSocket probe fails. Through the same
// proxy, which also kills doomed streams and sockets while they flow, they fall back to
// long-polling and upgrade again as their streams die (upgradeRetry 300 ms): the lossless upgrade
// under chaos, both directions, across the three transports.
//
//   MEGAPHONE_CHAOS_SEED=N   the proxy's seed (default below); printed with the figures.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';

import { EventSource } from 'eventsource';
import WebSocket from 'ws';
import { connect } from '../../web/megaphone.js';
import { startChaosProxy, prng } from './chaos_proxy.mjs';
import { waitFor } from './helpers.mjs';
import { startServer } from './server.mjs';

const SEED = Number(process.env.MEGAPHONE_CHAOS_SEED || 20261124);
const SESSIONS = 200;
const UP = 50;   // messages each session sends
const DOWN = 50; // messages the server pushes to each session
const KILL_RATE = 0.2;
const SEND_EVERY_MS = 40; // mean pause between two messages of a client
const PUSH_EVERY_MS = 40; // pause between two pushes to every session
const DEADLINE_MS = 50000; // the whole exchange must be over by then

/** fetch over a fresh TCP connection per request (no keep-alive): just what megaphone.js uses. */
function oneConnectionFetch(url, init) {
    return new Promise((resolve, reject) => {
        const u = new URL(url);
        const body = Buffer.from(init.body);
        const req = http.request({
            host: u.hostname,
            port: u.port,
            path: u.pathname,
            method: init.method,
            agent: false,
            headers: { ...init.headers, 'Content-Length': body.length },
        }, (res) => {
            const chunks = [];
            const text = new Promise((ok, fail) => {
                res.on('data', (c) => chunks.push(c));
                res.on('end', () => ok(Buffer.concat(chunks).toString('utf8')));
                res.on('error', fail);
                res.on('close', () => { if (!res.complete) fail(new TypeError('answer cut short')); });
            });
            text.catch(() => { /* reported through text() */ });
            resolve({ status: res.statusCode, text: () => text });
        });
        req.on('error', (e) => reject(new TypeError(`fetch failed: ${e.message}`)));
        if (init.signal) {
            if (init.signal.aborted) req.destroy(new Error('aborted'));
            init.signal.addEventListener('abort', () => req.destroy(new Error('aborted')), { once: true });
        }
        req.end(body);
    });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

test(`chaos: ${SESSIONS} sessions, ${SESSIONS * (UP + DOWN)} messages, ${KILL_RATE * 100}% of connections killed`, async (t) => {
    const started = Date.now();
    const server = await startServer('megaphone-chaos-server', ['--wait', '5', '--threads', '2', '--placement', 'spread', '--heartbeat', '1']);
    const proxy = await startChaosProxy({ port: server.port, seed: SEED, killRate: KILL_RATE });
    const clients = [];
    let fetches = 0;
    try {
        const url = `${proxy.url}/comet`;
        for (let i = 0; i < SESSIONS; i++) {
            // A third each (and half of each kind of fetch): long-poll, SSE, WebSocket then SSE.
            const kind = ['long-poll', 'sse', 'websocket'][(i >> 1) % 3];
            const sse = kind === 'sse';
            const ws = kind === 'websocket';
            const transports = { 'long-poll': ['long-poll'], sse: ['long-poll', 'sse'], websocket: ['long-poll', 'websocket', 'sse'] }[kind];
            const c = connect(url, {
                transports,
                ...(kind !== 'long-poll' ? { EventSource, WebSocket, probeTimeout: 3000, upgradeRetry: 300 } : {}),
                wait: 5,
                backoff: { initial: 20, max: 200 },
                timeout: 5000,
                closeOnUnload: false,
                fetch: (u, init) => {
                    fetches++;
                    return i % 2 ? oneConnectionFetch(u, init) : fetch(u, init);
                },
            });
            const rec = { client: c, kind, sse, ws, opens: [], closes: [], messages: [], errors: 0, switches: [] };
            c.on('transport', (info) => rec.switches.push(info.transport));
            c.on('open', (s) => rec.opens.push(s.sid));
            c.on('close', (info) => rec.closes.push(info));
            c.on('message', (m) => rec.messages.push(m));
            c.on('error', () => { rec.errors++; });
            // The first message is sent before the session opens: it travels in the creation.
            c.send({ n: 1 });
            clients.push(rec);
        }
        await waitFor(() => clients.every((r) => r.opens.length > 0 || r.closes.length > 0),
            { timeout: 20000, interval: 20, message: 'every session to open' });
        const opened = Date.now();

        // Up: each client sends 2..UP, spaced by seeded random pauses (so some are batched and
        // some go alone). Down: the server pushes one to every session, DOWN times.
        const senders = clients.map(async (r, i) => {
            const rng = prng(SEED ^ (i + 1));
            for (let n = 2; n <= UP; n++) {
                if (r.closes.length) return;
                r.client.send({ n });
                await sleep(Math.floor(rng() * 2 * SEND_EVERY_MS));
            }
        });
        const pusher = (async () => {
            for (let round = 0; round < DOWN; round++) {
                const res = await fetch(`${server.url}/chaos/push`, { method: 'POST', body: JSON.stringify({ count: 1 }) });
                assert.equal(res.status, 200);
                await res.text();
                await sleep(PUSH_EVERY_MS);
            }
        })();
        await Promise.all([...senders, pusher]);

        // Every message arrives, or the deadline passes (then the checks below say what is missing).
        let report = null;
        const fetchReport = async () => (await (await fetch(`${server.url}/chaos/report`)).json()).sessions;
        const complete = async () => {
            if (Date.now() - started > DEADLINE_MS) return true;
            if (!clients.every((r) => r.messages.length >= DOWN || r.closes.length)) return false;
            report = await fetchReport();
            return clients.every((r) => r.closes.length || (report[r.opens.at(-1)] && report[r.opens.at(-1)].received >= UP));
        };
        await waitFor(complete, { timeout: DEADLINE_MS + 5000, interval: 100, message: 'every message' });
        report = await fetchReport();
        const finished = Date.now();

        // Figures.
        const retries = clients.reduce((a, r) => a + r.errors, 0);
        const mine = new Set(clients.map((r) => r.opens.at(-1)));
        const orphans = Object.entries(report).filter(([sid]) => !mine.has(sid));
        const figures = {
            seed: SEED,
            sessions: SESSIONS,
            messagesUp: SESSIONS * UP,
            messagesDown: SESSIONS * DOWN,
            connections: proxy.stats.connections,
            doomed: proxy.stats.doomed,
            requests: proxy.stats.requests,
            killed: proxy.stats.killed,
            kills: proxy.stats.kills,
            resets: proxy.stats.resets,
            retries,
            fetches,
            streams: proxy.stats.streams,
            websockets: proxy.stats.websockets,
            switchesToSse: clients.reduce((a, r) => a + r.switches.filter((x) => x === 'sse').length, 0),
            switchesToWebSocket: clients.reduce((a, r) => a + r.switches.filter((x) => x === 'websocket').length, 0),
            fallbacks: clients.reduce((a, r) => a + r.switches.filter((x) => x === 'long-poll').length, 0),
            orphanSessions: orphans.length,
            exchangeSeconds: (finished - opened) / 1000,
            totalSeconds: (finished - started) / 1000,
        };
        t.diagnostic(`chaos figures: ${JSON.stringify(figures)}`);
        console.log(`chaos figures: ${JSON.stringify(figures)}`);

        // Checks: the sessions lived through it all, and every message came exactly once, in order.
        const expectedDown = Array.from({ length: DOWN }, (_, k) => ({ m: k + 1 }));
        clients.forEach((r, i) => {
            assert.deepEqual(r.closes, [], `client ${i}: its session must not end`);
            assert.equal(r.opens.length, 1, `client ${i}: one session, opened once`);
            assert.deepEqual(r.messages, expectedDown, `client ${i}: the server's ${DOWN} messages, once each, ` +
                `in order; got ${r.messages.map((m) => m.m).join(',')}`);
            const seen = report[r.opens[0]];
            assert.ok(seen, `client ${i}: the server knows its session`);
            assert.deepEqual(seen.errors, [], `client ${i}: no message twice or out of order at the server`);
            assert.equal(seen.received, UP, `client ${i}: the server got its ${UP} messages`);
            assert.equal(seen.closed, null, `client ${i}: the server did not close its session`);
        });
        // A creation whose answer was lost is sent again and makes a second session; the first is
        // abandoned. It must not have received anything (that would be a duplicate).
        for (const [sid, seen] of orphans) {
            assert.equal(seen.received, 0, `abandoned session ${sid} received client messages: duplicates`);
            assert.deepEqual(seen.errors, []);
        }
        // The chaos really happened, of every kind.
        assert.ok(proxy.stats.killed >= 0.1 * proxy.stats.connections, `kills: ${JSON.stringify(proxy.stats)}`);
        for (const kind of ['midRequest', 'awaitingResponse', 'midResponse', 'midStream', 'midSocket'])
            assert.ok(proxy.stats.kills[kind] > 0, `no ${kind} kill: ${JSON.stringify(proxy.stats)}`);
        // Two thirds of the sessions streamed, lost streams and came back to them; the others never tried.
        assert.ok(clients.filter((r) => r.sse).every((r) => r.switches.includes('sse')), 'every SSE client upgraded');
        assert.ok(clients.filter((r) => r.ws).every((r) => r.switches.includes('websocket')), 'every WebSocket client upgraded to it');
        assert.ok(figures.fallbacks > 0, 'some streams died and their clients fell back');
        assert.ok(clients.filter((r) => r.kind === 'long-poll').every((r) => r.switches.length === 0), 'long-poll clients stayed');
    } finally {
        for (const r of clients) r.client._destroy();
        await proxy.close();
        const exit = await server.stop();
        assert.equal(exit.code, 0, `server exit ${JSON.stringify(exit)}`);
    }
});
