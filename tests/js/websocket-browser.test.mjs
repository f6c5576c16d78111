// WebSocket in a real browser: Chromium's native WebSocket (Debian's /usr/bin/chromium driven by
// playwright-core; never a downloaded browser) against the real `megaphone` binary. A page makes
// a session with fetch POST, opens `new WebSocket(url, 'megaphone')` on it and receives what is
// published; a frame request is answered by rid; an unknown session's socket is closed with
// 4404, which the page can read (a refused handshake's status it could not).
// Run: MEGAPHONE_BIN=build/bin/megaphone node --test tests/js/websocket-browser.test.mjs
//      (or through ctest -R js.websocket_browser)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from './server.mjs';
import { launchChromium } from './helpers.mjs';

const T = { timeout: 60000 };

let server;
let browser;

before(async () => {
    server = await startServer('megaphone', [
        '--static-dir', 'web', '--wait', '10', '--inactivity', '20', '--threads', '2', '--placement', 'spread',
    ]);
    browser = await launchChromium();
});

after(async () => {
    if (browser) await browser.close().catch(() => {});
    if (server) await server.stop();
});

async function publish(channel, data) {
    const res = await fetch(`${server.internalUrl}/publish/${channel}`, { method: 'POST', body: JSON.stringify(data) });
    assert.equal(res.status, 200);
}

test('Chromium\'s WebSocket: ready, published messages in batches with ids, a frame request answered by rid', T, async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(`${server.url}/megaphone.js`); // same origin as the socket
    await page.evaluate(async () => {
        const res = await fetch('/comet', {
            method: 'POST',
            body: JSON.stringify({ rid: 100, wait: 10, messages: [{ subscribe: 'browser.ws' }] }),
        });
        const { sid } = await res.json();
        window.rec = { frames: [], close: null, protocol: null };
        const ws = new WebSocket(`ws://${location.host}/comet?sid=${sid}`, 'megaphone');
        ws.onopen = () => { window.rec.protocol = ws.protocol; };
        ws.onmessage = (e) => window.rec.frames.push(JSON.parse(e.data));
        ws.onclose = (e) => { window.rec.close = { code: e.code, reason: e.reason }; };
        window.ws = ws;
    });
    await page.waitForFunction(() => window.rec.frames.length >= 1);
    let rec = await page.evaluate(() => window.rec);
    assert.equal(rec.protocol, 'megaphone');
    assert.deepEqual(rec.frames[0], { type: 'ready', heartbeat: 15000 });

    await publish('browser.ws', 1);
    await publish('browser.ws', 2);
    await page.waitForFunction(() => window.rec.frames.filter((f) => 'id' in f)
        .reduce((n, b) => n + b.messages.length, 0) >= 2, null, { timeout: 15000 });
    rec = await page.evaluate(() => window.rec);
    const batches = rec.frames.filter((f) => 'id' in f);
    assert.deepEqual(batches.flatMap((b) => b.messages.map((m) => m.data)), [1, 2]);
    assert.equal(batches.at(-1).id, 2);

    await page.evaluate(() => window.ws.send(JSON.stringify({ rid: 101, messages: [{ subscribe: 'browser.ws2' }] })));
    await page.waitForFunction(() => window.rec.frames.some((f) => f.rid === 101), null, { timeout: 15000 });
    await publish('browser.ws2', 'two');
    await page.waitForFunction(() => window.rec.frames.some((f) => 'id' in f && f.messages.some((m) => m.data === 'two')),
        null, { timeout: 15000 });
    await context.close();
});

test('Chromium\'s WebSocket: an unknown session is closed with 4404 item-not-found', T, async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(`${server.url}/megaphone.js`);
    const close = await page.evaluate(() => new Promise((resolve) => {
        const ws = new WebSocket(`ws://${location.host}/comet?sid=n0-AAAAAAAAAAAAAAAAAAAAA`, 'megaphone');
        ws.onclose = (e) => resolve({ code: e.code, reason: e.reason });
    }));
    assert.deepEqual(close, { code: 4404, reason: 'item-not-found' });
    await context.close();
});
