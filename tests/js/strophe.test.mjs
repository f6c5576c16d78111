// Real XMPP web clients against the BOSH transport: Strophe.js (npm strophe.js, the reference
// BOSH client) in Debian's chromium, driven by playwright-core, against `megaphone-xmpp`.
// Run: MEGAPHONE_XMPP_BIN=build/bin/megaphone-xmpp node --test tests/js/strophe.test.mjs
//      (or through ctest -L browser)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { startServer, repoRoot } from './server.mjs';
import { stropheBrowser, waitFor, CHROMIUM_LAUNCH } from './helpers.mjs';

const STROPHE = join(repoRoot, 'node_modules', 'strophe.js', 'dist', 'strophe.umd.min.js');
const T = { timeout: 90000 };

let server;
let browser;

before(async () => {
    const chromium = await stropheBrowser(STROPHE);
    server = await startServer('megaphone-xmpp', [
        '--static-dir', 'web', '--wait', '10', '--inactivity', '30', '--threads', '2', '--placement', 'spread',
    ]);
    browser = await chromium.launch(CHROMIUM_LAUNCH);
});

after(async () => {
    if (browser) await browser.close().catch(() => {});
    if (server) await server.stop();
});

/**
 * A page with Strophe.js loaded, logged in over /bosh: anonymously, or as `user`/`password`.
 * Stanzas received are kept in window.received; window.conn is the connection.
 */
async function xmppClient({ user = null, password = null, wait = 3 } = {}) {
    const context = await browser.newContext();
    const page = await context.newPage();
    page.setDefaultTimeout(20000);
    await page.goto(server.url + '/');
    await page.addScriptTag({ path: STROPHE });
    const jid = await page.evaluate(async ({ user, password, wait }) => {
        // Strophe 5's UMD build: window.Strophe is Strophe itself, $msg etc. are globals.
        const Strophe = window.Strophe.Strophe || window.Strophe;
        window.received = [];
        window.statuses = [];
        const conn = new Strophe.Connection('/bosh');
        window.conn = conn;
        conn.addHandler((m) => {
            const body = m.getElementsByTagName('body')[0];
            window.received.push({ from: m.getAttribute('from'), type: m.getAttribute('type'),
                body: body ? body.textContent : null });
            return true;
        }, null, 'message');
        return await new Promise((resolve, reject) => {
            const login = user ? `${user}@localhost` : 'localhost';
            conn.connect(login, password, (status) => {
                window.statuses.push(status);
                if (status === Strophe.Status.CONNECTED) resolve(conn.jid);
                if (status === Strophe.Status.AUTHFAIL || status === Strophe.Status.CONNFAIL) {
                    reject(new Error(`XMPP login failed with status ${status}`));
                }
            }, wait, 1);
        });
    }, { user, password, wait });
    return { page, context, jid };
}

function send(page, to, body) {
    return page.evaluate(({ to, body }) => {
        const $msg = window.Strophe.$msg || window.$msg;
        window.conn.send($msg({ to, type: 'chat' }).c('body').t(body));
    }, { to, body });
}

function bodies(page) {
    return page.evaluate(() => window.received.map((m) => m.body));
}

test('strophe: logs in anonymously over /bosh and the echo bot returns a message', T, async () => {
    const { page, context, jid } = await xmppClient();
    assert.match(jid, /@localhost\/.+/);
    await send(page, 'echo@localhost', 'hello echo');
    await waitFor(async () => (await bodies(page)).includes('hello echo'), { timeout: 10000, interval: 50, message: 'echo reply' });
    const [reply] = await page.evaluate(() => window.received);
    assert.equal(reply.from.split('/')[0], 'echo@localhost');
    await context.close();
});

test('strophe: two clients exchange messages both ways (full and bare JIDs)', T, async () => {
    const alice = await xmppClient({ user: 'alice', password: 'alice' });
    const bob = await xmppClient({ user: 'bob', password: 'bob' });
    assert.match(alice.jid, /^alice@localhost\//);
    await send(alice.page, bob.jid, 'hi bob (full jid)');
    await send(bob.page, 'alice@localhost', 'hi alice (bare jid)');
    await waitFor(async () => (await bodies(bob.page)).includes('hi bob (full jid)'), { timeout: 10000, interval: 50, message: 'bob gets it' });
    await waitFor(async () => (await bodies(alice.page)).includes('hi alice (bare jid)'), { timeout: 10000, interval: 50, message: 'alice gets it' });
    const toBob = (await bob.page.evaluate(() => window.received))[0];
    assert.equal(toBob.from, alice.jid);
    await alice.context.close();
    await bob.context.close();
});

test('strophe: a client whose connection breaks for a while recovers its session, no message lost',
    T, async () => {
        const sender = await xmppClient({ wait: 3 });
        const receiver = await xmppClient({ wait: 3 });
        const count = 30;
        // Break the receiver's BOSH requests for 2.5 s while the sender keeps sending: its
        // held request is answered or lost meanwhile, and Strophe re-sends the same rid.
        let breaking = true;
        await receiver.page.route('**/bosh', (route) => (breaking ? route.abort('connectionreset') : route.continue()));
        const sending = (async () => {
            for (let i = 1; i <= count; ++i) {
                await send(sender.page, receiver.jid, `m${i}`);
                await new Promise((r) => setTimeout(r, 100));
            }
        })();
        await new Promise((r) => setTimeout(r, 2500));
        breaking = false;
        await sending;
        await waitFor(async () => (await bodies(receiver.page)).length >= count,
            { timeout: 40000, interval: 100, message: 'all messages after the break' });
        const got = await bodies(receiver.page);
        assert.deepEqual(got, Array.from({ length: count }, (_, i) => `m${i + 1}`),
            'every message exactly once, in order');
        const { statuses, disconnected } = await receiver.page.evaluate(() => ({
            statuses: window.statuses,
            disconnected: (window.Strophe.Strophe || window.Strophe).Status.DISCONNECTED }));
        assert.ok(!statuses.includes(disconnected), `the session survived (statuses ${statuses})`);
        await sender.context.close();
        await receiver.context.close();
    });
