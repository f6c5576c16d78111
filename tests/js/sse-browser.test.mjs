// Server-Sent Events in a real browser: Chromium's native EventSource (Debian's /usr/bin/chromium
// driven by playwright-core; never a downloaded browser) against the real `megaphone` binary.
// Also web/megaphone.js's upgrade in the page: to SSE, and (its default transports) to Chromium's
// native WebSocket, its requests then going as frames.
// Run: MEGAPHONE_BIN=build/bin/megaphone node --test tests/js/sse-browser.test.mjs
//      (or through ctest -R js.sse_browser)
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
        '--client-publish', 'browser.*', // the WebSocket test's page publishes
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

/** The page's EventSource record: {opens, errors, events: [{id, data}]}. */
const recordOf = (page) => page.evaluate(() => window.rec);

async function waitEvents(page, n) {
    await page.waitForFunction((count) => window.rec.events.length >= count, n, { timeout: 15000 });
}

test('Chromium\'s EventSource: events with ids, a reconnect with Last-Event-ID, every message once', T, async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    // Same origin as the stream (a static page of the server): the EventSource as an app uses it.
    await page.goto(`${server.url}/megaphone.js`);
    const sid = await page.evaluate(async () => {
        const res = await fetch('/comet', {
            method: 'POST',
            body: JSON.stringify({ rid: 100, wait: 10, messages: [{ subscribe: 'browser.sse' }] }),
        });
        const { sid } = await res.json();
        window.rec = { opens: 0, errors: 0, events: [] };
        const es = new EventSource(`/comet/events?sid=${sid}`);
        es.onopen = () => { window.rec.opens += 1; };
        es.onerror = () => { window.rec.errors += 1; };
        es.onmessage = (e) => window.rec.events.push({ id: e.lastEventId, data: JSON.parse(e.data).data });
        window.es = es;
        return sid;
    });
    await page.waitForFunction(() => window.rec.opens === 1);
    await publish('browser.sse', 1);
    await publish('browser.sse', 2);
    await waitEvents(page, 2);

    // Another stream of the session (the newest wins) ends the browser's: it reconnects by itself
    // after `retry:`, sending Last-Event-ID. This one leaves at once, and what is published
    // meanwhile goes to the queue or into the replay window: either way the browser gets it once.
    const controller = new AbortController();
    const other = await fetch(`${server.url}/comet/events?sid=${sid}`, {
        headers: { 'Last-Event-ID': '2' }, signal: controller.signal,
    });
    assert.equal(other.status, 200);
    await publish('browser.sse', 3);
    controller.abort();
    await publish('browser.sse', 4);
    await page.waitForFunction(() => window.rec.opens === 2, null, { timeout: 15000 });
    await publish('browser.sse', 5);
    await waitEvents(page, 5);

    const rec = await recordOf(page);
    assert.deepEqual(rec.events.map((e) => e.data), [1, 2, 3, 4, 5]);
    assert.deepEqual(rec.events.map((e) => e.id), ['1', '2', '3', '4', '5']);
    assert.equal(rec.opens, 2);

    // The session ends: the browser's EventSource is told, reconnects, gets 204 and stops.
    await page.evaluate(async (s) => {
        await fetch('/comet', { method: 'POST', body: JSON.stringify({ sid: s, rid: 101, type: 'terminate' }) });
    }, sid);
    await page.waitForFunction(() => window.es.readyState === EventSource.CLOSED, null, { timeout: 15000 });
    await context.close();
});

test('Chromium: web/megaphone.js upgrades to its native EventSource and keeps receiving, every message once', T, async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(`${server.url}/megaphone.js`);
    await page.evaluate(async () => {
        const { connect } = await import('/megaphone.js');
        const client = connect('/comet', { wait: 10, closeOnUnload: false, transports: ['long-poll', 'sse'] });
        window.up = { client, messages: [], transports: [], errors: 0 };
        client.on('message', (m) => { if (m && m.channel === 'browser.upgrade') window.up.messages.push(m.data); });
        client.on('transport', (t) => window.up.transports.push(t.transport));
        client.on('error', () => { window.up.errors += 1; });
        client.subscribe('browser.upgrade');
    });
    // Subscribed (its position came back), and published to before and across the switch.
    await page.waitForFunction(() => window.up.client.position('browser.upgrade') !== undefined, null, { timeout: 15000 });
    await publish('browser.upgrade', 1);
    await page.waitForFunction(() => window.up.client.transport === 'sse', null, { timeout: 15000 });
    for (let i = 2; i <= 20; i += 1) await publish('browser.upgrade', i);
    await page.waitForFunction(() => window.up.messages.length >= 20, null, { timeout: 15000 });
    const up = await page.evaluate(() => ({
        messages: window.up.messages, transports: window.up.transports, errors: window.up.errors,
        transport: window.up.client.transport,
    }));
    assert.deepEqual(up.messages, Array.from({ length: 20 }, (_, i) => i + 1));
    assert.deepEqual(up.transports, ['sse']);
    assert.equal(up.transport, 'sse');
    assert.equal(up.errors, 0);
    await context.close();
});

test('Chromium: web/megaphone.js (default transports) upgrades to its native WebSocket, publishes over it, keeps receiving', T, async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(`${server.url}/megaphone.js`);
    await page.evaluate(async () => {
        const { connect } = await import('/megaphone.js');
        let posts = 0;
        const fetchCounting = (url, init) => { posts += 1; return fetch(url, init); };
        const client = connect('/comet', { wait: 10, closeOnUnload: false, fetch: fetchCounting });
        window.up = { client, messages: [], transports: [], probes: [], errors: 0, posts: () => posts };
        client.on('message', (m) => { if (m && m.channel === 'browser.ws') window.up.messages.push(m.data); });
        client.on('transport', (t) => window.up.transports.push(t.transport));
        client.on('debug', (d) => window.up.probes.push(`${d.type} ${d.transport}`));
        client.on('error', () => { window.up.errors += 1; });
        client.subscribe('browser.ws');
    });
    await page.waitForFunction(() => window.up.client.position('browser.ws') !== undefined, null, { timeout: 15000 });
    await publish('browser.ws', 1);
    await page.waitForFunction(() => window.up.client.transport === 'websocket', null, { timeout: 15000 });
    for (let i = 2; i <= 20; i += 1) await publish('browser.ws', i);
    await page.waitForFunction(() => window.up.messages.length >= 20, null, { timeout: 15000 });
    // The page's own publishes now go as frames on the socket (no POST) and come back to it.
    const posts = await page.evaluate(() => {
        const before = window.up.posts();
        for (let i = 21; i <= 30; i += 1) window.up.client.publish('browser.ws', i);
        return before;
    });
    await page.waitForFunction(() => window.up.messages.length >= 30, null, { timeout: 15000 });
    await new Promise((r) => setTimeout(r, 200));
    const up = await page.evaluate(() => ({
        messages: window.up.messages, transports: window.up.transports, probes: window.up.probes,
        errors: window.up.errors, transport: window.up.client.transport, posts: window.up.posts(),
    }));
    assert.deepEqual(up.messages, Array.from({ length: 30 }, (_, i) => i + 1));
    assert.deepEqual(up.transports, ['websocket']);
    assert.deepEqual(up.probes, ['probe websocket']);
    assert.equal(up.transport, 'websocket');
    assert.equal(up.posts, posts, 'no POST while on the WebSocket');
    assert.equal(up.errors, 0);
    await context.close();
});
