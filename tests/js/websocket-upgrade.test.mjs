// The lossless upgrade over WebSocket (docs/PROTOCOL.md, "WebSocket" and "Upgrade"):
// web/megaphone.js opens with long-polling, probes a WebSocket (npm `ws`, as a Node app would
// pass it) on the same session, switches when its `ready` frame arrives, and from then on sends
// its requests (publishes, acks, terminate) as frames on the socket, with the same rids. When the
// socket is cut, refused, or goes silent behind a proxy that swallows its frames, it falls back to
// long-polling with `stream_ack` and sends the unanswered rids again by POST. Every message must
// arrive exactly once and in order in both directions (a client's publish comes back to it
// through its own subscription), whatever the transport did meanwhile; the application sees no
// error. Against the real `megaphone` binary (--heartbeat 1), through tests/js/stream_proxy.mjs.
// Run: MEGAPHONE_BIN=build/bin/megaphone node --test tests/js/websocket-upgrade.test.mjs
import { test } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { EventSource } from 'eventsource';
import { upgradeHarness } from './upgrade_harness.mjs';
import { waitFor, nextEvent, subscribed, channelValues, range } from './helpers.mjs';
import { startStreamProxy } from './stream_proxy.mjs';

const h = upgradeHarness({ WebSocket, EventSource });
const { client, publish } = h;
const proxies = h.proxies;
const values = channelValues;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

test('the default transports probe WebSocket first; client publishes go as frames; exactly once, in order, with publishes racing the switch', async () => {
    const { c, rec } = client();
    // The client publishes from the start (to a channel it is subscribed to: each publish comes
    // back), while the session opens, while the socket is probed and switched to, then on it.
    c.subscribe('ws.race');
    const N = 150;
    for (let i = 1; i <= N; i += 1) {
        c.publish('ws.race', i);
        await sleep(4);
    }
    await waitFor(() => c.transport === 'websocket', { timeout: 10000, message: 'the switch to websocket' });
    await waitFor(() => values(rec, 'ws.race').length >= N, { timeout: 10000, message: `${N} messages` });
    // Now on the socket: the client's publishes are frames (no POST), the backend's come in batches.
    const posts = rec.posts;
    for (let i = N + 1; i <= N + 50; i += 1) {
        if (i % 2) c.publish('ws.race', i); else await publish('ws.race', i);
        await sleep(2);
    }
    await waitFor(() => values(rec, 'ws.race').length >= N + 50, { timeout: 10000, message: `${N + 50} messages` });
    await sleep(200); // nothing more (no duplicate) may follow
    assert.equal(rec.posts, posts, 'no POST while the WebSocket carries the requests');
    // Both sources interleave in the order each published; the client's own ones keep theirs.
    const got = values(rec, 'ws.race');
    assert.deepEqual(got.slice(0, N), range(1, N));
    assert.deepEqual([...got].sort((a, b) => a - b), range(1, N + 50));
    assert.deepEqual(got.filter((v) => v > N && v % 2), range(N + 1, N + 50).filter((v) => v % 2));
    assert.deepEqual(got.filter((v) => v > N && !(v % 2)), range(N + 1, N + 50).filter((v) => !(v % 2)));
    assert.deepEqual(rec.transports.map((t) => t.transport), ['websocket']);
    assert.deepEqual(rec.debug.filter((d) => d.type === 'probe').map((d) => d.transport), ['websocket']);
    assert.equal(rec.errors.length, 0, `no error: ${rec.errors.map(String)}`);
    // The terminate goes as a frame too, and is answered.
    const closed = nextEvent(c, 'close', { timeout: 5000 });
    c.close();
    assert.equal((await closed).condition, 'closed');
    assert.equal(rec.posts, posts, 'the terminate went on the socket');
});

test('the socket cut mid-flow: back to long-polling, nothing lost or doubled either way, upgraded again', async () => {
    const proxy = await startStreamProxy(h.server.port);
    proxies.push(proxy);
    const { c, rec } = client(proxy.url, { upgradeRetry: 800 });
    await subscribed(c, 'ws.cut');
    await waitFor(() => c.transport === 'websocket', { timeout: 10000, message: 'websocket' });
    // Both directions at once: the client's publishes (odd) as frames, the backend's (even).
    for (let i = 1; i <= 40; i += 1) {
        if (i % 2) c.publish('ws.cut', i); else await publish('ws.cut', i);
        if (i === 20) proxy.cutStreams(); // mid-flow: frames both ways on the wire
        await sleep(3);
    }
    await waitFor(() => rec.transports.some((t) => t.transport === 'long-poll'), { timeout: 10000, message: 'the fallback' });
    for (let i = 41; i <= 60; i += 1) {
        if (i % 2) c.publish('ws.cut', i); else await publish('ws.cut', i);
    }
    await waitFor(() => rec.transports.length === 3 && c.transport === 'websocket', { timeout: 10000, message: 'the second upgrade' });
    assert.ok(rec.transports[2].at - rec.transports[1].at >= 700, 'the new probe waits upgradeRetry');
    for (let i = 61; i <= 80; i += 1) {
        if (i % 2) c.publish('ws.cut', i); else await publish('ws.cut', i);
    }
    await waitFor(() => values(rec, 'ws.cut').length >= 80, { timeout: 15000, message: '80 messages' });
    await sleep(300);
    const got = values(rec, 'ws.cut');
    assert.deepEqual([...got].sort((a, b) => a - b), range(1, 80), 'each exactly once');
    assert.deepEqual(got.filter((v) => v % 2), range(1, 80).filter((v) => v % 2), "the client's in order");
    assert.deepEqual(got.filter((v) => !(v % 2)), range(1, 80).filter((v) => !(v % 2)), "the backend's in order");
    assert.deepEqual(rec.transports.map((t) => t.transport), ['websocket', 'long-poll', 'websocket']);
    assert.equal(rec.closes.length, 0, 'the same session all along');
    assert.equal(rec.errors.length, 0, `no error: ${rec.errors.map(String)}`);
    assert.ok(proxy.websocketsOpened >= 2);
});

test('a proxy that passes ready then swallows the frames: the missing heartbeat brings the client back, nothing lost either way', async () => {
    const proxy = await startStreamProxy(h.server.port);
    proxies.push(proxy);
    const { c, rec } = client(proxy.url, { upgradeRetry: 60000 });
    await subscribed(c, 'ws.swallow');
    await waitFor(() => c.transport === 'websocket', { timeout: 10000, message: 'websocket' });
    proxy.mode = 'swallow'; // the server's frames stop at the proxy: batches, pings, answers
    const switched = Date.now();
    for (let i = 1; i <= 10; i += 1) {
        if (i % 2) c.publish('ws.swallow', i); else await publish('ws.swallow', i); // answers and batches swallowed
    }
    await waitFor(() => c.transport === 'long-poll', { timeout: 10000, message: 'the fallback' });
    const silent = Date.now() - switched;
    assert.ok(silent >= 2500 && silent < 8000, `fell back after ${silent} ms`);
    for (let i = 11; i <= 16; i += 1) {
        if (i % 2) c.publish('ws.swallow', i); else await publish('ws.swallow', i);
    }
    await waitFor(() => values(rec, 'ws.swallow').length >= 16, { timeout: 10000, message: '16 messages' });
    await sleep(300);
    const got = values(rec, 'ws.swallow');
    assert.deepEqual([...got].sort((a, b) => a - b), range(1, 16), 'each exactly once');
    assert.deepEqual(got.filter((v) => v % 2), range(1, 16).filter((v) => v % 2));
    assert.deepEqual(got.filter((v) => !(v % 2)), range(1, 16).filter((v) => !(v % 2)));
    assert.equal(rec.closes.length, 0, 'the same session');
    assert.equal(rec.errors.length, 0, `no error: ${rec.errors.map(String)}`);
    assert.match(rec.transports[1].reason, /no event for/);
});

test('a proxy that swallows every frame after the 101: the probe fails within probeTimeout, long-polling goes on, nothing lost', async () => {
    const proxy = await startStreamProxy(h.server.port, { mode: 'swallow-after-101' });
    proxies.push(proxy);
    const PROBE = 1500;
    const { c, rec } = client(proxy.url, { transports: ['long-poll', 'websocket'], probeTimeout: PROBE, upgradeRetry: 60000 });
    await subscribed(c, 'ws.mute');
    const started = Date.now();
    for (let i = 1; i <= 10; i += 1) {
        if (i % 2) c.publish('ws.mute', i); else await publish('ws.mute', i); // during the probe
    }
    await waitFor(() => rec.debug.some((d) => d.type === 'probe-failed'), { timeout: PROBE + 3000, message: 'the failed probe' });
    assert.ok(Date.now() - started < PROBE + 3000, 'within probeTimeout');
    for (let i = 11; i <= 16; i += 1) {
        if (i % 2) c.publish('ws.mute', i); else await publish('ws.mute', i);
    }
    await waitFor(() => values(rec, 'ws.mute').length >= 16, { timeout: 10000, message: '16 messages' });
    await sleep(300);
    const got = values(rec, 'ws.mute');
    assert.deepEqual([...got].sort((a, b) => a - b), range(1, 16), 'each exactly once');
    assert.deepEqual(got.filter((v) => v % 2), range(1, 16).filter((v) => v % 2));
    assert.deepEqual(got.filter((v) => !(v % 2)), range(1, 16).filter((v) => !(v % 2)));
    assert.equal(c.transport, 'long-poll');
    assert.deepEqual(rec.transports, [], 'never switched');
    assert.equal(rec.closes.length, 0, 'the same session');
    assert.equal(rec.errors.length, 0, `a failed probe is no error: ${rec.errors.map(String)}`);
    assert.ok(proxy.websocketsOpened >= 1);
});

test('WebSocket refused (the proxy answers the upgrade 400): SSE is probed next and taken', async () => {
    const proxy = await startStreamProxy(h.server.port);
    proxy.refuseUpgrades = true;
    proxies.push(proxy);
    const { c, rec } = client(proxy.url, { upgradeRetry: 60000 });
    await subscribed(c, 'ws.refused');
    await waitFor(() => c.transport === 'sse', { timeout: 10000, message: 'the switch to sse' });
    assert.deepEqual(rec.debug.map((d) => `${d.type} ${d.transport}`), ['probe websocket', 'probe-failed websocket', 'probe sse']);
    for (let i = 1; i <= 10; i += 1) {
        if (i % 2) c.publish('ws.refused', i); else await publish('ws.refused', i);
    }
    await waitFor(() => values(rec, 'ws.refused').length >= 10, { timeout: 10000, message: '10 messages' });
    await sleep(200);
    const got = values(rec, 'ws.refused');
    assert.deepEqual([...got].sort((a, b) => a - b), range(1, 10));
    assert.equal(rec.errors.length, 0, `no error: ${rec.errors.map(String)}`);
});

test('the session ends while on the WebSocket: a new session, its channels recovered', async () => {
    const { c, rec } = client(undefined, { upgradeRetry: 60000 });
    await subscribed(c, 'ws.ended');
    await waitFor(() => c.transport === 'websocket', { timeout: 10000, message: 'websocket' });
    await publish('ws.ended', 1);
    await waitFor(() => values(rec, 'ws.ended').length === 1, { message: 'the first message' });
    const opened = nextEvent(c, 'open', { timeout: 10000 });
    const sid = c.session.sid;
    const res = await fetch(`${h.server.url}/comet`, {
        method: 'POST', body: JSON.stringify({ sid, rid: 1, type: 'terminate' }),
    });
    await res.text(); // a rid out of the window: the session ends with item-not-found
    await publish('ws.ended', 2);
    const again = await opened;
    assert.notEqual(again.sid, sid);
    await waitFor(() => values(rec, 'ws.ended').length >= 2, { timeout: 10000, message: 'the second message' });
    await publish('ws.ended', 3);
    await waitFor(() => values(rec, 'ws.ended').length >= 3, { timeout: 10000, message: 'the third message' });
    assert.deepEqual(values(rec, 'ws.ended'), [1, 2, 3]);
    assert.equal(rec.closes.length, 1);
    assert.equal(rec.closes[0].reconnecting, true);
    await waitFor(() => c.transport === 'websocket', { timeout: 10000, message: 'the new session upgraded' });
});

test('4404 (no stream for this session) is a failed probe: the long-poll that follows finds the session alive and goes on with it', async () => {
    const proxy = await startStreamProxy(h.server.port);
    proxy.closeUpgrades = 4404;
    proxies.push(proxy);
    const { c, rec } = client(proxy.url, { transports: ['long-poll', 'websocket'], upgradeRetry: 60000 });
    await subscribed(c, 'ws.4404');
    await waitFor(() => rec.debug.some((d) => d.type === 'probe-failed'), { timeout: 10000, message: 'the failed probe' });
    assert.match(rec.debug.find((d) => d.type === 'probe-failed').reason, /4404/);
    for (let i = 1; i <= 10; i += 1) {
        if (i % 2) c.publish('ws.4404', i); else await publish('ws.4404', i);
    }
    await waitFor(() => values(rec, 'ws.4404').length >= 10, { timeout: 10000, message: '10 messages' });
    await sleep(200);
    const got = values(rec, 'ws.4404');
    assert.deepEqual([...got].sort((a, b) => a - b), range(1, 10));
    assert.equal(c.transport, 'long-poll');
    assert.equal(rec.closes.length, 0, 'the same session (it was alive)');
    assert.equal(rec.errors.length, 0, `no error: ${rec.errors.map(String)}`);
});

test('the session really ended when its probe reaches the server: 4404 from the server, a failed probe, then a new session, its channels recovered, nothing lost or doubled', async () => {
    const proxy = await startStreamProxy(h.server.port);
    proxies.push(proxy);
    proxy.refuseUpgrades = true; // the first probe fails (400): the session is made meanwhile
    const { c, rec } = client(proxy.url, { transports: ['long-poll', 'websocket'], upgradeRetry: 1500 });
    const failed = () => rec.debug.filter((d) => d.type === 'probe-failed');
    await subscribed(c, 'ws.gone');
    await publish('ws.gone', 1);
    await waitFor(() => values(rec, 'ws.gone').length === 1, { timeout: 10000, message: 'the first message' });
    await waitFor(() => failed().length === 1, { timeout: 10000, message: 'the refused probe' });
    // The next probe waits at the proxy (polling pauses meanwhile) while the session ends on the
    // server (a rid out of the window); the long-poll's answer (the terminate) is held back in the
    // proxy; then the probe goes on to the server, which has no such session.
    let endedSid;
    proxy.beforeUpgrade = async () => {
        proxy.holdAnswers = true;
        endedSid = c.session.sid;
        const res = await fetch(`${h.server.url}/comet`, {
            method: 'POST', body: JSON.stringify({ sid: endedSid, rid: 1, type: 'terminate' }),
        });
        await res.text();
        await publish('ws.gone', 2); // while the client has no session
    };
    proxy.refuseUpgrades = false;
    await waitFor(() => failed().length === 2, { timeout: 15000, message: 'the second probe failed' });
    assert.match(failed()[1].reason, /4404/);
    assert.ok(endedSid, 'the probe reached the server after the session ended');
    assert.equal(rec.closes.length, 0, 'the end is not known yet');
    proxy.releaseAnswers(); // the held long-poll's terminate now reaches the client
    await waitFor(() => c.session && c.session.sid !== endedSid && c.position('ws.gone'), { timeout: 10000, message: 'a new session' });
    await publish('ws.gone', 3);
    await waitFor(() => values(rec, 'ws.gone').length >= 3, { timeout: 10000, message: 'three messages' });
    await sleep(200);
    assert.deepEqual(values(rec, 'ws.gone'), [1, 2, 3]);
    assert.equal(rec.closes.length, 1);
    assert.equal(rec.closes[0].reconnecting, true);
    assert.equal(rec.errors.length, 0, `no error: ${rec.errors.map(String)}`);
});

test('4409: another socket takes the session over; the client stays on long-polling without an error', async () => {
    const { c, rec } = client(undefined, { upgradeRetry: 500 });
    await subscribed(c, 'ws.replaced');
    await waitFor(() => c.transport === 'websocket', { timeout: 10000, message: 'websocket' });
    const sid = c.session.sid;
    const other = new WebSocket(`${h.server.url.replace('http', 'ws')}/comet?sid=${encodeURIComponent(sid)}`, 'megaphone');
    t_close(other);
    await waitFor(() => c.transport === 'long-poll', { timeout: 5000, message: 'the fallback' });
    assert.match(rec.transports[1].reason, /4409/);
    await sleep(1500); // upgradeRetry passes: no new probe
    assert.equal(rec.debug.filter((d) => d.type === 'probe').length, 1, 'no probe after 4409');
    assert.equal(c.transport, 'long-poll');
    assert.equal(rec.errors.length, 0, `no error: ${rec.errors.map(String)}`);
    assert.equal(rec.closes.length, 0, 'the same session');
});

/** Closes a raw test socket at the end of the test file. */
function t_close(ws) {
    ws.on('error', () => {});
    h.clients.push({ _destroy: () => ws.terminate() });
}
