// WebSocket (GET /comet with Upgrade, docs/PROTOCOL.md "WebSocket") against the real `megaphone`
// binary, spoken by an unmodified client: npm `ws`. Sessions are made over plain HTTP (POST
// /comet) and fed by POST /publish on the internal door; then everything goes over the socket:
// the ready frame, batches with ids, frame requests answered by rid, a resume with lastEventId,
// the close codes.
// Run: MEGAPHONE_BIN=build/bin/megaphone node --test tests/js/websocket.test.mjs  (or ctest -R js.websocket)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { startServer } from './server.mjs';
import { waitFor, plainClient } from './helpers.mjs';

let server;
const sockets = [];

before(async () => {
    server = await startServer('megaphone', [
        '--wait', '10', '--inactivity', '20', '--threads', '2', '--placement', 'spread', '--heartbeat', '1',
        '--client-publish', '*',
    ]);
});

after(async () => {
    for (const ws of sockets) ws.terminate();
    if (server) await server.stop();
});

const { comet, session, publish } = plainClient(() => server, 7000);

/** A `ws` client on the session's stream; every frame recorded: {ws, frames, close, opened}. */
function open(query, { protocol = 'megaphone', headers } = {}) {
    const url = `${server.url.replace('http', 'ws')}/comet?${query}`;
    const ws = new WebSocket(url, protocol ? [protocol] : [], { headers, perMessageDeflate: false });
    sockets.push(ws);
    const rec = { ws, frames: [], close: null, opened: false, status: null };
    ws.on('open', () => { rec.opened = true; });
    ws.on('message', (data, binary) => { if (!binary) rec.frames.push(JSON.parse(data.toString())); });
    ws.on('close', (code, reason) => { rec.close = { code, reason: reason.toString() }; });
    ws.on('unexpected-response', (req, res) => { rec.status = res.statusCode; rec.close = { code: 0 }; });
    ws.on('error', () => {});
    return rec;
}

const batches = (rec) => rec.frames.filter((f) => 'id' in f);
const dataOf = (rec) => batches(rec).flatMap((b) => b.messages.map((m) => m.data));

test('the upgrade answers the megaphone subprotocol; ready comes first, then batches with ids', async () => {
    const { sid } = await session('ws.first');
    const rec = open(`sid=${sid}`);
    await waitFor(() => rec.frames.length >= 1, { message: 'ready' });
    assert.equal(rec.ws.protocol, 'megaphone');
    assert.deepEqual(rec.frames[0], { type: 'ready', heartbeat: 1000 });
    await publish('ws.first', 'a');
    await publish('ws.first', 'b');
    await waitFor(() => dataOf(rec).length === 2, { message: 'two messages' });
    assert.deepEqual(dataOf(rec), ['a', 'b']);
    assert.equal(batches(rec).at(-1).id, 2, 'ids 1 and 2: the last batch names the last id');
});

test('a frame request is answered by rid; a repeated rid gets the same answer from the cache', async () => {
    const { sid, rid } = await session('ws.rid');
    const rec = open(`sid=${sid}`);
    await waitFor(() => rec.frames.length >= 1, { message: 'ready' });
    rec.ws.send(JSON.stringify({ rid, messages: [{ publish: 'ws.rid', data: 'mine' }] }));
    await waitFor(() => rec.frames.some((f) => f.rid === rid), { message: 'the answer' });
    await waitFor(() => dataOf(rec).includes('mine'), { message: 'its own publish' });
    rec.ws.send(JSON.stringify({ rid, messages: [{ publish: 'ws.rid', data: 'mine' }] }));
    await waitFor(() => rec.frames.filter((f) => f.rid === rid).length === 2, { message: 'the replay' });
    const answers = rec.frames.filter((f) => f.rid === rid);
    assert.deepEqual(answers[0], answers[1]);
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(dataOf(rec), ['mine'], 'the repeated request was not processed again');
});

test('lastEventId resumes exactly after the position, across a new socket', async () => {
    const { sid } = await session('ws.resume');
    const first = open(`sid=${sid}`);
    await waitFor(() => first.frames.length >= 1, { message: 'ready' });
    for (const d of ['1', '2', '3']) await publish('ws.resume', d);
    await waitFor(() => dataOf(first).length === 3, { message: 'three messages' });
    first.ws.close();
    await waitFor(() => first.close, { message: 'closed' });
    await publish('ws.resume', '4');
    const second = open(`sid=${sid}&lastEventId=2`);
    await waitFor(() => dataOf(second).length === 2, { message: 'the replay' });
    assert.deepEqual(dataOf(second), ['3', '4']);
    assert.equal(batches(second).at(-1).id, 4);
});

test('an idle stream gets {"type":"ping"} every --heartbeat', async () => {
    const { sid } = await session('ws.ping');
    const rec = open(`sid=${sid}`);
    await waitFor(() => rec.frames.some((f) => f.type === 'ping'), { timeout: 4000, message: 'a ping frame' });
});

test('unknown session: the upgrade is accepted, then closed 4404 item-not-found', async () => {
    const rec = open('sid=n0-unknownunknownunknown');
    await waitFor(() => rec.close, { message: 'close' });
    assert.equal(rec.opened, true);
    assert.deepEqual(rec.close, { code: 4404, reason: 'item-not-found' });
});

test('no megaphone subprotocol: 400 before the upgrade', async () => {
    const { sid } = await session('ws.noproto');
    const rec = open(`sid=${sid}`, { protocol: null });
    await waitFor(() => rec.close, { message: 'refusal' });
    assert.equal(rec.status, 400);
});

test('a second stream replaces the first: closed 4409', async () => {
    const { sid } = await session('ws.twice');
    const first = open(`sid=${sid}`);
    await waitFor(() => first.frames.length >= 1, { message: 'ready' });
    const second = open(`sid=${sid}`);
    await waitFor(() => first.close, { message: 'first closed' });
    assert.equal(first.close.code, 4409);
    await publish('ws.twice', 'x');
    await waitFor(() => dataOf(second).length === 1, { message: 'the second gets it' });
});

test('a session ended by its client: terminate frame, then close 1000', async () => {
    const { sid, rid } = await session('ws.end');
    const rec = open(`sid=${sid}`);
    await waitFor(() => rec.frames.length >= 1, { message: 'ready' });
    rec.ws.send(JSON.stringify({ rid, type: 'terminate' }));
    await waitFor(() => rec.close, { message: 'close' });
    assert.equal(rec.close.code, 1000, JSON.stringify(rec.frames));
    assert.ok(rec.frames.some((f) => f.type === 'terminate' && !('rid' in f)), JSON.stringify(rec.frames));
});
