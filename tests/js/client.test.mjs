// web/megaphone.js against the real `megaphone` binary (the hub at /comet), with short timeouts.
// Run: MEGAPHONE_BIN=build/bin/megaphone node --test tests/js/client.test.mjs  (or through ctest -L js)
import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from '../../web/megaphone.js';
import { startServer } from './server.mjs';
import { clientPool, waitFor, nextEvent, record, loggingFetch, unstamped, stampOf } from './helpers.mjs';

const WAIT = 1;
const INACTIVITY = 2;
const POLLING = 1;

let server;
let endpoint;
const pool = clientPool(connect, () => endpoint);
const clients = pool.clients;

before(async () => {
    // These clients have no token: --client-publish '*' lets them publish through the hub (the
    // default is nowhere; the test after the /publish ones checks that).
    server = await startServer('megaphone', [
        '--static-dir', 'web', '--wait', String(WAIT), '--hold', '1',
        '--inactivity', String(INACTIVITY), '--polling', String(POLLING), '--threads', '2', '--placement', 'spread',
        '--client-publish', '*',
    ]);
    endpoint = `${server.url}/comet`;
});

after(async () => {
    for (const c of clients) c._destroy();
    if (server) await server.stop();
});

afterEach(() => pool.closeAll());

const client = (options = {}) => pool.client(options);

/**
 * Subscribes `c` to `channel` and resolves once the subscription is in effect (a probe came
 * back), with the probe message.
 */
async function subscribed(c, channel) {
    const probe = `probe-${Math.random()}`;
    const got = nextEvent(c, 'message', { pred: (m) => m.channel === channel && m.data === probe });
    c.subscribe(channel);
    c.publish(channel, probe);
    return got;
}

/**
 * POST /publish/{channel} on the internal door (the server has no --publish-key): its answer,
 * {epoch, offset, sessions} (the stamp checked here).
 */
async function publishHttp(channel, value) {
    const res = await fetch(`${server.internalUrl}/publish/${encodeURIComponent(channel)}`, {
        method: 'POST',
        body: JSON.stringify(value),
    });
    assert.equal(res.status, 200, `POST /publish/${channel} answered ${res.status}`);
    const answer = await res.json();
    const at = stampOf(answer);
    assert.ok(at && at.offset >= 1, `a position in the answer: ${JSON.stringify(answer)}`);
    return answer;
}

function dataOn(rec, channel) {
    return rec.messages.filter((m) => m.channel === channel).map((m) => m.data);
}

test('open fires with the session info, close ends the session', async () => {
    const c = client({ wait: 30, hold: 1 });
    const s = await nextEvent(c, 'open');
    assert.match(s.sid, /^n0-[A-Za-z0-9_-]{22,}$/, 'sid: node prefix + ≥128 bits of URL-safe base64');
    assert.equal(s.wait, WAIT, 'wait is capped by the server');
    assert.equal(s.hold, 1);
    assert.equal(s.requests, 2);
    assert.equal(s.inactivity, INACTIVITY);
    assert.equal(typeof s.polling, 'number');
    assert.equal(c.state, 'open');
    assert.deepEqual(c.session, s);

    const closed = nextEvent(c, 'close');
    c.close();
    const info = await closed;
    assert.equal(info.condition, 'closed');
    assert.equal(info.reconnecting, false);
    assert.equal(c.state, 'closed');
});

test('subscribe and publish: a round trip between two clients', async () => {
    const a = client();
    const b = client();
    const ra = record(a);
    const rb = record(b);
    await Promise.all([subscribed(a, 'room'), subscribed(b, 'room')]);

    a.publish('room', { from: 'a', n: 1 });
    await waitFor(() => dataOn(rb, 'room').some((d) => d && d.from === 'a'), { message: 'b to get a\'s message' });
    b.publish('room', { from: 'b', n: 2 });
    await waitFor(() => dataOn(ra, 'room').some((d) => d && d.from === 'b'), { message: 'a to get b\'s message' });

    // The publisher, subscribed too, gets its own message; each exactly once.
    await waitFor(() => dataOn(ra, 'room').some((d) => d && d.from === 'a'), { message: 'a to get its own message' });
    await waitFor(() => dataOn(rb, 'room').some((d) => d && d.from === 'b'), { message: 'b to get its own message' });
    for (const rec of [ra, rb]) {
        const real = dataOn(rec, 'room').filter((d) => typeof d === 'object');
        assert.deepEqual(real, [{ from: 'a', n: 1 }, { from: 'b', n: 2 }]);
    }

    // After unsubscribe, a gets nothing more on the channel (b, still subscribed, does).
    a.unsubscribe('room');
    const seen = nextEvent(b, 'message', { pred: (m) => m.data === 'after-unsubscribe' });
    // The unsubscribe went out before this publish (messages of a client are processed in order).
    a.publish('room', 'after-unsubscribe');
    await seen;
    await subscribed(a, 'other'); // a's requests after the unsubscribe have been answered
    assert.ok(!dataOn(ra, 'room').includes('after-unsubscribe'));
    assert.equal(ra.errors.length + rb.errors.length, 0, 'no request failed');
});

test('POST /publish/{channel} reaches subscribers and answers the number of sessions', async () => {
    const c = client();
    const rec = record(c);
    const probe = await subscribed(c, 'news');
    const answer = await publishHttp('news', { headline: 'hello', list: [1, 2, 3] });
    assert.deepEqual(unstamped(answer), { sessions: 1 });
    await waitFor(() => dataOn(rec, 'news').some((d) => d && d.headline === 'hello'), { message: 'the published message' });
    assert.deepEqual(dataOn(rec, 'news').filter((d) => typeof d === 'object'), [{ headline: 'hello', list: [1, 2, 3] }]);
    // Positions: the probe was the channel's first message, this one is the next; the message
    // arrives with the position the publish answered.
    assert.deepEqual(stampOf(probe), { epoch: answer.epoch, offset: 1 });
    assert.equal(answer.offset, 2);
    const message = rec.messages.find((m) => m.channel === 'news' && m.data && m.data.headline === 'hello');
    assert.deepEqual(message, { epoch: answer.epoch, offset: 2, channel: 'news', data: { headline: 'hello', list: [1, 2, 3] } });

    assert.deepEqual(unstamped(await publishHttp('nobody-listens', 1)), { sessions: 0 });
});

test("without --client-publish a tokenless client's publish is 'forbidden' and reaches nobody", async () => {
    const plain = await startServer('megaphone', ['--wait', String(WAIT), '--threads', '1']);
    const opened = [];
    const open = () => {
        const c = connect(`${plain.url}/comet`, { backoff: { initial: 20, max: 200 }, closeOnUnload: false });
        opened.push(c);
        return c;
    };
    try {
        const a = open();
        const b = open();
        const ra = record(a);
        const rb = record(b);
        const forbidden = [];
        a.on('forbidden', (f) => forbidden.push(f));
        const internalPublish = async (data) => {
            const res = await fetch(`${plain.internalUrl}/publish/room`, { method: 'POST', body: JSON.stringify(data) });
            assert.equal(res.status, 200, await res.text());
        };
        a.subscribe('room');
        b.subscribe('room');
        // Both subscribed: a backend's message (the internal door) reaches both.
        await waitFor(async () => {
            await internalPublish('probe');
            return dataOn(ra, 'room').includes('probe') && dataOn(rb, 'room').includes('probe');
        }, { message: 'both subscribed', interval: 100 });

        const refused = nextEvent(a, 'forbidden', { pred: (f) => f.channel === 'room' });
        a.publish('room', 'from-a');
        assert.deepEqual(await refused, { channel: 'room' });
        // A message through the internal door after it reaches both; 'from-a' reached neither.
        await internalPublish('marker');
        for (const rec of [ra, rb]) {
            await waitFor(() => dataOn(rec, 'room').includes('marker'), { message: 'the marker' });
            assert.ok(!dataOn(rec, 'room').includes('from-a'), 'the refused publish reached nobody');
        }
        assert.deepEqual(forbidden, [{ channel: 'room' }]);
        assert.ok(!ra.messages.some((m) => m && m.error === 'forbidden'), 'forbidden is an event, not a message');
        // Tokenless sessions may not subscribe to private- channels either.
        const privateRefused = nextEvent(b, 'forbidden', { pred: (f) => f.channel === 'private-x' });
        b.subscribe('private-x');
        assert.deepEqual(await privateRefused, { channel: 'private-x' });
    } finally {
        await Promise.all(opened.map((c) => (c.state === 'closed' ? undefined : c.close())));
        for (const c of opened) c._destroy();
        await plain.stop();
    }
});

test('POST /publish on the public port: 404 without --publish-key; with one, only with the Bearer key', async () => {
    // This server has no key: the public port does not serve publishing at all, 127.0.0.1 or not.
    const open = await fetch(`${server.url}/publish/news`, { method: 'POST', body: '1' });
    assert.equal(open.status, 404);
    await open.text();

    const KEY = `k-${Math.random().toString(36).slice(2)}-${Date.now()}`;
    const keyed = await startServer('megaphone', ['--publish-key', KEY, '--threads', '1']);
    try {
        const post = async (url, headers) => {
            const res = await fetch(`${url}/publish/keyed`, { method: 'POST', body: '"x"', headers });
            return { status: res.status, auth: res.headers.get('www-authenticate'), body: await res.text() };
        };
        const none = await post(keyed.url, {});
        assert.equal(none.status, 401);
        assert.match(none.auth ?? '', /^Bearer/);
        const wrong = await post(keyed.url, { Authorization: `Bearer ${KEY}x` });
        assert.equal(wrong.status, 401);
        assert.match(wrong.auth ?? '', /^Bearer/);
        const right = await post(keyed.url, { Authorization: `Bearer ${KEY}` });
        assert.equal(right.status, 200, right.body);
        assert.deepEqual(unstamped(JSON.parse(right.body)), { sessions: 0 });
        // The internal door takes it without a key.
        const internal = await post(keyed.internalUrl, {});
        assert.equal(internal.status, 200, internal.body);
        assert.equal(JSON.parse(internal.body).offset, JSON.parse(right.body).offset + 1);
    } finally {
        await keyed.stop();
    }
});

test('200 messages sent at once arrive in order, exactly once, in a few batched requests', async () => {
    const logged = loggingFetch();
    const sender = client({ fetch: logged.fetch });
    const receiver = client();
    const rec = record(receiver);
    await subscribed(receiver, 'burst');
    await waitFor(() => sender.state === 'open', { message: 'the sender to open' });

    const N = 200;
    for (let i = 0; i < N; i++) sender.publish('burst', i);
    await waitFor(() => dataOn(rec, 'burst').filter((d) => typeof d === 'number').length >= N,
        { timeout: 10000, message: `${N} messages` });
    // Give any duplicate a chance to show up: one more message through the same path.
    sender.publish('burst', 'end');
    await waitFor(() => dataOn(rec, 'burst').includes('end'), { message: 'the end marker' });

    const numbers = dataOn(rec, 'burst').filter((d) => typeof d === 'number');
    assert.deepEqual(numbers, Array.from({ length: N }, (_, i) => i));

    const withData = logged.log.filter((e) => e.messages && e.messages.some((m) => m.publish === 'burst'));
    assert.ok(withData.length <= 3, `the 200 messages went in ${withData.length} requests (expected batching)`);
    // Rids go up by exactly one per new request; each request acks what the client has processed.
    const rids = logged.log.map((e) => e.rid);
    for (let i = 1; i < rids.length; i++) assert.equal(rids[i], rids[i - 1] + 1, 'consecutive rids');
    for (const e of logged.log.slice(1)) {
        assert.ok(e.ack < e.rid && e.ack >= rids[0], `ack ${e.ack} of rid ${e.rid}`);
    }
    const outstanding = Math.max(...rids) - rids[0] + 1;
    assert.ok(outstanding >= 2);
});

test('an expired wait gets an empty answer and the client keeps polling', async () => {
    const answers = [];
    const c = client({
        fetch: async (url, init) => {
            const res = await fetch(url, init);
            const text = await res.text();
            answers.push({ rid: JSON.parse(init.body).rid, status: res.status, text, at: Date.now() });
            return new Response(text, { status: res.status, headers: res.headers });
        },
    });
    const rec = record(c);
    const open = await nextEvent(c, 'open');
    const started = Date.now();
    // Nothing happens for a while: each held request is answered empty after `wait` seconds.
    await waitFor(() => answers.filter((a) => a.at > started && JSON.parse(a.text).messages?.length === 0).length >= 2,
        { timeout: (WAIT * 3 + 3) * 1000, message: 'two empty answers' });
    const empty = answers.filter((a) => a.at > started).map((a) => JSON.parse(a.text));
    for (const a of empty) {
        assert.equal(typeof a.rid, 'number');
        assert.deepEqual(a.messages, []);
    }
    // Same session, still alive past `inactivity`, and still delivering.
    await waitFor(() => Date.now() - started > INACTIVITY * 1000 + 500, { timeout: 5000, message: 'inactivity to pass' });
    await subscribed(c, 'late');
    assert.equal(c.session.sid, open.sid);
    assert.equal(rec.close.length, 0, 'the session never closed');
    assert.equal(rec.open.length, 1);
});

test('failed requests are sent again with the same rid and body; nothing lost or duplicated', async () => {
    let n = 0;
    const logged = loggingFetch({
        // Fail about one request in three, alternating between a failure before the request
        // reaches the server and one after (the server answered, the answer is lost).
        fail: (entry) => {
            if (!entry.sid) return false;
            n++;
            if (n % 6 === 1) return 'before';
            if (n % 6 === 4) return 'after';
            return false;
        },
    });
    const c = client({ fetch: logged.fetch });
    const rec = record(c);
    await nextEvent(c, 'open');
    await subscribed(c, 'flaky');

    const N = 60;
    for (let i = 0; i < N; i++) {
        await publishHttp('flaky', i);
        if (i % 3 === 0) await new Promise((r) => setImmediate(r));
    }
    c.publish('flaky', 'end');
    await waitFor(() => dataOn(rec, 'flaky').includes('end'), { timeout: 15000, message: 'all messages' });

    const numbers = dataOn(rec, 'flaky').filter((d) => typeof d === 'number');
    assert.deepEqual(numbers, Array.from({ length: N }, (_, i) => i), 'every message once, in order');
    assert.ok(logged.failures.before > 0 && logged.failures.after > 0,
        `failures injected: ${JSON.stringify(logged.failures)}`);
    assert.ok(rec.errors.length >= logged.failures.before + logged.failures.after, 'errors reported');

    // Every rid was sent with one body only; distinct rids are consecutive.
    const bodies = new Map();
    for (const e of logged.log) {
        if (!bodies.has(e.rid)) bodies.set(e.rid, e.raw);
        else assert.equal(e.raw, bodies.get(e.rid), `rid ${e.rid} re-sent with the same body`);
    }
    const rids = [...bodies.keys()].sort((a, b) => a - b);
    for (let i = 1; i < rids.length; i++) assert.equal(rids[i], rids[i - 1] + 1);
    assert.ok(logged.log.length > rids.length, 'some rids were sent more than once');
    assert.equal(rec.close.length, 0, 'the session survived');
});

test('a request with no answer is given up after wait + timeout and sent again', async () => {
    // Two requests hang until the client gives up on them (wait + 300 ms): one never sent, one
    // sent and its answer ignored (the copy sent again gets the server's cached answer, or, if
    // the server still holds the first copy, takes its place).
    const hung = [];
    const rids = new Set();
    const c = client({
        timeout: 300,
        fetch: (url, init) => {
            const body = JSON.parse(init.body);
            const first = body.sid && !rids.has(body.rid);
            if (first) rids.add(body.rid);
            // The first copies of the session's 2nd and 4th rids hang.
            const mode = !first ? null : rids.size === 2 ? 'unsent' : rids.size === 4 ? 'ignored' : null;
            if (!mode) return fetch(url, init);
            if (mode === 'ignored') fetch(url, { ...init, signal: undefined }).then((r) => r.text()).catch(() => {});
            hung.push({ rid: body.rid, mode });
            return new Promise((_, reject) => {
                init.signal.addEventListener('abort', () => reject(new DOMException('aborted', 'AbortError')));
            });
        },
    });
    const rec = record(c);
    await subscribed(c, 'slow-net');
    await waitFor(() => hung.length === 2, { timeout: (WAIT * 4 + 4) * 1000, message: 'two hung requests' });
    const got = nextEvent(c, 'message', { pred: (m) => m.channel === 'slow-net' && m.data === 'after' });
    await waitFor(() => rec.errors.length >= 2, { timeout: (WAIT + 2) * 1000, message: 'the second timeout' });
    assert.deepEqual(unstamped(await publishHttp('slow-net', 'after')), { sessions: 1 });
    await got;
    assert.equal(rec.close.length, 0);
    assert.equal(dataOn(rec, 'slow-net').filter((d) => d === 'after').length, 1);
});

test('a held request replaced by a stray copy of its rid is sent again', async () => {
    // A "proxy" sends a second copy of one held poll: the server answers the client's copy
    // {"type":"error","condition":"replaced"} and holds the stray one, whose answer the client
    // never sees. The client must send that rid again (the same body) and go on.
    const replacedAnswers = [];
    let stray = null;
    let armed = false;
    const logged = loggingFetch({
        realFetch: async (url, init) => {
            const body = JSON.parse(init.body);
            const res = await fetch(url, init);
            const text = await res.text();
            if (text.includes('"replaced"')) replacedAnswers.push(body.rid);
            return new Response(text, { status: res.status, headers: res.headers });
        },
    });
    const c = client({
        fetch: (url, init) => {
            const body = JSON.parse(init.body);
            const p = logged.fetch(url, init);
            if (armed && !stray && body.sid && !body.messages) {
                stray = body.rid;
                // Once the client's copy is held, the stray copy takes its place.
                setTimeout(() => fetch(url, { method: 'POST', body: init.body }).then((r) => r.text()).catch(() => {}), 200);
            }
            return p;
        },
    });
    const rec = record(c);
    await subscribed(c, 'dup');
    armed = true; // the next empty poll gets a stray copy
    await waitFor(() => stray !== null && replacedAnswers.includes(stray), { timeout: (WAIT + 3) * 1000, message: 'the replaced answer' });
    await waitFor(() => logged.log.filter((e) => e.rid === stray).length >= 2, { timeout: 5000, message: 'the rid sent again' });
    const got = nextEvent(c, 'message', { pred: (m) => m.channel === 'dup' && m.data === 'after' });
    assert.deepEqual(unstamped(await publishHttp('dup', 'after')), { sessions: 1 });
    await got;
    const copies = logged.log.filter((e) => e.rid === stray);
    assert.ok(copies.every((e) => e.raw === copies[0].raw), 'the same body');
    assert.equal(dataOn(rec, 'dup').filter((d) => d === 'after').length, 1);
    assert.equal(rec.close.length, 0);
});

test('an expired session (item-not-found) reports close and reconnects with a fresh sid', async () => {
    let blocked = false;
    const logged = loggingFetch({ fail: () => (blocked ? 'before' : false) });
    const c = client({ fetch: logged.fetch, backoff: { initial: 50, max: 200 } });
    const rec = record(c);
    const first = await nextEvent(c, 'open');
    await subscribed(c, 'expiry');

    // Cut the client off: its requests fail before reaching the server until the server has
    // dropped the session (after `inactivity` with no request held; then no session is subscribed).
    blocked = true;
    // The held request may come back empty (wait) or carry the probe; either way the next fails.
    await waitFor(async () => (await publishHttp('expiry', 'lost')).sessions === 0,
        { timeout: (WAIT + INACTIVITY + 5) * 1000, interval: 100, message: 'the server to drop the session' });
    const closed = nextEvent(c, 'close', { timeout: 5000 });
    const reopened = nextEvent(c, 'open', { timeout: 5000 });
    const recovered = nextEvent(c, 'recovered', { timeout: 10000 });
    let atClose;
    c.on('close', () => { atClose = c.position('expiry'); });
    blocked = false;

    const info = await closed;
    assert.equal(info.condition, 'item-not-found');
    assert.equal(info.reconnecting, true);
    const second = await reopened;
    assert.notEqual(second.sid, first.sid, 'a fresh session');
    assert.equal(c.state, 'open');

    // The new session subscribed again to 'expiry' through the creation's `recover`, from the
    // position of the last message the client had (a creation carries no messages: were its
    // answer lost, its copy would make a second session; `recover` is harmless twice).
    const create = logged.log.filter((e) => !e.sid).at(-1);
    assert.equal(create.messages, undefined);
    assert.deepEqual(create.recover, { expiry: atClose });
    // It was told so, and got every message published while it was cut off, once, in order.
    const r = await recovered;
    assert.equal(r.recovered, true);
    assert.equal(r.epoch, atClose.epoch);
    await waitFor(() => c.position('expiry').offset === r.offset, { message: 'the recovered messages' });
    const lost = rec.messages.filter((m) => m.channel === 'expiry' && m.offset > atClose.offset);
    assert.deepEqual(lost.map((m) => m.offset),
        Array.from({ length: r.offset - atClose.offset }, (_, i) => atClose.offset + 1 + i));
    assert.ok(lost.every((m) => m.data === 'lost'));
    const got = nextEvent(c, 'message', { pred: (m) => m.channel === 'expiry' && m.data === 'again' });
    const answer = await publishHttp('expiry', 'again');
    assert.equal(answer.offset, r.offset + 1);
    const again = await got;
    assert.equal(again.offset, answer.offset);
    assert.equal(rec.close.length, 1);
});

test('a body over --max-body ends the session (policy-violation) and the client starts afresh', async () => {
    const c = client();
    const rec = record(c);
    const first = await nextEvent(c, 'open');
    await subscribed(c, 'big');
    const closed = nextEvent(c, 'close');
    const reopened = nextEvent(c, 'open', { pred: (s) => s.sid !== first.sid });
    c.publish('big', 'x'.repeat(70000)); // the server's default --max-body is 65536
    const info = await closed;
    assert.equal(info.condition, 'policy-violation');
    assert.equal(info.reconnecting, true);
    await reopened;
    const got = nextEvent(c, 'message', { pred: (m) => m.channel === 'big' && m.data === 'small' });
    c.publish('big', 'small');
    await got;
    assert.ok(!dataOn(rec, 'big').some((d) => typeof d === 'string' && d.length > 1000));
});

test('a polling session (hold 0) polls no faster than allowed and still delivers', async () => {
    const logged = loggingFetch();
    const c = client({ hold: 0, fetch: logged.fetch });
    const rec = record(c);
    const s = await nextEvent(c, 'open');
    assert.equal(s.hold, 0);
    assert.equal(s.requests, 1);
    await subscribed(c, 'slow');
    assert.deepEqual(unstamped(await publishHttp('slow', 'one')), { sessions: 1 });
    await waitFor(() => dataOn(rec, 'slow').includes('one'), { timeout: (POLLING * 3 + 2) * 1000, message: 'delivery' });
    assert.deepEqual(unstamped(await publishHttp('slow', 'two')), { sessions: 1 });
    await waitFor(() => dataOn(rec, 'slow').includes('two'), { timeout: (POLLING * 3 + 2) * 1000, message: 'delivery' });

    // Never more than one request out, and empty ones spaced by at least `polling` seconds.
    const rids = logged.log.map((e) => e.rid);
    for (let i = 1; i < rids.length; i++) assert.equal(rids[i], rids[i - 1] + 1);
    const empty = logged.log.filter((e) => e.sid && !e.messages && !e.type);
    for (let i = 1; i < empty.length; i++) {
        assert.ok(empty[i].at - empty[i - 1].at >= POLLING * 1000,
            `empty polls ${empty[i].at - empty[i - 1].at} ms apart`);
    }
    assert.equal(rec.close.length, 0, `no policy-violation: ${JSON.stringify(rec.close)}`);
    assert.equal(c.session.sid, s.sid);
});
