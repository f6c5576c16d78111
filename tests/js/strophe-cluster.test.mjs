// BOSH over the cluster: Strophe.js (npm strophe.js) in Debian's chromium, driven by
// playwright-core, logs in through nginx onto a cluster of 3 `megaphone-xmpp` nodes and keeps
// working while its requests land on nodes that do not own its session.
//
// Redis, 3 nodes (`--redis`, `--node-id n1..n3`, one `--cluster-key`, `--wait 5`) and nginx in
// front, configured by examples/cluster/run --print-nginx-conf (examples/cluster/nginx.conf.in):
// /bosh has no node in its URL, so nginx round-robins every BOSH request over the 3 nodes (the
// upstream megaphone_any: no hash, no stickiness) with keep-alive connections to the nodes ON
// (`keepalive 64`, the shipped configuration; nginx's balancer picks the node per request, so
// keep-alive does not pin a client to a node). The page (web/index.html) comes through nginx
// too; Strophe connects to /bosh on it.
//
// The session is created on whichever node gets the creation (the owner: its id prefixes the
// sid); every later request that lands on another node is forwarded to the owner and its answer
// relayed. In Chromium: SASL PLAIN as alice (as strophe.test.mjs), initial presence comes back,
// then ROUNDS rounds, each one waited for: an XEP-0199 ping to the server (the iq result), a
// chat message to its own full JID and one to the echo bot (both bodies back). Asserts: every
// reply arrives, once; the status stays CONNECTED (nothing after it until the test disconnects);
// every /bosh request the browser made got 200 (none failed); one BOSH session in the cluster,
// created on the owner; each of the 2 other nodes answered forwarded requests
// (megaphone_forwarded_requests_total{outcome="answered"} > 0 on its own /metrics) and none
// failed; the owner forwarded nothing; the owner also served requests that nginx sent it.
//
// Everything it starts (redis-server, the nodes, nginx and its workers, chromium) is stopped by
// pid at the end, failed or not, and SIGKILLed if this process exits early or runs 15 s past
// the test's timeout. Needs /usr/sbin/nginx, /usr/bin/redis-server, /usr/bin/chromium,
// node_modules (scripts/setup) and MEGAPHONE_XMPP_BIN (ctest sets it).
// Run: MEGAPHONE_XMPP_BIN=build/bin/megaphone-xmpp node --test tests/js/strophe-cluster.test.mjs
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { stropheBrowser, waitFor, CHROMIUM_LAUNCH } from './helpers.mjs';
import { repoRoot, startServer } from './server.mjs';
import {
    Processes, alive, childrenOf, freeRange, parseMetrics, redisCommand, requireClusterTools,
    startNginx, startRedis,
} from './cluster_helpers.mjs';

const STROPHE = join(repoRoot, 'node_modules', 'strophe.js', 'dist', 'strophe.umd.min.js');

const NODES = 3;
const ROUNDS = 20;          // ping + message to itself + message to the echo bot, each
const WAIT_S = 5;           // the nodes' --wait
const CLIENT_WAIT_S = 3;    // what Strophe asks for (as strophe.test.mjs)
const ROUND_TIMEOUT_MS = 10000;
const CLUSTER_KEY = 'strophe-cluster-test-key-0123456789';
const TEST_TIMEOUT_MS = 120000;
const FAILURES = ['unknown_node', 'unreachable', 'lost', 'timeout', 'busy', 'cancelled', 'shutdown'];

let scratch = null;
const procs = new Processes('strophe-cluster.test.mjs', TEST_TIMEOUT_MS, () => {
    if (scratch) rmSync(scratch, { recursive: true, force: true });
});

async function metricsOf(node) {
    const res = await fetch(`${node.url}/metrics`, { signal: AbortSignal.timeout(5000) });
    assert.equal(res.status, 200, `${node.id} /metrics`);
    const m = parseMetrics(await res.text());
    const get = (k) => m.get(k) ?? 0;
    const forwarded = {};
    for (const o of ['answered', ...FAILURES]) forwarded[o] = get(`megaphone_forwarded_requests_total{outcome="${o}"}`);
    return {
        forwarded,
        refused: get('megaphone_internal_requests_refused_total'),
        boshRequests: get('megaphone_requests_total{transport="bosh"}'),
        boshSessionsCreated: get('megaphone_sessions_created_total{transport="bosh"}'),
    };
}

test(`strophe over the cluster: Strophe.js through nginx round-robin over ${NODES} megaphone-xmpp nodes, forwarded to the owner`,
    { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const t0 = Date.now();
    const chromium = await stropheBrowser(STROPHE);
    requireClusterTools();

    const work = scratch = mkdtempSync(join(tmpdir(), 'megaphone-strophe-cluster-'));
    const nodes = [];
    let nginx = null;
    let browser = null;
    let browserProc = null;
    try {
        // ---- Redis, the nodes, nginx
        const base = await freeRange(NODES + 2); // nginx on base, node K on base+K, Redis on base+NODES+1
        const redisPort = base + NODES + 1;
        await startRedis(procs, { port: redisPort, dir: join(work, 'redis') });
        for (let k = 1; k <= NODES; k++) {
            const node = await startServer('megaphone-xmpp', ['--port', String(base + k), '--node-id', `n${k}`,
                '--redis', `redis://127.0.0.1:${redisPort}/0`, '--cluster-key', CLUSTER_KEY,
                '--threads', '1', '--wait', String(WAIT_S), '--inactivity', '30', '--drain', '1',
                '--static-dir', 'web']);
            node.id = `n${k}`;
            node.tracked = procs.track(node.id, node.process.pid);
            nodes.push(node);
        }
        // Every node registered (mp:node:<id> = its address), so a forward never misses it.
        await waitFor(async () => {
            for (const n of nodes) {
                if ((await redisCommand(redisPort, ['GET', `mp:node:${n.id}`])) !== `127.0.0.1:${n.port}`) return false;
            }
            return true;
        }, { timeout: 10000, interval: 50, message: 'every node registered in Redis' });

        const gen = spawnSync(join(repoRoot, 'examples/cluster/run'),
            ['--print-nginx-conf', '--nodes', String(NODES), '--port', String(base)], { encoding: 'utf8' });
        assert.equal(gen.status, 0, `examples/cluster/run --print-nginx-conf: ${gen.stderr}`);
        const anyUpstream = /upstream megaphone_any \{([^}]*)\}/.exec(gen.stdout);
        assert.ok(anyUpstream, 'the configuration has the round-robin upstream');
        assert.doesNotMatch(anyUpstream[1], /\b(hash|ip_hash|sticky|least_conn|random)\b/, 'no stickiness in megaphone_any');
        assert.equal((anyUpstream[1].match(/^\s*server 127\.0\.0\.1:\d+;/mg) || []).length, NODES, 'every node in megaphone_any');
        assert.match(anyUpstream[1], /keepalive \d+;/, 'keep-alive to the nodes (on)');
        nginx = await startNginx(procs, { conf: gen.stdout, prefix: join(work, 'nginx'), port: base });
        const url = `http://127.0.0.1:${base}`;
        const setupMs = Date.now() - t0;

        // ---- the browser (launched as strophe.test.mjs does; its pid tracked too)
        const before = new Set(childrenOf(process.pid));
        browser = await chromium.launch(CHROMIUM_LAUNCH);
        const launched = childrenOf(process.pid).filter((pid) => !before.has(pid) &&
            readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('chrom'));
        browserProc = launched.length ? procs.track('chromium', launched[0]) : null;
        const context = await browser.newContext(); // a fresh profile
        const page = await context.newPage();
        page.setDefaultTimeout(20000);

        // Every /bosh request the page makes, and how it ended.
        const http = { requests: 0, ok: 0, bad: [], failed: [] };
        page.on('request', (r) => { if (r.url().endsWith('/bosh')) http.requests++; });
        page.on('requestfinished', async (r) => {
            if (!r.url().endsWith('/bosh')) return;
            const res = await r.response();
            if (res && res.status() === 200) http.ok++;
            else http.bad.push(res ? res.status() : 'no response');
        });
        page.on('requestfailed', (r) => {
            if (r.url().endsWith('/bosh')) http.failed.push(r.failure()?.errorText || 'failed');
        });

        await page.goto(`${url}/`);
        await page.addScriptTag({ path: STROPHE });
        const login = await page.evaluate(async ({ wait, roundTimeout }) => {
            // Strophe 5's UMD build: window.Strophe is Strophe itself, $msg etc. are globals.
            const Strophe = window.Strophe.Strophe || window.Strophe;
            const $msg = window.Strophe.$msg || window.$msg;
            const $iq = window.Strophe.$iq || window.$iq;
            const $pres = window.Strophe.$pres || window.$pres;
            window.statuses = [];
            window.received = []; // {from, body}
            window.presences = [];
            const waiters = new Map(); // body → callback
            const conn = new Strophe.Connection('/bosh');
            window.conn = conn;
            conn.addHandler((m) => {
                const b = m.getElementsByTagName('body')[0];
                const body = b ? b.textContent : null;
                window.received.push({ from: m.getAttribute('from'), type: m.getAttribute('type'), body });
                const w = waiters.get(body);
                if (w) w(m.getAttribute('from'));
                return true;
            }, null, 'message');
            conn.addHandler((p) => {
                window.presences.push({ from: p.getAttribute('from'), type: p.getAttribute('type') });
                const w = waiters.get('presence');
                if (w) w(p.getAttribute('from'));
                return true;
            }, null, 'presence');

            // One round: all three replies, or a rejection naming what is missing.
            window.round = (i) => new Promise((resolve, reject) => {
                const t0 = performance.now();
                const need = new Set(['ping', 'self', 'echo']);
                const timer = setTimeout(() => {
                    waiters.delete(`self ${i}`);
                    waiters.delete(`echo ${i}`);
                    reject(new Error(`round ${i}: no ${[...need].join(', ')} within ${roundTimeout} ms ` +
                        `(status ${window.statuses.join(',')}, connected ${conn.connected})`));
                }, roundTimeout);
                const done = (what) => {
                    need.delete(what);
                    if (!need.size) { clearTimeout(timer); resolve(performance.now() - t0); }
                };
                waiters.set(`self ${i}`, (from) => {
                    if (from !== conn.jid) return reject(new Error(`round ${i}: self message from ${from}`));
                    waiters.delete(`self ${i}`);
                    done('self');
                });
                waiters.set(`echo ${i}`, (from) => {
                    if (!from || from.split('/')[0] !== 'echo@localhost') return reject(new Error(`round ${i}: echo from ${from}`));
                    waiters.delete(`echo ${i}`);
                    done('echo');
                });
                conn.sendIQ($iq({ type: 'get', to: 'localhost' }).c('ping', { xmlns: 'urn:xmpp:ping' }),
                    () => done('ping'),
                    (err) => reject(new Error(`round ${i}: ping failed: ${err ? new XMLSerializer().serializeToString(err) : 'timeout'}`)),
                    roundTimeout);
                conn.send($msg({ to: conn.jid, type: 'chat' }).c('body').t(`self ${i}`));
                conn.send($msg({ to: 'echo@localhost', type: 'chat' }).c('body').t(`echo ${i}`));
            });

            const jid = await new Promise((resolve, reject) => {
                conn.connect('alice@localhost', 'alice', (status) => {
                    window.statuses.push(status);
                    if (status === Strophe.Status.CONNECTED) resolve(conn.jid);
                    if (status === Strophe.Status.AUTHFAIL || status === Strophe.Status.CONNFAIL) {
                        reject(new Error(`XMPP login failed with status ${status}`));
                    }
                }, wait, 1);
            });
            // Initial presence: broadcast to the user's own available resources, this one included.
            await new Promise((resolve, reject) => {
                const timer = setTimeout(() => reject(new Error('own presence not back')), roundTimeout);
                waiters.set('presence', (from) => {
                    if (from === conn.jid) { clearTimeout(timer); waiters.delete('presence'); resolve(); }
                });
                conn.send($pres());
            });
            return { jid, sid: conn._proto.sid, connected: Strophe.Status.CONNECTED };
        }, { wait: CLIENT_WAIT_S, roundTimeout: ROUND_TIMEOUT_MS });
        assert.match(login.jid, /^alice@localhost\/.+/);
        const owner = login.sid.split('-')[0];
        assert.ok(nodes.some((n) => n.id === owner), `the sid ${login.sid} names a node of the cluster`);
        const loginMs = Date.now() - t0;

        const roundMs = [];
        for (let i = 1; i <= ROUNDS; i++) {
            roundMs.push(await page.evaluate((i) => window.round(i), i));
        }
        const roundsMs = Date.now() - t0;

        // ---- still connected, every reply once, every request answered 200
        const state = await page.evaluate(() => ({
            statuses: window.statuses, connected: window.conn.connected, sid: window.conn._proto.sid,
            received: window.received }));
        const afterConnected = state.statuses.slice(state.statuses.indexOf(login.connected) + 1);
        assert.deepEqual(afterConnected, [], `no status change after CONNECTED (statuses ${state.statuses})`);
        assert.equal(state.connected, true, 'still connected');
        assert.equal(state.sid, login.sid, 'the same BOSH session throughout');
        const bodies = state.received.map((m) => m.body);
        const want = [];
        for (let i = 1; i <= ROUNDS; i++) want.push(`self ${i}`, `echo ${i}`);
        assert.deepEqual([...bodies].sort(), [...want].sort(), 'every message back exactly once');
        // The requests still in flight (the held one) are neither finished nor failed yet.
        assert.deepEqual(http.failed, [], 'no /bosh request failed');
        assert.deepEqual(http.bad, [], 'every /bosh answer was 200');

        // ---- where the requests landed: each node's own /metrics
        const metrics = {};
        for (const n of nodes) metrics[n.id] = await metricsOf(n);
        for (const n of nodes) {
            const m = metrics[n.id];
            assert.equal(m.refused, 0, `${n.id}: no internal request refused`);
            for (const o of FAILURES) assert.equal(m.forwarded[o], 0, `${n.id}: no forward ${o}: ${JSON.stringify(m.forwarded)}`);
            if (n.id === owner) {
                assert.equal(m.forwarded.answered, 0, `${n.id} (the owner) forwarded nothing`);
                assert.equal(m.boshSessionsCreated, 1, `${n.id} (the owner) created the BOSH session`);
            } else {
                assert.ok(m.forwarded.answered > 0, `${n.id} forwarded requests to ${owner} and relayed the answers: ` +
                    `${JSON.stringify(m.forwarded)}`);
                assert.equal(m.boshSessionsCreated, 0, `${n.id} created no BOSH session`);
            }
        }
        // The owner counts the requests nginx sent it and the ones forwarded to it.
        const forwardedToOwner = nodes.reduce((s, n) => s + metrics[n.id].forwarded.answered, 0);
        const landed = {};
        for (const n of nodes) {
            landed[n.id] = n.id === owner ? metrics[n.id].boshRequests - forwardedToOwner : metrics[n.id].boshRequests;
        }
        assert.ok(landed[owner] > 0, `the owner served requests nginx sent it: ${JSON.stringify(landed)}`);

        // ---- a clean end: Strophe disconnects (terminate), through whichever node
        await page.evaluate((timeout) => new Promise((resolve, reject) => {
            const Strophe = window.Strophe.Strophe || window.Strophe;
            const timer = setTimeout(() => reject(new Error(`not DISCONNECTED within ${timeout} ms (${window.statuses})`)), timeout);
            const check = setInterval(() => {
                if (window.statuses.includes(Strophe.Status.DISCONNECTED)) {
                    clearInterval(check); clearTimeout(timer); resolve();
                }
            }, 20);
            window.conn.disconnect('done');
        }), ROUND_TIMEOUT_MS);
        await context.close();

        const sorted = [...roundMs].sort((a, b) => a - b);
        const figures = {
            owner, sid: login.sid, rounds: ROUNDS, landedBoshRequests: landed,
            forwardedAnswered: Object.fromEntries(nodes.map((n) => [n.id, metrics[n.id].forwarded.answered])),
            nodeBoshRequests: Object.fromEntries(nodes.map((n) => [n.id, metrics[n.id].boshRequests])),
            browserBoshRequests: { made: http.requests, answered200: http.ok },
            roundMs: { min: Math.round(sorted[0]), median: Math.round(sorted[sorted.length >> 1]), max: Math.round(sorted[sorted.length - 1]) },
            ms: { setup: setupMs, login: loginMs, rounds: roundsMs, total: Date.now() - t0 },
        };
        t.diagnostic(`strophe cluster figures: ${JSON.stringify(figures)}`);
        console.log(`strophe cluster figures: ${JSON.stringify(figures)}`);
    } catch (e) {
        if (nginx) console.log(`nginx error.log (tail):\n${nginx.log().split('\n').slice(-30).join('\n')}`);
        for (const n of nodes) console.log(`${n.id} output (tail):\n${n.output().stderr.split('\n').slice(-15).join('\n')}`);
        throw e;
    } finally {
        if (browser) {
            let timer;
            await Promise.race([browser.close().catch(() => {}), new Promise((r) => { timer = setTimeout(r, 10000); })]);
            clearTimeout(timer);
        }
        // Chromium first (its group: the wrapper exec'd into the browser, which leads it), then
        // nginx, the nodes and Redis, each by pid.
        if (browserProc) {
            if (alive(browserProc.pid)) { try { process.kill(-browserProc.pid, 'SIGKILL'); } catch { /* not a group leader */ } }
            await procs.stop(browserProc, { graceMs: 2000 });
        }
        if (nginx) {
            await procs.stop(nginx.master);
            for (const w of nginx.workers) await procs.stop(w, { graceMs: 500 });
        }
        await Promise.all(nodes.map(async (n) => {
            await n.stop();
            await procs.stop(n.tracked, { graceMs: 1000 });
        }));
        await procs.stopAll();
        rmSync(work, { recursive: true, force: true });
    }
});
