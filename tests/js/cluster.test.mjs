// A cluster behind nginx (the scale-out issue): Redis, 3 `megaphone --redis ... --node-id nK`
// nodes, and nginx in front with the configuration examples/cluster/run generates
// (examples/cluster/nginx.conf.in). 300 web/megaphone.js clients (routeByNode: true) connect
// through nginx, which spreads their sessions over the nodes and then routes each session's
// requests to its node by the URL (/comet/nK); each client subscribes to 2 of 10 channels.
//
// 1. Publishes go to every node in turn (POST /publish/{ch} to each node's internal door directly,
//    round robin: the nodes have no --publish-key, so nginx's public port answers 404 to a publish,
//    which is checked too); each client gets every message of its channels exactly once and in
//    order.
// 2. In the middle of a stream of publishes one node is killed (SIGKILL). Every client of the dead
//    node gets item-not-found, opens a new session on another node with its cursors, and is told
//    `recovered: true` for both its channels; every client still gets every message exactly once
//    and in order: those published while it had no session come from the history in Redis (the
//    test counts them: the notice's offset minus the client's position before it).
//
// "Every message" is checked by each message's data ({seq}: the publish's number in its channel)
// and position, against the publishes that got 200: a channel's publishes are sent one after the
// other, so its offsets follow its seqs. A publish aimed at the dead node may fail (refused, cut, or
// 503) once the kill is under way: it is not expected, but since the node may have handed it to
// Redis before dying, a client may get it (then at its offset, once, like any other).
//
// Everything it starts (redis-server, the nodes, nginx and its workers) it stops by pid at the
// end, failed or not; if this process exits early, or is still running 15 s past the test's
// timeout, it SIGKILLs them (by pid) and exits. Needs /usr/sbin/nginx and
// /usr/bin/redis-server (or NGINX_BIN / REDIS_SERVER_BIN), and MEGAPHONE_BIN (ctest sets it).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { connect } from '../../web/megaphone.js';
import { waitFor } from './helpers.mjs';
import { repoRoot, startServer } from './server.mjs';
import { Processes, freeRange, requireClusterTools, startNginx, startRedis } from './cluster_helpers.mjs';

const NODES = 3;
const CLIENTS = 300;
const CHANNELS = 10;
const FIRST = 20;          // phase 1: publishes per channel
const KILL_AFTER = 60;     // phase 2: the node is killed after this many publishes (all channels)
const AFTER_RECOVERY = 20; // phase 2 goes on for this many publishes per channel once all recovered
const STREAM_PAUSE_MS = 15; // between two publishes of a channel in phase 2
const DEAD = 'n2';
const WAIT_S = 5;          // the nodes' --wait: long-polls come back often
const TEST_TIMEOUT_MS = 90000;

// ---- processes: every one started here is killed by pid, whatever happens ----------------------

let scratch = null;        // the test's directory (Redis's data, nginx's prefix)
// A test past its timeout is failed, but its clients and children would keep this process alive
// until ctest's TIMEOUT kills it (leaving them running): well before that, Processes kills them
// (by pid) and exits.
const procs = new Processes('cluster.test.mjs', TEST_TIMEOUT_MS, () => {
    if (scratch) rmSync(scratch, { recursive: true, force: true });
});

// ---- the cluster -------------------------------------------------------------------------------

/** Starts everything into `cluster` (filled as it goes, so that a failure half-way stops what runs). */
async function startCluster(cluster, work) {
    requireClusterTools();
    const base = await freeRange(NODES + 2);
    cluster.port = base;
    const redisPort = base + NODES + 1;

    cluster.redis = await startRedis(procs, { port: redisPort, dir: join(work, 'redis') });

    for (let k = 1; k <= NODES; k++) {
        const node = await startServer('megaphone', ['--port', String(base + k), '--node-id', `n${k}`,
            '--redis', `redis://127.0.0.1:${redisPort}/0`, '--threads', '1',
            '--wait', String(WAIT_S), '--inactivity', '10', '--drain', '1',
            '--history-size', '1000', '--history-ttl', '300', '--static-dir', 'web']);
        node.id = `n${k}`;
        node.tracked = procs.track(node.id, node.process.pid);
        cluster.nodes.push(node);
    }

    // nginx, configured by examples/cluster/run itself (the same file a user gets).
    const gen = spawnSync(join(repoRoot, 'examples/cluster/run'),
        ['--print-nginx-conf', '--nodes', String(NODES), '--port', String(base)], { encoding: 'utf8' });
    assert.equal(gen.status, 0, `examples/cluster/run --print-nginx-conf: ${gen.stderr}`);
    const nginx = await startNginx(procs, { conf: gen.stdout, prefix: join(work, 'nginx'), port: base });
    cluster.nginx = nginx.master;
    cluster.nginxLog = nginx.log;
    cluster.nginxWorkers = nginx.workers;
    cluster.url = `http://127.0.0.1:${base}`;
}

async function stopCluster(cluster) {
    if (cluster.nginx) {
        await procs.stop(cluster.nginx);
        // Workers of a master that had to be killed outlive it.
        for (const w of cluster.nginxWorkers || []) await procs.stop(w, { graceMs: 500 });
    }
    await Promise.all(cluster.nodes.map(async (n) => {
        await n.stop();
        await procs.stop(n.tracked, { graceMs: 1000 });
    }));
    if (cluster.redis) await procs.stop(cluster.redis);
}

// ---- the test ------------------------------------------------------------------------------------

const channelName = (i) => `ch${i}`;

/** The two channels of client i: i % 10 and another one, so that pairs vary. */
function channelsOf(i) {
    const a = i % CHANNELS;
    const b = (a + 1 + (Math.floor(i / CHANNELS) % (CHANNELS - 1))) % CHANNELS;
    return [channelName(a), channelName(b)];
}

test(`cluster: ${CLIENTS} megaphone.js clients through nginx over ${NODES} nodes; one node SIGKILLed mid-stream`,
    { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const t0 = Date.now();
    const work = scratch = mkdtempSync(join(tmpdir(), 'megaphone-cluster-test-'));
    const cluster = { nodes: [] };
    const recs = [];
    try {
        await startCluster(cluster, work);
        const setupMs = Date.now() - t0;
        const nodeById = new Map(cluster.nodes.map((n) => [n.id, n]));

        // ---- clients
        for (let i = 0; i < CLIENTS; i++) {
            const c = connect(`${cluster.url}/comet`, {
                routeByNode: true, wait: WAIT_S, timeout: 3000, backoff: { initial: 50, max: 500 }, closeOnUnload: false,
            });
            const rec = { i, c, channels: channelsOf(i), sids: [], closes: [], recovered: [], errors: 0,
                got: new Map(), start: new Map(), liveAfterRecovery: 0 };
            for (const ch of rec.channels) rec.got.set(ch, []);
            c.on('open', (s) => rec.sids.push(s.sid));
            c.on('close', (info) => rec.closes.push({ ...info, at: Date.now() }));
            c.on('error', (e) => { rec.errors++; rec.lastError = e.message; });
            c.on('recovered', (ev) => {
                // Emitted before the replayed messages: the client's position is still the old one.
                rec.recovered.push({ ...ev, before: c.position(ev.channel), replayed: 0 });
            });
            c.on('message', (m) => {
                const list = rec.got.get(m.channel);
                if (!list) return;
                list.push({ seq: m.data && m.data.seq, epoch: m.epoch, offset: m.offset });
                const r = rec.recovered.findLast((e) => e.channel === m.channel);
                if (r) {
                    if (m.epoch === r.epoch && m.offset <= r.offset) r.replayed++;
                    else rec.liveAfterRecovery++;
                }
            });
            for (const ch of rec.channels) c.subscribe(ch);
            recs.push(rec);
        }
        // Subscribed: each client knows where both its channels stand.
        await waitFor(() => recs.every((r) => r.c.state === 'open' && r.channels.every((ch) => r.c.position(ch))),
            { timeout: 20000, interval: 50, message: `${CLIENTS} clients open and subscribed` });
        for (const r of recs) for (const ch of r.channels) r.start.set(ch, r.c.position(ch));
        const subscribedMs = Date.now() - t0;
        const spread = {};
        for (const r of recs) spread[r.sids[0].split('-')[0]] = (spread[r.sids[0].split('-')[0]] || 0) + 1;
        for (const n of cluster.nodes) {
            assert.ok((spread[n.id] || 0) >= CLIENTS / NODES / 2, `sessions spread over the nodes: ${JSON.stringify(spread)}`);
        }

        // ---- publishing: one channel's publishes one after the other, channels side by side
        const accepted = new Map(); // ch → [{seq, epoch, offset, node}]
        const uncertain = new Map(); // ch → Set of seqs whose publish to the dead node failed
        const nextSeq = new Map();
        for (let k = 0; k < CHANNELS; k++) {
            accepted.set(channelName(k), []);
            uncertain.set(channelName(k), new Set());
            nextSeq.set(channelName(k), 1);
        }
        let rr = 0;
        let killed = false;
        const failures = [];
        async function publish(ch) {
            const seq = nextSeq.get(ch);
            nextSeq.set(ch, seq + 1);
            const node = cluster.nodes[rr++ % NODES];
            let failure;
            try {
                const res = await fetch(`${node.internalUrl}/publish/${ch}`, {
                    method: 'POST', body: JSON.stringify({ seq }), signal: AbortSignal.timeout(5000),
                });
                const text = await res.text();
                if (res.status === 200) {
                    const a = JSON.parse(text);
                    accepted.get(ch).push({ seq, epoch: a.epoch, offset: a.offset, node: node.id });
                    return;
                }
                failure = `HTTP ${res.status} ${text}`;
            } catch (e) {
                failure = `${e.message}${e.cause ? `: ${e.cause.message || e.cause.code}` : ''}`;
            }
            failures.push({ ch, seq, node: node.id, failure });
            if (!(killed && node.id === DEAD)) throw new Error(`publish ${ch} #${seq} to ${node.id} failed: ${failure}`);
            uncertain.get(ch).add(seq);
        }
        const lastOffset = (ch) => { const a = accepted.get(ch); return a.length ? a[a.length - 1].offset : 0; };
        const allDelivered = () => recs.every((r) => r.channels.every((ch) => {
            const g = r.got.get(ch);
            return g.length && g[g.length - 1].offset >= lastOffset(ch);
        }));

        /** Every client has each of its channels whole: every offset after its start, once, in order. */
        function checkDelivery(phase) {
            for (const [ch, list] of accepted) {
                for (let j = 1; j < list.length; j++) {
                    assert.equal(list[j].epoch, list[0].epoch, `${ch}: one epoch`);
                    assert.ok(list[j].offset > list[j - 1].offset, `${ch}: offsets follow seqs`);
                }
            }
            for (const r of recs) {
                for (const ch of r.channels) {
                    const list = accepted.get(ch);
                    const bySeqAt = new Map(list.map((a) => [a.offset, a.seq]));
                    const start = r.start.get(ch);
                    assert.equal(start.epoch, list[0].epoch, `client ${r.i} ${ch}: subscribed in the channel's epoch`);
                    const got = r.got.get(ch);
                    const want = lastOffset(ch) - start.offset;
                    const where = `${phase}: client ${r.i} (${r.sids.join(' → ')}) ${ch}`;
                    assert.equal(got.length, want, `${where}: ${got.length} messages, ${want} expected; ` +
                        `got offsets ${got.map((m) => m.offset).join(',')}`);
                    for (let j = 0; j < got.length; j++) {
                        const m = got[j];
                        assert.equal(m.epoch, start.epoch, `${where}: epoch`);
                        assert.equal(m.offset, start.offset + 1 + j, `${where}: message ${j} at offset ${m.offset}`);
                        const seq = bySeqAt.get(m.offset);
                        if (seq !== undefined) assert.equal(m.seq, seq, `${where}: offset ${m.offset} is seq ${seq}`);
                        else assert.ok(uncertain.get(ch).has(m.seq), `${where}: seq ${m.seq} at ${m.offset} was never published`);
                        if (j) assert.ok(m.seq > got[j - 1].seq, `${where}: in order`);
                    }
                }
            }
        }

        // No publish key: publishing is not served through nginx (the public port), though
        // nginx and the nodes are all on 127.0.0.1; only the nodes' internal doors take it.
        for (let j = 0; j < NODES; j++) {
            const res = await fetch(`${cluster.url}/publish/${channelName(0)}`, {
                method: 'POST', body: JSON.stringify({ seq: 0 }), signal: AbortSignal.timeout(5000),
            });
            assert.equal(res.status, 404, `POST /publish through nginx: ${res.status} ${await res.text()}`);
        }

        // ---- phase 1: every node publishes, every client gets everything
        await Promise.all([...accepted.keys()].map(async (ch) => {
            for (let j = 0; j < FIRST; j++) await publish(ch);
        }));
        await waitFor(allDelivered, { timeout: 15000, interval: 20, message: 'phase 1 delivered to every client' });
        checkDelivery('phase 1');
        const phase1Ms = Date.now() - t0;

        // ---- phase 2: a stream; the node dies in its middle
        const victim = nodeById.get(DEAD);
        let victims = null;
        let streamed = 0;
        let killedAt = 0;
        let recoveredAt = 0;
        const stopAt = new Map(); // ch → the seq to stop before
        const recoveryDone = () => victims && victims.every((r) =>
            r.channels.every((ch) => r.recovered.some((e) => e.channel === ch)));
        const stream = Promise.all([...accepted.keys()].map(async (ch) => {
            const deadline = Date.now() + 40000;
            while (!(stopAt.has(ch) && nextSeq.get(ch) >= stopAt.get(ch))) {
                if (Date.now() > deadline) throw new Error(`the stream of ${ch} ran out of time (recovery not done)`);
                await publish(ch);
                if (++streamed === KILL_AFTER) {
                    victims = recs.filter((r) => r.c.session && r.c.session.sid.startsWith(`${DEAD}-`));
                    assert.ok(recs.every((r) => r.c.state === 'open'), 'every client open before the kill');
                    killed = true;
                    killedAt = Date.now();
                    process.kill(victim.process.pid, 'SIGKILL');
                }
                if (victims && !recoveredAt && recoveryDone()) {
                    recoveredAt = Date.now();
                    for (const [c, s] of nextSeq) stopAt.set(c, s + AFTER_RECOVERY);
                }
                await new Promise((r) => setTimeout(r, STREAM_PAUSE_MS));
            }
        }));
        // A stream that fails stops the others at once (their loops see stopAt).
        stream.catch(() => { for (const [c, s] of nextSeq) stopAt.set(c, s); });
        await stream;
        assert.deepEqual(await victim.exited, { code: null, signal: 'SIGKILL' });
        await waitFor(allDelivered, { timeout: 20000, interval: 20, message: 'phase 2 delivered to every client' });
        checkDelivery('phase 2');
        const phase2Ms = Date.now() - t0;

        // The dead node's clients: item-not-found once, a new session elsewhere, both channels
        // recovered (true) from their positions, the replayed messages counted.
        assert.ok(victims.length >= CLIENTS / NODES / 2, `${victims.length} clients on ${DEAD}`);
        const victimSet = new Set(victims);
        let fromHistory = 0;
        let liveAfter = 0;
        for (const r of recs) {
            const where = `client ${r.i} (${r.sids.join(' → ')})`;
            if (!victimSet.has(r)) {
                assert.equal(r.sids.length, 1, `${where}: one session`);
                assert.deepEqual(r.closes, [], `${where}: never closed`);
                assert.deepEqual(r.recovered, [], `${where}: nothing to recover`);
                continue;
            }
            assert.equal(r.sids.length, 2, `${where}: a second session`);
            assert.ok(!r.sids[1].startsWith(`${DEAD}-`), `${where}: the new session is on a live node`);
            assert.equal(r.closes.length, 1, `${where}: closed once: ${JSON.stringify(r.closes)}`);
            const { at, ...close } = r.closes[0];
            assert.deepEqual(close, { condition: 'item-not-found', reason: 'HTTP 404', reconnecting: true }, where);
            assert.equal(r.recovered.length, 2, `${where}: ${JSON.stringify(r.recovered)}`);
            for (const e of r.recovered) {
                assert.ok(r.channels.includes(e.channel), `${where}: ${e.channel}`);
                assert.equal(e.recovered, true, `${where}: ${e.channel} recovered: ${JSON.stringify(e)}`);
                assert.ok(e.before, `${where}: a position before the recovery of ${e.channel}`);
                assert.equal(e.epoch, e.before.epoch, `${where}: ${e.channel} same epoch`);
                // The notice says where the stream stands once the replay is in: what came from
                // the history is exactly what lies between the client's position and there.
                assert.equal(e.replayed, e.offset - e.before.offset,
                    `${where}: ${e.channel}: ${e.replayed} replayed, notice ${e.offset}, position ${e.before.offset}`);
                fromHistory += e.replayed;
            }
            liveAfter += r.liveAfterRecovery;
        }
        assert.ok(fromHistory > 0, 'some messages were recovered from the history');
        assert.ok(liveAfter > 0, 'live messages after the recovery');
        for (const f of failures) {
            assert.equal(f.node, DEAD, `only publishes to the dead node fail: ${JSON.stringify(f)}`);
        }

        // The live nodes' own count of messages recovered from the history.
        let serverRecovered = 0;
        for (const n of cluster.nodes) {
            if (n.id === DEAD) continue;
            const text = await (await fetch(`${n.url}/metrics`)).text();
            const m = /^megaphone_bus_recovered_messages_total(?:\{[^}]*\})? (\d+)/m.exec(text);
            if (m) serverRecovered += Number(m[1]);
        }

        const total = (list) => list.reduce((s, r) => s + [...r.got.values()].reduce((a, g) => a + g.length, 0), 0);
        const figures = {
            clients: CLIENTS, nodes: NODES, channels: CHANNELS, spread,
            publishes: { accepted: [...accepted.values()].reduce((s, l) => s + l.length, 0), failedOnDeadNode: failures.length,
                uncertainDelivered: recs.reduce((s, r) => s + r.channels.reduce((a, ch) =>
                    a + r.got.get(ch).filter((m) => uncertain.get(ch).has(m.seq)).length, 0), 0) },
            messagesDelivered: total(recs),
            deadNodeClients: victims.length,
            recoveredEvents: victims.length * 2,
            recoveredFromHistory: fromHistory,
            liveAfterRecoveryOnThoseClients: liveAfter,
            serverRecoveredMessagesMetric: serverRecovered,
            recoveryMs: recoveredAt - killedAt,
            deadNodeClientsClosedMsAfterKill: (() => {
                const ms = victims.map((r) => r.closes[0].at - killedAt).sort((a, b) => a - b);
                return { min: ms[0], median: ms[ms.length >> 1], max: ms[ms.length - 1] };
            })(),
            deadNodeClientErrorEvents: victims.reduce((s, r) => s + r.errors, 0),
            sampleError: recs.find((r) => r.lastError)?.lastError,
            clientErrorEvents: recs.reduce((s, r) => s + r.errors, 0),
            ms: { setup: setupMs, subscribed: subscribedMs, phase1: phase1Ms, phase2: phase2Ms },
        };
        t.diagnostic(`cluster figures: ${JSON.stringify(figures)}`);
        console.log(`cluster figures: ${JSON.stringify(figures)}`);
    } catch (e) {
        if (cluster.nginxLog) console.log(`nginx error.log (tail):\n${cluster.nginxLog().split('\n').slice(-30).join('\n')}`);
        for (const n of cluster.nodes) console.log(`${n.id} stderr (tail):\n${n.output().stderr.split('\n').slice(-15).join('\n')}`);
        throw e;
    } finally {
        for (const r of recs) r.c._destroy();
        await stopCluster(cluster);
        rmSync(work, { recursive: true, force: true });
    }
});
