// The demo pages in a real browser (Debian's /usr/bin/chromium driven by playwright-core)
// against the real `megaphone-demo` binary. Screenshots go to test-output/screenshots/.
// The demo runs with its defaults: visitors without a token publish nowhere; the chat pages get
// a token for their nickname from the demo server's /demo/token.
// Run: MEGAPHONE_DEMO_BIN=build/bin/megaphone-demo node --test tests/js/browser.test.mjs
//      (or through ctest -L browser)
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { startServer, repoRoot } from './server.mjs';
import { waitFor, launchChromium } from './helpers.mjs';

const SHOTS = join(repoRoot, 'test-output', 'screenshots');
const VIEWPORT = { width: 1100, height: 720 };
const T = { timeout: 60000 };

let server;
let browser;
let pageErrors = [];

before(async () => {
    mkdirSync(SHOTS, { recursive: true });
    server = await startServer('megaphone-demo', [
        '--static-dir', 'web', '--wait', '5', '--hold', '1', '--inactivity', '20', '--threads', '2', '--placement', 'spread',
    ]);
    // launch() gives the browser a fresh temporary profile (user-data-dir), removed on close;
    // each test uses its own contexts (separate cookies and connections, like separate users).
    browser = await launchChromium();
});

after(async () => {
    if (browser) await browser.close().catch(() => {});
    if (server) await server.stop();
});

async function newPage(path, { longPollOnly = false } = {}) {
    const context = await browser.newContext({ viewport: VIEWPORT, deviceScaleFactor: 1 });
    // A page without EventSource nor WebSocket: megaphone.js stays on long-polling (its 'sse'
    // and 'websocket' transports need them), so every message goes through the requests a test cuts.
    if (longPollOnly) await context.addInitScript(() => { delete window.EventSource; delete window.WebSocket; });
    const page = await context.newPage();
    page.setDefaultTimeout(15000);
    page.on('pageerror', (err) => pageErrors.push(`${path}: ${err.message}`));
    page.on('console', (msg) => {
        // Failed requests are expected (the abort test makes them; no favicon is served).
        if (msg.type() === 'error' && !/Failed to load resource/.test(msg.text())) {
            pageErrors.push(`${path}: console: ${msg.text()}`);
        }
    });
    await page.goto(server.url + path);
    return { context, page };
}

async function joinChat(page, nick, room) {
    await page.fill('#nick', nick);
    await page.fill('#room', room);
    await page.click('#join');
    await page.waitForFunction(() => !document.querySelector('#text').disabled);
}

/** [{id, nick, text}] of the chat messages shown, in page order. */
function chatMessages(page) {
    return page.$$eval('#messages li.msg', (items) => items.map((li) => ({
        id: Number(li.dataset.id),
        nick: li.querySelector('.nick').textContent,
        text: li.querySelector('.text').textContent,
    })));
}

async function say(page, text) {
    await page.fill('#text', text);
    await page.click('#send');
}

beforeEach(() => {
    pageErrors = [];
});

test('the index page links the demos and the client module', T, async () => {
    const { context, page } = await newPage('/');
    try {
        for (const href of ['/chat.html', '/ticker.html', '/megaphone.js']) {
            assert.ok(await page.$(`a[href="${href}"]`), `a link to ${href}`);
        }
        const js = await page.request.get(`${server.url}/megaphone.js`);
        assert.equal(js.status(), 200);
        assert.match(js.headers()['content-type'] || '', /javascript/, 'megaphone.js is served as JavaScript');
        assert.match(await js.text(), /export function connect/);
        await page.screenshot({ path: join(SHOTS, 'index.png'), fullPage: true });
    } finally {
        await context.close();
    }
});

test('chat: two browsers in one room see each other join and talk both ways', T, async () => {
    const room = `room-${Date.now()}`;
    const a = await newPage('/chat.html');
    const b = await newPage('/chat.html');
    try {
        await joinChat(a.page, 'alice', room);
        await joinChat(b.page, 'bob', room);
        await a.page.waitForFunction(() => [...document.querySelectorAll('#messages li.notice')]
            .some((li) => li.textContent.includes('bob joined')));

        await say(a.page, 'hello from alice');
        await say(b.page, 'hi alice, bob here');
        for (const { page } of [a, b]) {
            await page.waitForFunction(() => document.querySelectorAll('#messages li.msg').length >= 2);
        }
        // Each page's session has a token minted for its nickname.
        const claims = (page) => page.evaluate(() => {
            const part = window.megaphoneChat.client.token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
            return JSON.parse(atob(part));
        });
        for (const [{ page }, nick] of [[a, 'alice'], [b, 'bob']]) {
            const c = await claims(page);
            assert.equal(c.sub, nick);
            assert.deepEqual(c.publish, ['chat*']);
            assert.ok(c.exp > Date.now() / 1000 + 3000, 'valid for about an hour');
        }
        const seenA = await chatMessages(a.page);
        const seenB = await chatMessages(b.page);
        assert.deepEqual(seenA, seenB, 'both see the same messages, same ids, same order');
        assert.deepEqual(seenA.map((m) => m.id), [1, 2]);
        const texts = seenA.map((m) => `${m.nick}: ${m.text}`).sort();
        assert.deepEqual(texts, ['alice: hello from alice', 'bob: hi alice, bob here']);

        // Joining later shows the room's history.
        const c = await newPage('/chat.html');
        try {
            await joinChat(c.page, 'carol', room);
            await c.page.waitForFunction(() => document.querySelectorAll('#messages li.msg').length >= 2);
            assert.deepEqual(await chatMessages(c.page), seenA);
            await a.page.waitForFunction(() => [...document.querySelectorAll('#messages li.notice')]
                .some((li) => li.textContent.includes('carol joined')));
            await say(c.page, 'carol says hi');
            await a.page.waitForFunction(() => document.querySelectorAll('#messages li.msg').length >= 3);
            // Carol leaves the page: megaphone.js terminates her session on 'pagehide'.
            await c.page.goto('about:blank');
        } finally {
            await c.context.close();
        }
        // The others are told she left.
        await a.page.waitForFunction(() => [...document.querySelectorAll('#messages li.notice')]
            .some((li) => li.textContent.includes('carol left')), null, { timeout: 10000 });
        await a.page.screenshot({ path: join(SHOTS, 'chat.png') });
    } finally {
        await a.context.close();
        await b.context.close();
    }
    assert.deepEqual(pageErrors, []);
});

test('ticker: the chart gets at least 10 updates in 2 seconds', T, async () => {
    const { context, page } = await newPage('/ticker.html');
    try {
        await page.waitForFunction(() => Number(document.querySelector('#count').textContent) >= 1);
        const start = Number(await page.textContent('#count'));
        const t0 = Date.now();
        await page.waitForFunction((n) => Number(document.querySelector('#count').textContent) >= n + 10,
            start, { timeout: 2000 });
        assert.ok(Date.now() - t0 <= 2500);
        assert.match(await page.textContent('#price'), /^\d+(\.\d+)?$/);

        // Let the chart fill a little for the screenshot, then check that it drew something.
        await page.waitForFunction(() => Number(document.querySelector('#count').textContent) >= 40,
            null, { timeout: 10000 });
        const painted = await page.evaluate(() => {
            const c = document.querySelector('#chart');
            const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let n = 0;
            for (let i = 3; i < data.length; i += 4) if (data[i] > 0) n++;
            return n;
        });
        assert.ok(painted > 1000, `the canvas has a chart (${painted} painted pixels)`);
        await page.screenshot({ path: join(SHOTS, 'ticker.png') });
    } finally {
        await context.close();
    }
    assert.deepEqual(pageErrors, []);
});

test('tokens: /demo/token mints for valid nicknames only; nobody but the server writes the ticker', T, async () => {
    // /demo/token: a JSON {token} for a nickname of 1 to 32 letters, digits, - or _; 400 otherwise.
    const get = async (query) => {
        const res = await fetch(`${server.url}/demo/token${query}`);
        return { status: res.status, body: await res.json().catch(() => null) };
    };
    const ok = await get('?nick=dave_2-x');
    assert.equal(ok.status, 200);
    assert.match(ok.body.token, /^[\w-]+\.[\w-]+\.[\w-]+$/);
    for (const bad of ['', '?nick=', '?nick=a%20b', '?nick=%3Cb%3E', `?nick=${'x'.repeat(33)}`, '?name=x']) {
        assert.equal((await get(bad)).status, 400, `refused: ${bad}`);
    }

    const { context, page } = await newPage('/ticker.html');
    const watcher = await newPage('/ticker.html');
    try {
        await page.waitForFunction(() => Number(document.querySelector('#count').textContent) >= 1);
        await watcher.page.waitForFunction(() => Number(document.querySelector('#count').textContent) >= 1);
        // A visitor (no token) publishing to the ticker: refused, the session goes on.
        const refused = await page.evaluate(() => new Promise((resolve) => {
            const { client } = window.megaphoneTicker;
            client.on('forbidden', (f) => resolve(f));
            client.publish('ticker', { symbol: 'FAKE', price: 1, time: Date.now(), seq: -1 });
        }));
        assert.deepEqual(refused, { channel: 'ticker' });
        // A chat token does not open the ticker either (it publishes to chat* only), and a session
        // without one cannot join the chat.
        const more = await page.evaluate(async () => {
            const { connect } = await import('/megaphone.js');
            const token = (await (await fetch('/demo/token?nick=mallory')).json()).token;
            const refusal = (c) => new Promise((resolve) => c.on('forbidden', resolve));
            const withToken = connect('/comet', { token, closeOnUnload: false });
            const tickerRefused = refusal(withToken);
            withToken.publish('ticker', { symbol: 'FAKE', price: 2, time: Date.now(), seq: -2 });
            const tokenless = connect('/chat', { closeOnUnload: false });
            const chatRefused = refusal(tokenless);
            tokenless.send({ join: 'lobby', nick: 'mallory' });
            const out = { ticker: await tickerRefused, chat: await chatRefused };
            withToken.close();
            tokenless.close();
            return out;
        });
        assert.deepEqual(more, { ticker: { channel: 'ticker' }, chat: { channel: 'chat:lobby' } });
        // The ticker goes on, and no page saw a FAKE update.
        const n = Number(await watcher.page.textContent('#count'));
        await watcher.page.waitForFunction((k) => Number(document.querySelector('#count').textContent) >= k + 5, n);
        for (const p of [page, watcher.page]) {
            assert.equal(await p.textContent('#symbol'), 'MEGA');
            assert.ok(await p.evaluate(() => window.megaphoneTicker.points.every((pt) => pt.seq >= 0)),
                'no refused update was drawn');
            assert.equal(await p.textContent('#status'), 'live');
        }
        assert.deepEqual(await watcher.page.evaluate(() => window.megaphoneTicker.forbidden), []);
    } finally {
        await context.close();
        await watcher.context.close();
    }
    assert.deepEqual(pageErrors, []);
});

test('chat: requests cut for a while lose and duplicate nothing', T, async () => {
    const room = `flaky-${Date.now()}`;
    // The reader long-polls only: its requests are the ones cut (a stream, /chat/events, would
    // carry its messages around the cut; tests/js/upgrade.test.mjs cuts streams).
    const rx = await newPage('/chat.html', { longPollOnly: true });
    const tx = await newPage('/chat.html');
    try {
        await joinChat(rx.page, 'reader', room);
        await joinChat(tx.page, 'writer', room);
        const sid = await rx.page.evaluate(() => window.megaphoneChat.client.session.sid);

        // The reader's requests to /chat: all aborted for 1.5 s (they never reach the server),
        // then the first copies of 3 rids reach the server but their answers are dropped, then all
        // pass; the
        // writer keeps talking all along.
        const counts = { before: 0, after: 0, lost: 0, passed: 0 };
        let phase = 'before';
        const lost = new Set();
        await rx.context.route('**/chat', async (route) => {
            if (phase === 'before') {
                counts.before++;
                return route.abort('connectionreset').catch(() => {});
            }
            const rid = JSON.parse(route.request().postData() || '{}').rid;
            if (phase === 'after' && counts.after < 3 && !lost.has(rid)) {
                // Three different rids lose their first answer (each one is then replayed).
                lost.add(rid);
                counts.after++;
                try {
                    await route.fetch({ timeout: 20000 }); // the server answers (and caches) …
                } catch { /* the server may have closed it */ }
                await route.abort('connectionreset').catch(() => {}); // … and the answer is lost
                counts.lost++;
                return undefined;
            }
            counts.passed++;
            return route.continue().catch(() => {});
        });

        const N = 150;
        const stream = tx.page.evaluate(async ({ n, room }) => {
            const { client } = window.megaphoneChat;
            for (let i = 1; i <= n; i++) {
                client.send({ say: `m${i}`, room });
                await new Promise((r) => setTimeout(r, 40));
            }
        }, { n: N, room });
        await waitFor(() => counts.before >= 2, { timeout: 10000, message: 'aborted requests' });
        await new Promise((r) => setTimeout(r, 1500)); // the outage lasts 1.5 s
        phase = 'after';
        // Unroute only when those three are done, not to race the browser's own copy of one.
        await waitFor(() => counts.lost >= 3, { timeout: 20000, message: 'three requests whose answer is lost' });
        await rx.context.unroute('**/chat');
        phase = 'done';
        await stream;

        await rx.page.waitForFunction((n) => document.querySelectorAll('#messages li.msg').length >= n, N,
            { timeout: 30000 });
        await tx.page.waitForFunction((n) => document.querySelectorAll('#messages li.msg').length >= n, N);
        // One more message through the repaired path: anything duplicated would be in by then.
        await say(tx.page, 'end');
        await rx.page.waitForFunction(() => [...document.querySelectorAll('#messages li.msg .text')]
            .some((t) => t.textContent === 'end'));

        const got = (await chatMessages(rx.page)).filter((m) => m.text !== 'end');
        assert.deepEqual(got.map((m) => m.text), Array.from({ length: N }, (_, i) => `m${i + 1}`),
            'every message once, in order');
        const ids = got.map((m) => m.id);
        for (let i = 1; i < ids.length; i++) assert.equal(ids[i], ids[i - 1] + 1, 'consecutive data-id');
        assert.deepEqual(await chatMessages(tx.page).then((l) => l.filter((m) => m.text !== 'end')), got);
        assert.ok(counts.before >= 2 && counts.after === 3, JSON.stringify(counts));
        assert.equal(await rx.page.evaluate(() => window.megaphoneChat.client.session.sid), sid,
            'the session survived the outage');
    } finally {
        await rx.context.close();
        await tx.context.close();
    }
    assert.deepEqual(pageErrors, []);
});
