// Server-Sent Events (GET /comet/events, docs/PROTOCOL.md) against the real `megaphone` binary,
// read by an unmodified client: npm `eventsource` (the WHATWG EventSource for Node). Sessions are
// made and fed over plain HTTP (POST /comet, POST /publish on the internal door); the stream is
// what the EventSource sees: ids, data, reconnection with Last-Event-ID, 204 at the end.
// Run: MEGAPHONE_BIN=build/bin/megaphone node --test tests/js/sse.test.mjs  (or ctest -R js.sse)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { EventSource } from 'eventsource';
import { startServer } from './server.mjs';
import { waitFor, plainClient } from './helpers.mjs';

const HEARTBEAT = 1;
let server;
const sources = [];

before(async () => {
    server = await startServer('megaphone', [
        '--wait', '10', '--inactivity', '20', '--threads', '2', '--placement', 'spread', '--heartbeat', String(HEARTBEAT),
        '--client-publish', '*',
    ]);
});

after(async () => {
    for (const es of sources) es.close();
    if (server) await server.stop();
});

const { comet, session, publish } = plainClient(() => server, 5000);

/** An EventSource on `url` whose events are recorded: {es, events: [{id, data}], errors, opens}. */
function listen(url) {
    const es = new EventSource(url);
    sources.push(es);
    const rec = { es, events: [], errors: 0, opens: 0 };
    es.addEventListener('open', () => { rec.opens += 1; });
    es.addEventListener('error', () => { rec.errors += 1; });
    es.addEventListener('message', (e) => rec.events.push({ id: e.lastEventId, data: JSON.parse(e.data) }));
    return rec;
}

const dataOf = (rec) => rec.events.map((e) => e.data.data);
const idsOf = (rec) => rec.events.map((e) => e.id);

test('a stream answers text/event-stream at once: no-cache, X-Accel-Buffering: no, a comment, retry, ready; then ping events', async () => {
    const { sid } = await session('sse.head');
    const controller = new AbortController();
    const res = await fetch(`${server.url}/comet/events?sid=${sid}`, { signal: controller.signal });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'text/event-stream');
    assert.equal(res.headers.get('cache-control'), 'no-cache');
    assert.equal(res.headers.get('x-accel-buffering'), 'no');
    assert.equal(res.headers.get('content-encoding'), null, 'never compressed');
    const reader = res.body.getReader();
    let text = '';
    // The first bytes come without any message (flushed at once): a comment, retry, and the
    // `ready` event with the heartbeat's period; then, idle, a `ping` event (no id).
    const head = new RegExp(`^: megaphone\nretry: \\d+\n\nevent: ready\ndata: \\{"heartbeat":${HEARTBEAT * 1000}\\}\n\n`);
    while (!head.test(text)) text += new TextDecoder().decode((await reader.read()).value);
    const started = Date.now();
    while (!text.includes('\n\nevent: ping\ndata: {}\n\n')) text += new TextDecoder().decode((await reader.read()).value);
    assert.ok(Date.now() - started < HEARTBEAT * 1000 + 1500, 'a heartbeat within --heartbeat');
    controller.abort();
});

test('an EventSource sees the ready event, then a ping event each idle heartbeat (no id)', async () => {
    const { sid } = await session('sse.ping');
    const es = new EventSource(`${server.url}/comet/events?sid=${sid}`);
    sources.push(es);
    const seen = { ready: [], pings: [], ids: [] };
    es.addEventListener('ready', (e) => seen.ready.push(JSON.parse(e.data)));
    es.addEventListener('ping', (e) => seen.pings.push(e.data));
    es.addEventListener('message', (e) => seen.ids.push(e.lastEventId));
    await waitFor(() => seen.ready.length === 1, { message: 'ready' });
    assert.deepEqual(seen.ready, [{ heartbeat: HEARTBEAT * 1000 }]);
    await publish('sse.ping', 'x');
    await waitFor(() => seen.pings.length >= 2, { timeout: 5000, message: 'two pings' });
    assert.deepEqual(seen.pings.slice(0, 2), ['{}', '{}']);
    // Pings are no messages: the next message is the stream's second.
    await publish('sse.ping', 'y');
    await waitFor(() => seen.ids.length === 2, { message: 'the second message' });
    assert.deepEqual(seen.ids, ['1', '2']);
    es.close();
});

test('each message is one event: id = its position in the session\'s stream, data = one JSON line', async () => {
    const { sid } = await session('sse.basic');
    const rec = listen(`${server.url}/comet/events?sid=${sid}`);
    await waitFor(() => rec.opens === 1, { message: 'open' });
    for (let i = 1; i <= 5; i += 1) await publish('sse.basic', { n: i, text: 'line\nbreak' });
    await waitFor(() => rec.events.length === 5, { message: '5 events' });
    assert.deepEqual(idsOf(rec), ['1', '2', '3', '4', '5']);
    assert.deepEqual(dataOf(rec).map((d) => d.n), [1, 2, 3, 4, 5]);
    assert.equal(rec.events[0].data.channel, 'sse.basic');
    assert.equal(rec.events[0].data.data.text, 'line\nbreak');
    assert.equal(rec.errors, 0);
    rec.es.close();
});

test('client messages stay on POST: answered at once while a stream is attached', async () => {
    const { sid, rid } = await session('sse.post');
    const rec = listen(`${server.url}/comet/events?sid=${sid}`);
    await waitFor(() => rec.opens === 1, { message: 'open' });
    const started = Date.now();
    const answer = await comet({ sid, rid, messages: [{ publish: 'sse.post', data: 'from POST' }] });
    assert.ok(Date.now() - started < 2000, 'not held (wait is 10 s)');
    assert.deepEqual(answer.messages, [], 'the data goes on the stream');
    await waitFor(() => rec.events.length === 1, { message: 'the published message on the stream' });
    assert.equal(rec.events[0].data.data, 'from POST');
    rec.es.close();
});

test('a held long-poll is answered empty when a stream opens on its session (the newest sink wins)', async () => {
    const { sid, rid } = await session('sse.newest');
    const held = comet({ sid, rid });
    // Held for up to 10 s; the stream releases it at once.
    await new Promise((r) => setTimeout(r, 200));
    const started = Date.now();
    const rec = listen(`${server.url}/comet/events?sid=${sid}`);
    const answer = await held;
    assert.deepEqual(answer.messages, []);
    assert.ok(Date.now() - started < 3000);
    await waitFor(() => rec.opens === 1, { message: 'open' });
    await publish('sse.newest', 'x');
    await waitFor(() => rec.events.length === 1, { message: 'event' });
    rec.es.close();
});

test('lastEventId on a first connect replays exactly what followed; messages meanwhile wait queued', async () => {
    const { sid } = await session('sse.replay');
    const first = listen(`${server.url}/comet/events?sid=${sid}`);
    await waitFor(() => first.opens === 1, { message: 'open' });
    for (let i = 1; i <= 3; i += 1) await publish('sse.replay', i);
    await waitFor(() => first.events.length === 3, { message: '3 events' });
    first.es.close();
    // No stream now: these wait in the session's queue.
    await publish('sse.replay', 4);
    await publish('sse.replay', 5);
    const second = listen(`${server.url}/comet/events?sid=${sid}&lastEventId=1`);
    await waitFor(() => second.events.length === 4, { message: 'replay and queue' });
    assert.deepEqual(idsOf(second), ['2', '3', '4', '5']);
    assert.deepEqual(dataOf(second), [2, 3, 4, 5]);
    await publish('sse.replay', 6);
    await waitFor(() => second.events.length === 5, { message: 'live again' });
    assert.deepEqual(idsOf(second).at(-1), '6');
    second.es.close();
});

test('a dropped stream reconnects by itself with Last-Event-ID: every message once, in order', async () => {
    const { sid } = await session('sse.drop');
    // A TCP proxy whose connections the test cuts, as a network would.
    const sockets = new Set();
    const proxy = net.createServer((client) => {
        const upstream = net.connect(server.port, '127.0.0.1');
        client.pipe(upstream).pipe(client);
        const both = { client, upstream };
        sockets.add(both);
        const drop = () => { client.destroy(); upstream.destroy(); sockets.delete(both); };
        client.on('error', drop).on('close', drop);
        upstream.on('error', drop).on('close', drop);
    });
    await new Promise((r) => proxy.listen(0, '127.0.0.1', r));
    const rec = listen(`http://127.0.0.1:${proxy.address().port}/comet/events?sid=${sid}`);
    await waitFor(() => rec.opens === 1, { message: 'open' });
    for (let i = 1; i <= 3; i += 1) await publish('sse.drop', i);
    await waitFor(() => rec.events.length === 3, { message: '3 events' });
    for (const s of sockets) { s.client.destroy(); s.upstream.destroy(); }
    // While it is away (it retries after `retry:`), the session queues.
    for (let i = 4; i <= 6; i += 1) await publish('sse.drop', i);
    await waitFor(() => rec.events.length >= 6, { timeout: 10000, message: 'the reconnect' });
    await publish('sse.drop', 7);
    await waitFor(() => rec.events.length >= 7, { message: 'live after the reconnect' });
    assert.equal(rec.opens, 2, 'one reconnect');
    assert.deepEqual(dataOf(rec), [1, 2, 3, 4, 5, 6, 7]);
    assert.deepEqual(idsOf(rec), ['1', '2', '3', '4', '5', '6', '7']);
    rec.es.close();
    proxy.close();
});

test('an unknown session gets 204: the EventSource stops, without retrying', async () => {
    const res = await fetch(`${server.url}/comet/events?sid=n0-0nosuchsessionnosuchsess`);
    assert.equal(res.status, 204);
    const rec = listen(`${server.url}/comet/events?sid=n0-0nosuchsessionnosuchsess`);
    await waitFor(() => rec.es.readyState === EventSource.CLOSED, { message: 'closed' });
    assert.equal(rec.opens, 0);
});

test('a session that ends tells the stream, which then gets 204 and stops', async () => {
    const { sid, rid } = await session('sse.end');
    const rec = listen(`${server.url}/comet/events?sid=${sid}`);
    await waitFor(() => rec.opens === 1, { message: 'open' });
    await publish('sse.end', 'last');
    await waitFor(() => rec.events.length === 1, { message: 'event' });
    const answer = await comet({ sid, rid, type: 'terminate' });
    assert.equal(answer.type, 'terminate');
    await waitFor(() => rec.events.length === 2, { message: 'the terminate event' });
    assert.deepEqual(rec.events[1].data, { type: 'terminate' });
    await waitFor(() => rec.es.readyState === EventSource.CLOSED, { timeout: 10000, message: 'closed after 204' });
});

test('a position the session no longer has ends the session: 204, and a new session is needed', async () => {
    const { sid } = await session('sse.gap');
    const res = await fetch(`${server.url}/comet/events?sid=${sid}`, { headers: { 'Last-Event-ID': '7' } });
    assert.equal(res.status, 204, 'ahead of the stream');
    const again = await fetch(`${server.url}/comet/events?sid=${sid}`);
    assert.equal(again.status, 204, 'the session ended');
});
