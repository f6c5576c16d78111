// The /admin dashboard in a real browser (Debian's /usr/bin/chromium driven by playwright-core)
// against `megaphone-demo --admin-token`, while a bounded load runs: megaphone.js clients (under
// node) subscribed to a channel that the test publishes to every 100 ms, and more clients that
// come and go. Checks that the diagram shows live counts that change, that transition rates are
// drawn, and that the sessions table lists sessions; saves test-output/admin.png. And that the
// token stays out of URLs and logs (issue 20): the page moves it from its address into a header.
// Run: MEGAPHONE_DEMO_BIN=build/bin/megaphone-demo node --test tests/js/admin.test.mjs
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import http from 'node:http';
import { join } from 'node:path';
import { connect } from '../../web/megaphone.js';
import { startServer, repoRoot } from './server.mjs';
import { waitFor, nextEvent, launchChromium } from './helpers.mjs';

const OUT = join(repoRoot, 'test-output');
const TOKEN = 'admin-test-token';
const T = { timeout: 90000 };

let server;
let browser;
const clients = [];
let publisher = null;
const streams = []; // SSE requests (node:http), ended after the tests

before(async () => {
    mkdirSync(OUT, { recursive: true });
    server = await startServer('megaphone-demo', [
        '--static-dir', 'web', '--wait', '5', '--hold', '1', '--inactivity', '20', '--threads', '2', '--placement', 'spread',
        '--admin-token', TOKEN,
    ]);
    browser = await launchChromium();
});

after(async () => {
    if (publisher) clearInterval(publisher);
    for (const r of streams) r.destroy();
    await Promise.all(clients.splice(0).map(async (c) => {
        if (c.state !== 'closed') {
            const closed = nextEvent(c, 'close', { pred: (i) => !i.reconnecting, timeout: 3000 }).catch(() => {});
            c.close();
            await closed;
        }
        c._destroy();
    }));
    if (browser) await browser.close().catch(() => {});
    if (server) await server.stop();
});

/** Opens `n` megaphone.js sessions on the hub, subscribed to 'load'; resolves once all are open. */
async function openClients(n) {
    const opened = [];
    for (let i = 0; i < n; i++) {
        const c = connect(`${server.url}/comet`, { wait: 5, closeOnUnload: false });
        clients.push(c);
        opened.push(nextEvent(c, 'open', { timeout: 10000 }));
        c.subscribe('load');
    }
    await Promise.all(opened);
}

test('the admin data needs the token in its header; the page refuses a wrong one', T, async () => {
    // The page holds no data: served bare (a reload), refused with a wrong ?token=.
    const none = await fetch(`${server.url}/admin`);
    assert.equal(none.status, 200);
    const wrong = await fetch(`${server.url}/admin?token=nope`);
    assert.equal(wrong.status, 403);
    const ok = await fetch(`${server.url}/admin?token=${TOKEN}`);
    assert.equal(ok.status, 200);
    assert.match(await ok.text(), /Megaphone admin/);
    // The data: the header only, never a token from the URL, even the right one.
    const comet = await fetch(`${server.url}/admin/comet?token=${TOKEN}`, { method: 'POST', body: '{"rid":1}' });
    assert.equal(comet.status, 403);
    const inQuery = await fetch(`${server.url}/admin/sessions?token=${TOKEN}`);
    assert.equal(inQuery.status, 403);
    const wrongHeader = await fetch(`${server.url}/admin/sessions`, { headers: { 'X-Megaphone-Token': 'nope' } });
    assert.equal(wrongHeader.status, 403);
    const byHeader = await fetch(`${server.url}/admin/sessions`, { headers: { 'X-Megaphone-Token': TOKEN } });
    assert.equal(byHeader.status, 200);
});

test('the dashboard draws live counts on the machine diagram and lists sessions', T, async () => {
    // The load: 20 subscribers, a publish every 100 ms (each answers a held poll: transitions).
    await openClients(20);
    let published = 0;
    publisher = setInterval(() => {
        published++;
        fetch(`${server.internalUrl}/publish/load`, { method: 'POST', body: JSON.stringify({ n: published }) })
            .then((r) => r.text()).catch(() => {});
    }, 100);

    const context = await browser.newContext({ viewport: { width: 1200, height: 1300 }, deviceScaleFactor: 1 });
    const page = await context.newPage();
    page.setDefaultTimeout(20000);
    const errors = [];
    page.on('pageerror', (e) => errors.push(e.message));
    try {
        await page.goto(`${server.url}/admin?token=${TOKEN}`);
        await page.waitForFunction(() => document.querySelector('#status').textContent === 'live');
        // Counts on the diagram: one badge per state, a number in each.
        const counts = () => page.evaluate(() => Object.fromEntries(['waiting', 'have_request', 'have_packet']
            .map((s) => [s, document.querySelector(`#count-${s} text`)?.textContent])));
        await page.waitForFunction(() => Number(document.body.dataset.snapshots || 0) >= 2);
        const first = await counts();
        for (const v of Object.values(first)) assert.match(v, /^\d+$/, JSON.stringify(first));
        // 20 subscribers and the page's own session, each in one of the three states.
        const before = Object.values(first).reduce((a, v) => a + Number(v), 0);
        assert.ok(before >= 21, JSON.stringify(first));

        // Rates on the edges: the publishes move sessions have_request → waiting → have_request.
        await page.waitForFunction(() => [...document.querySelectorAll('#diagram .rate')]
            .some((t) => /\/s$/.test(t.textContent)));
        const rate = Number(await page.textContent('#stat-rate'));
        assert.ok(rate > 0, `transitions per second shown: ${rate}`);

        // More sessions: the counts on the diagram change.
        await openClients(15);
        await page.waitForFunction((n) => ['waiting', 'have_request', 'have_packet']
            .map((s) => Number(document.querySelector(`#count-${s} text`).textContent))
            .reduce((a, b) => a + b, 0) >= n + 15, before);

        // Three sessions on Server-Sent Events streams: the diagram's streaming states count
        // them, the summary too.
        for (let i = 0; i < 3; i++) {
            const created = await (await fetch(`${server.url}/comet`, { method: 'POST', body: '{"rid":1}' })).json();
            const req = http.get(`${server.url}/comet/events?sid=${created.sid}`, (res) => res.resume());
            req.on('error', () => {});
            streams.push(req);
        }
        await page.waitForFunction(() => ['streaming', 'writing']
            .map((s) => Number(document.querySelector(`#count-${s} text`)?.textContent || 0))
            .reduce((a, b) => a + b, 0) >= 3 && Number(document.querySelector('#stat-streams').textContent) >= 3);

        // The sessions table: a full first page, with states, ages and addresses.
        // The table refreshes every 2 s: wait until it has counted the 15 new sessions too.
        await page.waitForFunction((n) => {
            const m = /· (\d+) sessions/.exec(document.querySelector('#page-info').textContent);
            return m && Number(m[1]) >= n + 15 && document.querySelectorAll('#sessions tr').length >= 20;
        }, before);
        const rows = await page.$$eval('#sessions tr', (trs) => trs.map((tr) => [...tr.children].map((td) => td.textContent)));
        for (const [sid, transport, state, age, queued, held, address] of rows) {
            assert.match(sid, /^n0-/);
            assert.match(transport, /^(json|bosh)$/);
            assert.match(state, /^(waiting|have_request|have_packet|streaming|writing)$/);
            assert.ok(Number(age) >= 0 && Number(queued) >= 0 && Number(held) >= 0);
            assert.match(address, /^127\.0\.0\.1:\d+$/);
        }
        assert.match(await page.textContent('#page-info'), /page 1 of \d+ · \d+ sessions/);
        await page.click('#next');
        await page.waitForFunction(() => /page 2 of/.test(document.querySelector('#page-info').textContent));

        await page.screenshot({ path: join(OUT, 'admin.png'), fullPage: true });
    } finally {
        await context.close();
    }
    assert.deepEqual(errors, []);
});

test('the token leaves the address at once and appears in no URL, log or Referer after it', T, async () => {
    // A server of its own: the token from a file, every request in the access log, debug lines
    // on stderr.
    const dir = mkdtempSync(join(tmpdir(), 'megaphone-admin-'));
    const secret = `adm1n-${randomBytes(12).toString('hex')}`;
    const tokenFile = join(dir, 'admin-token');
    writeFileSync(tokenFile, `${secret}\n`, { mode: 0o600 });
    const accessLog = join(dir, 'access.log');
    const own = await startServer('megaphone-demo', [
        '--static-dir', 'web', '--wait', '5', '--threads', '1', '--admin-token-file', tokenFile,
        '--access-log', accessLog, '--log-level', 'debug',
    ]);
    const context = await browser.newContext();
    const page = await context.newPage();
    page.setDefaultTimeout(20000);
    const errors = [];
    page.on('pageerror', (e) => errors.push(e.message));
    const requests = [];
    const sent = new Map(); // request → its headers
    page.on('request', (r) => requests.push(r));
    const seen = (path) => requests.filter((r) => new URL(r.url()).pathname === path).length;
    try {
        await page.goto(`${own.url}/admin?token=${secret}`);
        await page.waitForFunction(() => document.querySelector('#status').textContent === 'live');
        // Out of the address bar at once, and so out of the history this tab leaves.
        assert.equal(page.url(), `${own.url}/admin`);
        // The dashboard at work: sessions fetched twice (every 2 s), the comet polled for several
        // snapshots (one a second).
        await waitFor(() => seen('/admin/sessions') >= 2 && seen('/admin/comet') >= 3,
            { timeout: 15000, message: 'several dashboard requests' });
        await page.waitForFunction(() => Number(document.body.dataset.snapshots || 0) >= 2);
        // A reload goes on working: the token is kept in the tab's sessionStorage.
        const before = requests.length;
        await page.reload();
        await page.waitForFunction(() => document.querySelector('#status').textContent === 'live');
        await waitFor(() => requests.slice(before).some((r) => new URL(r.url()).pathname === '/admin/comet'),
            { timeout: 10000, message: 'the reloaded page polling' });
        assert.equal(page.url(), `${own.url}/admin`);
        // Every request's headers as sent (Referer included), while the browser still has them; a
        // request still held open has its provisional ones.
        for (const r of requests) {
            const provisional = new Promise((resolve) => { setTimeout(() => resolve(r.headers()), 2000); });
            sent.set(r, await Promise.race([r.allHeaders(), provisional]));
        }
    } finally {
        await context.close();
    }
    await own.stop(); // every access-log line written

    assert.equal(requests[0].url(), `${own.url}/admin?token=${secret}`);
    let carried = 0;
    for (const r of requests.slice(1)) {
        assert.ok(!r.url().includes(secret), `the token in a request URL: ${r.url()}`);
        // (Requests made after the headers were taken, such as the terminate when the page
        // went away: their provisional headers.)
        for (const [name, value] of Object.entries(sent.get(r) ?? r.headers())) {
            if (name.toLowerCase() === 'x-megaphone-token') {
                assert.equal(value, secret);
                carried++;
            } else {
                assert.ok(!value.includes(secret), `the token in ${name} of ${r.url()}: ${value}`);
            }
        }
    }
    assert.ok(carried >= 5, `requests that carried the token in the header: ${carried}`);

    const log = readFileSync(accessLog, 'utf8');
    const { stdout, stderr } = own.output();
    rmSync(dir, { recursive: true, force: true });
    assert.match(log, /method=GET path=\/admin\?token=REDACTED status=200/);
    assert.match(log, /method=GET path=\/admin\/sessions\?page=0&size=20 status=200/);
    assert.match(log, /method=POST path=\/admin\/comet status=200/);
    assert.ok(!log.includes(secret), `the token in the access log:\n${log}`);
    assert.match(stderr, /session open/); // the debug lines were written
    assert.ok(!stderr.includes(secret), `the token on stderr:\n${stderr}`);
    // (The demo prints the dashboard's link on stdout, for its operator: nowhere else.)
    assert.ok(stdout.includes(`/admin?token=${secret}`));
    assert.deepEqual(errors, []);
});
