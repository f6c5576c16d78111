// The lossless upgrade (docs/PROTOCOL.md, "Upgrade"): web/megaphone.js opens with long-polling,
// probes Server-Sent Events (npm `eventsource`, the WHATWG EventSource for Node) on the same
// session, switches when the stream's `ready` arrives, and falls back to long-polling with
// `stream_ack` when the stream dies, is cut, or goes silent behind a proxy that buffers. Every
// message must arrive exactly once and in order, whatever the transport did meanwhile; the
// application sees no error. Against the real `megaphone` binary (--heartbeat 1: a ping a second),
// through tests/js/stream_proxy.mjs (cuts, swallows) and a real nginx that buffers.
// Run: MEGAPHONE_BIN=build/bin/megaphone node --test tests/js/upgrade.test.mjs (or ctest -R js.upgrade)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EventSource } from 'eventsource';
import { upgradeHarness } from './upgrade_harness.mjs';
import { waitFor, nextEvent, subscribed, channelValues, range } from './helpers.mjs';
import { startStreamProxy } from './stream_proxy.mjs';
import { NGINX, Processes, startNginx, freeRange } from './cluster_helpers.mjs';

const h = upgradeHarness({ EventSource, transports: ['long-poll', 'sse'] });
const { client, publish } = h;
const proxies = h.proxies;
const values = channelValues;

test('the client upgrades to SSE; messages exactly once, in order, with publishes racing the switch', async () => {
    const { c, rec } = client();
    // The client publishes from the start: its first messages go while the session opens, the
    // next ones while the stream is probed and switched to, the last ones on the stream.
    c.subscribe('up.race');
    const N = 150;
    for (let i = 1; i <= N; i += 1) {
        c.publish('up.race', i);
        await new Promise((r) => setTimeout(r, 4));
    }
    await waitFor(() => c.transport === 'sse', { timeout: 10000, message: 'the switch to sse' });
    // The backend publishes too, now on the stream, once the client's last publish is back (the
    // client may still be sending it: two publishers racing have no order between them).
    await waitFor(() => values(rec, 'up.race').length >= N, { timeout: 10000, message: `${N} messages` });
    for (let i = N + 1; i <= N + 50; i += 1) await publish('up.race', i);
    await waitFor(() => values(rec, 'up.race').length >= N + 50, { timeout: 10000, message: `${N + 50} messages` });
    await new Promise((r) => setTimeout(r, 200)); // nothing more (no duplicate) may follow
    assert.deepEqual(values(rec, 'up.race'), range(1, N + 50));
    assert.deepEqual(rec.transports.map((t) => t.transport), ['sse']);
    assert.equal(rec.errors.length, 0, `no error: ${rec.errors.map(String)}`);
});

test('a flowing stream is acknowledged within about a second (streaming + stream_ack): the server lets go of what was received', async () => {
    const bodies = [];
    const recording = (url, init) => {
        if (init && typeof init.body === 'string') bodies.push(JSON.parse(init.body));
        return fetch(url, init);
    };
    const { c, rec } = client(undefined, { fetch: recording });
    await subscribed(c, 'up.ack');
    await waitFor(() => c.transport === 'sse', { timeout: 10000, message: 'sse' });
    for (let i = 1; i <= 30; i += 1) await publish('up.ack', i);
    await waitFor(() => values(rec, 'up.ack').length >= 30, { timeout: 10000, message: '30 messages' });
    const last = c._s.lastEventId;
    assert.ok(last >= 30, `stream ids reached ${last}`);
    // Within STREAM_ACK_DELAY (1 s) of the last message: a request that keeps the stream and
    // acknowledges everything received, with no other field the application would see.
    await waitFor(() => bodies.some((b) => b.streaming === true && b.stream_ack === last),
        { timeout: 3000, message: `an acknowledgement of id ${last}` });
    const ack = bodies.find((b) => b.streaming === true && b.stream_ack === last);
    assert.equal(ack.messages, undefined);
    // The stream goes on: nothing lost, nothing doubled, no fallback.
    for (let i = 31; i <= 40; i += 1) await publish('up.ack', i);
    await waitFor(() => values(rec, 'up.ack').length >= 40, { timeout: 10000, message: '40 messages' });
    assert.deepEqual(values(rec, 'up.ack'), range(1, 40));
    assert.deepEqual(rec.transports.map((t) => t.transport), ['sse']);
    assert.equal(rec.errors.length, 0, `no error: ${rec.errors.map(String)}`);
});

test('a stream cut: back to long-polling, nothing lost or doubled, upgraded again after upgradeRetry', async () => {
    const proxy = await startStreamProxy(h.server.port);
    proxies.push(proxy);
    const { c, rec } = client(proxy.url, { upgradeRetry: 800 });
    await subscribed(c, 'up.cut');
    await waitFor(() => c.transport === 'sse', { timeout: 10000, message: 'sse' });
    for (let i = 1; i <= 20; i += 1) {
        await publish('up.cut', i);
        if (i === 10) proxy.cutStreams(); // mid-flow: some may be on the wire
    }
    await waitFor(() => rec.transports.some((t) => t.transport === 'long-poll'), { timeout: 10000, message: 'the fallback' });
    for (let i = 21; i <= 30; i += 1) await publish('up.cut', i);
    // upgradeRetry later: a new probe, on the same session, from the last id received.
    await waitFor(() => rec.transports.length === 3 && c.transport === 'sse', { timeout: 10000, message: 'the second upgrade' });
    const fellBack = rec.transports[1].at;
    assert.ok(rec.transports[2].at - fellBack >= 700, 'the new probe waits upgradeRetry');
    for (let i = 31; i <= 40; i += 1) await publish('up.cut', i);
    await waitFor(() => values(rec, 'up.cut').length >= 40, { timeout: 10000, message: '40 messages' });
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(values(rec, 'up.cut'), range(1, 40));
    assert.deepEqual(rec.transports.map((t) => t.transport), ['sse', 'long-poll', 'sse']);
    assert.equal(rec.closes.length, 0, 'the same session all along');
    assert.equal(rec.errors.length, 0, `no error: ${rec.errors.map(String)}`);
    assert.ok(proxy.streamsOpened >= 2);
});

test('a proxy that passes ready then swallows the stream: the missing heartbeat brings the client back, nothing lost', async () => {
    const proxy = await startStreamProxy(h.server.port);
    proxies.push(proxy);
    const { c, rec } = client(proxy.url, { upgradeRetry: 60000 });
    await subscribed(c, 'up.swallow');
    await waitFor(() => c.transport === 'sse', { timeout: 10000, message: 'sse' });
    // From now on the stream's bytes stop at the proxy: messages and pings alike.
    proxy.mode = 'swallow';
    const switched = Date.now();
    for (let i = 1; i <= 5; i += 1) await publish('up.swallow', i); // written on the stream, swallowed
    await waitFor(() => c.transport === 'long-poll', { timeout: 10000, message: 'the fallback' });
    const silent = Date.now() - switched;
    // 2 heartbeats + 2 s after the last event (a ping at most a heartbeat before the swallowing).
    assert.ok(silent >= 2500 && silent < 8000, `fell back after ${silent} ms`);
    for (let i = 6; i <= 8; i += 1) await publish('up.swallow', i);
    await waitFor(() => values(rec, 'up.swallow').length >= 8, { timeout: 10000, message: '8 messages' });
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(values(rec, 'up.swallow'), range(1, 8));
    assert.equal(rec.closes.length, 0, 'the same session');
    assert.equal(rec.errors.length, 0, `no error: ${rec.errors.map(String)}`);
    assert.match(rec.transports[1].reason, /no event for/);
});

test('nginx with proxy_buffering on (X-Accel-Buffering ignored): the probe fails within probeTimeout, long-polling goes on, nothing lost', async (t) => {
    if (!existsSync(NGINX)) throw new Error(`nginx not found at ${NGINX}: apt-get install nginx-light`);
    const procs = new Processes('upgrade nginx');
    const dir = mkdtempSync(join(tmpdir(), 'megaphone-upgrade-'));
    t.after(async () => {
        await procs.stopAll();
        rmSync(dir, { recursive: true, force: true });
    });
    const port = await freeRange(1);
    const conf = `daemon off;
master_process on;
worker_processes 1;
pid nginx.pid;
error_log error.log warn;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path tmp/body;
    proxy_temp_path tmp/proxy;
    fastcgi_temp_path tmp/fastcgi;
    uwsgi_temp_path tmp/uwsgi;
    scgi_temp_path tmp/scgi;
    server {
        listen 127.0.0.1:${port};
        location / {
            proxy_pass http://127.0.0.1:${h.server.port};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            # What the issue asks for: a proxy that buffers whatever the server says.
            proxy_buffering on;
            proxy_ignore_headers X-Accel-Buffering;
            proxy_read_timeout 120s;
        }
    }
}
`;
    await startNginx(procs, { conf, prefix: join(dir, 'nginx'), port });
    const base = `http://127.0.0.1:${port}`;
    const PROBE = 1500;
    const { c, rec } = client(base, { probeTimeout: PROBE, upgradeRetry: 60000 });
    await subscribed(c, 'up.nginx');
    const started = Date.now();
    for (let i = 1; i <= 5; i += 1) await publish('up.nginx', i); // during the probe
    await waitFor(() => rec.debug.some((d) => d.type === 'probe-failed'), { timeout: PROBE + 3000, message: 'the failed probe' });
    assert.ok(Date.now() - started < PROBE + 3000, 'within probeTimeout');
    for (let i = 6; i <= 10; i += 1) await publish('up.nginx', i);
    await waitFor(() => values(rec, 'up.nginx').length >= 10, { timeout: 10000, message: '10 messages' });
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(values(rec, 'up.nginx'), range(1, 10));
    assert.equal(c.transport, 'long-poll');
    assert.deepEqual(rec.transports, [], 'never switched');
    assert.equal(rec.closes.length, 0, 'the same session');
    assert.equal(rec.errors.length, 0, `a failed probe is no error: ${rec.errors.map(String)}`);
});

test('the session ends while streaming (a terminate event): a new session, its channels recovered', async () => {
    const { c, rec } = client(undefined, { upgradeRetry: 60000 });
    await subscribed(c, 'up.ended');
    await waitFor(() => c.transport === 'sse', { timeout: 10000, message: 'sse' });
    await publish('up.ended', 1);
    await waitFor(() => values(rec, 'up.ended').length === 1, { message: 'the first message' });
    const opened = nextEvent(c, 'open', { timeout: 10000 });
    // The server ends the session (as an overflow or a protocol error would): a terminate event
    // on the stream; the client opens a new session and recovers what was published meanwhile.
    const sid = c.session.sid;
    const res = await fetch(`${h.server.url}/comet`, {
        method: 'POST', body: JSON.stringify({ sid, rid: 1, type: 'terminate' }),
    });
    await res.text(); // a rid out of the window: the session ends with item-not-found
    await publish('up.ended', 2);
    const again = await opened;
    assert.notEqual(again.sid, sid);
    await waitFor(() => values(rec, 'up.ended').length >= 2, { timeout: 10000, message: 'the second message' });
    await publish('up.ended', 3);
    await waitFor(() => values(rec, 'up.ended').length >= 3, { timeout: 10000, message: 'the third message' });
    assert.deepEqual(values(rec, 'up.ended'), [1, 2, 3]);
    assert.equal(rec.closes.length, 1);
    assert.equal(rec.closes[0].reconnecting, true);
});
