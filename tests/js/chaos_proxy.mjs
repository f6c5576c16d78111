// A TCP proxy for the chaos test that breaks a seeded share of the connections through it.
//
//   const proxy = await startChaosProxy({ port: serverPort, seed: 42, killRate: 0.2 });
//   proxy.url      // 'http://127.0.0.1:PORT': point the clients here
//   proxy.stats    // {connections, doomed, killed, kills: {midRequest, awaitingResponse, midResponse, idle}}
//   await proxy.close();
//
// Each accepted connection draws from a PRNG seeded with (seed, connection number) whether it is
// doomed (probability killRate) and, if so, where it dies: part way through its k-th request
// (the server sees a truncated request), after its k-th request reached the server and before
// any of the answer came back (the server is holding it), or part way through the k-th answer
// (the client gets a truncated response). k is 1..3. A doomed connection that carries a
// Server-Sent Events stream (a `GET .../events?` request: its answer has no length and flows on)
// is killed 50 to 750 ms after that request instead, with messages on the wire ('midStream').
// A connection that asks for a WebSocket (`GET ...?sid=...` with `Upgrade: websocket`) is passed
// on byte for byte from then on (no HTTP framing: frames both ways); a doomed one is killed 50
// to 750 ms after its upgrade request, with frames on the wire in both directions ('midSocket').
// A kill tears both sides down, half of them
// with a TCP reset and half with a plain close. The proxy frames HTTP/1.1 messages by
// Content-Length (Megaphone and fetch always send it) to know where a message starts and ends.
import net from 'node:net';

/** mulberry32: a small, good-enough seeded PRNG returning floats in [0, 1). */
export function prng(seed) {
    let a = seed >>> 0;
    return () => {
        a = (a + 0x6d2b79f5) >>> 0;
        let t = a;
        t = Math.imul(t ^ (t >>> 15), t | 1);
        t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
        return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
}

/** Mixes two integers into a 32-bit seed. */
function mix(a, b) {
    let h = Math.imul((a >>> 0) ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul((b >>> 0) + 0x165667b1, 0xc2b2ae35);
    h ^= h >>> 16;
    h = Math.imul(h, 0x7feb352d);
    h ^= h >>> 15;
    return h >>> 0;
}

/**
 * Tracks HTTP/1.1 message boundaries in one direction of a byte stream. After feed(chunk):
 * `index` is the number of the message in progress (1-based; 0 before the first byte),
 * `inMessage` whether some but not all of its bytes have gone by, `done` how many are complete.
 * messageEnd(k) is the stream offset just past message k once its length is known, else null;
 * messageStart(k) is its first byte's offset once seen.
 */
class Framer {
    constructor() {
        this.pos = 0;          // bytes seen
        this.index = 0;        // current message number
        this.done = 0;         // complete messages
        this.head = '';        // header bytes of the current message, until complete
        this.bodyLeft = 0;     // body bytes still to come of the current message
        this.inHead = false;
        this.starts = new Map(); // message number → first byte offset
        this.ends = new Map();   // message number → offset just past it
        this.closing = null;     // the first message that says `Connection: close`: the last one
    }

    get inMessage() {
        return this.index > this.done;
    }

    messageStart(k) {
        return this.starts.has(k) ? this.starts.get(k) : null;
    }

    messageEnd(k) {
        return this.ends.has(k) ? this.ends.get(k) : null;
    }

    feed(chunk) {
        let i = 0;
        while (i < chunk.length) {
            if (!this.inMessage) {
                // A new message starts here.
                this.index++;
                this.starts.set(this.index, this.pos + i);
                this.inHead = true;
                this.head = '';
            }
            if (this.inHead) {
                // Scan for the end of the header block.
                const rest = chunk.subarray(i).toString('latin1');
                const before = this.head.length;
                this.head += rest;
                const end = this.head.indexOf('\r\n\r\n');
                if (end < 0) {
                    i = chunk.length;
                    break;
                }
                const headLen = end + 4;
                i += headLen - before;
                const m = /\r\ncontent-length:\s*(\d+)/i.exec(this.head.slice(0, headLen));
                if (this.closing === null && /\r\nconnection:\s*close/i.test(this.head.slice(0, headLen)))
                    this.closing = this.index;
                this.bodyLeft = m ? Number(m[1]) : 0;
                this.inHead = false;
                this.head = '';
                this.ends.set(this.index, this.pos + i + this.bodyLeft);
            }
            const take = Math.min(this.bodyLeft, chunk.length - i);
            i += take;
            this.bodyLeft -= take;
            if (this.bodyLeft === 0 && !this.inHead) this.done = this.index;
        }
        this.pos += chunk.length;
    }
}

/** Starts the proxy on 127.0.0.1 (a free port) in front of 127.0.0.1:`port`. */
export function startChaosProxy({ port, seed = 1, killRate = 0.2, host = '127.0.0.1' }) {
    const stats = {
        connections: 0,
        requests: 0,
        doomed: 0,
        killed: 0,
        kills: { midRequest: 0, awaitingResponse: 0, midResponse: 0, midStream: 0, midSocket: 0, idle: 0 },
        streams: 0,
        websockets: 0,
        resets: 0,
    };
    const live = new Set();

    const server = net.createServer({ noDelay: true }, (client) => {
        const number = ++stats.connections;
        const rng = prng(mix(seed, number));
        const doomed = rng() < killRate;
        const modes = ['midRequest', 'awaitingResponse', 'midResponse'];
        const plan = doomed
            ? { mode: modes[Math.floor(rng() * 3)], k: 1 + Math.floor(rng() * 3), fraction: rng(), delay: Math.floor(rng() * 30), reset: rng() < 0.5 }
            : null;
        if (doomed) stats.doomed++;

        const upstream = net.connect({ port, host, noDelay: true });
        const requests = new Framer();  // client → server
        const responses = new Framer(); // server → client
        const conn = { client, upstream, requests, dead: false, cutting: false, timer: null };
        live.add(conn);

        const finish = () => {
            if (conn.timer) clearTimeout(conn.timer);
            if (conn.streamTimer) clearTimeout(conn.streamTimer);
            live.delete(conn);
        };

        /** Tears both sides down; `where` is the cut's kind, or computed from the framers. */
        const kill = (where) => {
            if (conn.dead) return;
            conn.dead = true;
            stats.killed++;
            if (!where) {
                if (responses.inMessage) where = 'midResponse';
                else if (requests.inMessage) where = 'midRequest';
                else if (requests.done > responses.done) where = 'awaitingResponse';
                else where = 'idle';
            }
            stats.kills[where]++;
            if (plan.reset) {
                stats.resets++;
                client.resetAndDestroy();
                upstream.resetAndDestroy();
            } else {
                client.destroy();
                upstream.destroy();
            }
            finish();
        };

        /**
         * Forwards `chunk` to `to` through this direction's framer, or, when `cutAt()` (the stream
         * offset at which this direction must die, null while unknown) falls inside what has
         * been seen, only the bytes before it, and then kills the connection.
         */
        const forward = (chunk, framer, to, cutAt) => {
            if (conn.dead || conn.cutting) return;
            const base = framer.pos;
            framer.feed(chunk);
            const cut = cutAt();
            if (cut !== null && cut < framer.pos) {
                conn.cutting = true;
                const keep = Math.max(0, cut - base);
                if (keep > 0) to.write(chunk.subarray(0, keep));
                // Let the partial bytes go out before the kill.
                setImmediate(() => kill(plan.mode));
                return;
            }
            to.write(chunk);
        };

        // The k-th exchange, or the connection's last one if it says it has fewer.
        const target = () => Math.min(plan.k, requests.closing ?? Infinity, responses.closing ?? Infinity);

        const partialCut = (framer) => {
            // A cut strictly inside message k: after 1 .. len-1 of its bytes.
            const k = target();
            const start = framer.messageStart(k);
            const end = framer.messageEnd(k);
            if (start === null || end === null) return null;
            const len = end - start;
            if (len < 2) return null;
            return start + 1 + Math.floor(plan.fraction * (len - 1));
        };

        client.on('data', (chunk) => {
            if (conn.raw) {
                if (!conn.dead) upstream.write(chunk);
                return;
            }
            const head = chunk.toString('latin1', 0, Math.min(chunk.length, 2048));
            if (/^GET [^ ]*\?[^ ]*sid=/.test(head) && /\r\nupgrade:\s*websocket/i.test(head)) {
                // A WebSocket: bytes pass as they are from now on, both ways.
                conn.raw = true;
                stats.websockets++;
                if (plan && !conn.dead) {
                    plan.mode = 'midSocket';
                    conn.streamTimer = setTimeout(() => kill('midSocket'), 50 + Math.floor(rng() * 700));
                }
                if (!conn.dead) upstream.write(chunk);
                return;
            }
            if (/^GET [^ ]*\/events\?/.test(head)) {
                stats.streams++;
                if (plan && !conn.streamTimer && !conn.dead) {
                    // A doomed stream dies while it flows (its plan for requests is dropped).
                    plan.mode = 'midStream';
                    conn.streamTimer = setTimeout(() => kill('midStream'), 50 + Math.floor(rng() * 700));
                }
            }
            const before = requests.index;
            forward(chunk, requests, upstream,
                () => (plan && plan.mode === 'midRequest' ? partialCut(requests) : null));
            stats.requests += requests.index - before;
            if (plan && plan.mode === 'awaitingResponse' && !conn.timer && !conn.cutting &&
                requests.done >= target()) {
                conn.timer = setTimeout(() => kill(), plan.delay);
            }
        });
        upstream.on('data', (chunk) => {
            if (conn.raw) {
                if (!conn.dead) client.write(chunk);
                return;
            }
            forward(chunk, responses, client,
                () => (plan && plan.mode === 'midResponse' ? partialCut(responses) : null));
        });
        // Half-closes pass through; errors and closes end both sides.
        client.on('end', () => { if (!conn.dead) upstream.end(); });
        upstream.on('end', () => { if (!conn.dead) client.end(); });
        for (const s of [client, upstream]) {
            s.on('error', () => { /* the other side hears of it through close */ });
            s.on('close', () => {
                if (conn.dead) return;
                conn.dead = true;
                client.destroy();
                upstream.destroy();
                finish();
            });
        }
    });

    return new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(0, '127.0.0.1', () => {
            const { port: own } = server.address();
            resolve({
                url: `http://127.0.0.1:${own}`,
                port: own,
                stats,
                close() {
                    for (const c of live) {
                        c.client.destroy();
                        c.upstream.destroy();
                    }
                    live.clear();
                    return new Promise((r) => server.close(() => r()));
                },
            });
        });
    });
}
