// web/megaphone.js with client tokens (JWT, HS256) against the real `megaphone` binary started
// with --token-secret-file and --require-token: `token`, `getToken` (refresh before exp, and after
// not-authorized), and the 'forbidden' event. Tokens are minted here with node:crypto.
// Run: MEGAPHONE_BIN=build/bin/megaphone node --test tests/js/tokens.test.mjs  (or ctest -R js.client_tokens)
import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from '../../web/megaphone.js';
import { startServer } from './server.mjs';
import { clientPool, waitFor, nextEvent, record } from './helpers.mjs';

const SECRET = randomBytes(32).toString('hex'); // 64 bytes of text
let server;
let endpoint;
let dir;
const pool = clientPool(connect, () => endpoint);
const clients = pool.clients;

const b64url = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');

/** An HS256 JWT with these claims; by default alice's, for an hour, on 'room' and 'ticks'. */
function mint(claims = {}) {
    const now = Math.floor(Date.now() / 1000);
    const head = b64url({ alg: 'HS256', typ: 'JWT' });
    const body = b64url({ sub: 'alice', exp: now + 3600, channels: ['room', 'ticks'], publish: ['ticks'], ...claims });
    const sig = createHmac('sha256', SECRET).update(`${head}.${body}`).digest('base64url');
    return `${head}.${body}.${sig}`;
}

before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'megaphone-tokens-'));
    const file = join(dir, 'secret');
    writeFileSync(file, SECRET, { mode: 0o600 });
    server = await startServer('megaphone', [
        '--wait', '1', '--hold', '1', '--inactivity', '2', '--threads', '2', '--placement', 'spread',
        '--token-secret-file', file, '--require-token',
    ]);
    endpoint = `${server.url}/comet`;
});

after(async () => {
    for (const c of clients) c._destroy();
    if (server) await server.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
});

afterEach(() => pool.closeAll());

const client = (options = {}) => pool.client(options);

async function publishHttp(channel, value) {
    const res = await fetch(`${server.internalUrl}/publish/${encodeURIComponent(channel)}`, {
        method: 'POST',
        body: JSON.stringify(value),
    });
    assert.equal(res.status, 200, `POST /publish/${channel} answered ${res.status}`);
    return res.json();
}

/** Subscribes and resolves once the subscription is in effect (the server gave its position). */
async function subscribed(c, channel) {
    c.subscribe(channel);
    return waitFor(() => c.position(channel), { timeout: 3000, message: `subscribed to ${channel}` });
}

test('a valid token opens a session on a --require-token server; the token is in the creation', async () => {
    const bodies = [];
    const c = client({
        token: mint(),
        fetch: (url, init) => { bodies.push(JSON.parse(init.body)); return fetch(url, init); },
    });
    const session = await nextEvent(c, 'open');
    assert.ok(session.sid);
    assert.equal(bodies[0].token, c.token);
    await subscribed(c, 'room');
    const got = nextEvent(c, 'message', { pred: (m) => m.channel === 'room' });
    await publishHttp('room', { hi: 1 });
    assert.deepEqual((await got).data, { hi: 1 });
});

test('without a token: close with not-authorized, no reconnect, no endless retry', async () => {
    let requests = 0;
    const c = client({ fetch: (url, init) => { requests++; return fetch(url, init); } });
    const rec = record(c);
    const closed = await nextEvent(c, 'close');
    assert.equal(closed.condition, 'not-authorized');
    assert.equal(closed.reconnecting, false);
    assert.equal(c.state, 'closed');
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(requests, 1, 'one creation only');
    assert.equal(rec.open.length, 0);
});

test('a bad token without getToken: not-authorized and stop', async () => {
    const c = client({ token: mint().slice(0, -2) + 'xx' });
    const closed = await nextEvent(c, 'close');
    assert.equal(closed.condition, 'not-authorized');
    assert.equal(closed.reconnecting, false);
});

test('not-authorized with getToken: a new token, a new session', async () => {
    let calls = 0;
    const c = client({ token: 'not.a.jwt', getToken: async () => { calls++; return mint(); } });
    const rec = record(c);
    const session = await nextEvent(c, 'open');
    assert.ok(session.sid);
    assert.equal(calls, 1);
    assert.equal(rec.close[0].condition, 'not-authorized');
    assert.equal(rec.close[0].reconnecting, true);
});

test('getToken alone gives the first token', async () => {
    let calls = 0;
    const c = client({ getToken: async () => { calls++; return mint(); } });
    await nextEvent(c, 'open');
    assert.equal(calls, 1);
});

test("'forbidden': a channel outside the token's channels; allowed ones work", async () => {
    const c = client({ token: mint({ channels: ['news*'], publish: ['news*'] }) });
    const rec = record(c);
    const forbidden = [];
    c.on('forbidden', (f) => forbidden.push(f));
    await nextEvent(c, 'open');
    const refused = nextEvent(c, 'forbidden', { pred: (f) => f.channel === 'new' });
    c.subscribe('new');
    assert.deepEqual(await refused, { channel: 'new' });
    await subscribed(c, 'news.eu');
    const got = nextEvent(c, 'message', { pred: (m) => m.channel === 'news.eu' });
    await publishHttp('news.eu', 'hello');
    assert.equal((await got).data, 'hello');
    // A publish outside `publish`: refused too.
    const refusedPublish = nextEvent(c, 'forbidden', { pred: (f) => f.channel === 'sports' });
    c.publish('sports', 1);
    await refusedPublish;
    assert.ok(!rec.messages.some((m) => m && m.error === 'forbidden'), 'forbidden is not a message');
    assert.ok(!c._channels.has('new'), 'the refused subscription is forgotten');
    assert.equal(rec.close.length, 0);
});

test('refresh: getToken before exp, the token goes on a request, the session outlives the first token', async () => {
    const now = Math.floor(Date.now() / 1000);
    // Expired by exp, but inside the server's 30 s leeway for about 4 s more.
    const first = mint({ exp: now - 26 });
    const fresh = mint({ exp: now + 3600 });
    let calls = 0;
    const bodies = [];
    const c = client({
        token: first,
        refreshBefore: -27000, // refresh at exp + 27 s: about a second from now
        getToken: async () => { calls++; return fresh; },
        fetch: (url, init) => { bodies.push(JSON.parse(init.body)); return fetch(url, init); },
    });
    const rec = record(c);
    const session = await nextEvent(c, 'open');
    await subscribed(c, 'ticks');
    await waitFor(() => calls === 1, { timeout: 4000, message: 'getToken called' });
    await waitFor(() => bodies.some((b) => b.sid === session.sid && b.token === fresh),
        { timeout: 3000, message: 'the new token sent on a request' });
    // Past the first token's end (exp + 30 s) by more than a second: the session goes on.
    await waitFor(() => Date.now() / 1000 > now - 26 + 31.5, { timeout: 8000, message: 'the first token expired' });
    const got = nextEvent(c, 'message', { pred: (m) => m.channel === 'ticks' && m.data === 'late' });
    await publishHttp('ticks', 'late');
    await got;
    c.send({ publish: 'ticks', data: 'mine' });
    await nextEvent(c, 'message', { pred: (m) => m.channel === 'ticks' && m.data === 'mine' });
    assert.equal(c.session.sid, session.sid, 'same session');
    assert.equal(rec.open.length, 1);
    assert.equal(rec.close.length, 0, `no close: ${JSON.stringify(rec.close)}`);
    assert.equal(calls, 1);
    assert.equal(c.token, fresh);
});
