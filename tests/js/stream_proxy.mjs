// A TCP proxy for the upgrade tests (tests/js/upgrade.test.mjs, websocket-upgrade.test.mjs): it
// passes every connection to the server byte for byte, and can misbehave on the connections that
// carry a stream: a Server-Sent Events stream (a request `GET .../events?...`) or a WebSocket (a
// `GET ...?sid=...` with `Upgrade: websocket`). A keep-alive connection that carried long-polls
// may carry a stream later, so every request is looked at.
//
//   proxy.cutStreams()   destroys every stream connection now, both sides (a dead network path);
//   proxy.mode = 'swallow'  a stream's head and its `ready` (the SSE event, or the WebSocket's
//                        first frame) pass, then nothing more of it (no message, no ping, no
//                        answer): a proxy that buffers after the first bytes, or a half-open
//                        connection. The server sees nothing wrong. Set on a flowing stream, it
//                        swallows from then on.
//   proxy.mode = 'swallow-after-101'  a WebSocket's 101 head passes, then none of its frames
//                        (SSE streams: as 'swallow').
//   proxy.mode = 'pass'  (the default) streams pass too.
//   proxy.refuseUpgrades = true  a WebSocket upgrade is answered `400` by the proxy itself (a
//                        proxy that does not pass WebSockets); SSE and long-polls still pass.
//   proxy.closeUpgrades = CODE  a WebSocket upgrade is accepted by the proxy itself (101,
//                        subprotocol megaphone) and closed at once with CODE (e.g. 4404).
//   proxy.beforeUpgrade = async (head) => {...}  the next WebSocket upgrade waits for it (the
//                        hook is taken: once), then goes to the server as it came.
//   proxy.holdAnswers = true  what the server sends on connections that carry no stream (the
//                        answers of long-polls and POSTs) waits in the proxy until
//                        proxy.releaseAnswers(), in order.
//
//   const proxy = await startStreamProxy(server.port);
//   proxy.url, proxy.streams (open stream connections), await proxy.close()
import net from 'node:net';
import { createHash } from 'node:crypto';

const READY_EVENT = 'event: ready\n';

/** The length of the first whole WebSocket frame (server → client, unmasked) at `buf`, or -1. */
function frameLength(buf) {
    if (buf.length < 2) return -1;
    let len = buf[1] & 0x7f;
    let at = 2;
    if (len === 126) {
        if (buf.length < 4) return -1;
        len = buf.readUInt16BE(2);
        at = 4;
    } else if (len === 127) {
        if (buf.length < 10) return -1;
        len = Number(buf.readBigUInt64BE(2));
        at = 10;
    }
    if (buf[1] & 0x80) at += 4;
    return buf.length >= at + len ? at + len : -1;
}

export function startStreamProxy(targetPort, { mode = 'pass' } = {}) {
    const sockets = new Set();
    const streams = new Set(); // [client, upstream] pairs carrying a stream
    const held = []; // [client, chunk] waiting while holdAnswers
    const proxy = {
        mode,
        url: null,
        port: 0,
        streamsOpened: 0,
        websocketsOpened: 0,
        refuseUpgrades: false,
        beforeUpgrade: null,
        holdAnswers: false,
        closeUpgrades: 0,
        get streams() {
            return streams.size;
        },
        releaseAnswers() {
            proxy.holdAnswers = false;
            for (const [to, chunk] of held.splice(0)) if (!to.destroyed) to.write(chunk);
        },
        cutStreams() {
            for (const pair of [...streams]) {
                streams.delete(pair);
                for (const s of pair) s.destroy();
            }
        },
        close() {
            for (const s of sockets) s.destroy();
            return new Promise((resolve) => server.close(() => resolve()));
        },
    };

    const server = net.createServer((client) => {
        const upstream = net.connect({ host: '127.0.0.1', port: targetPort });
        const pair = [client, upstream];
        sockets.add(client);
        sockets.add(upstream);
        let stream = false;   // this connection carries a stream now
        let websocket = false; // ... and the stream is a WebSocket
        let headAt = -1;      // the offset in the stream just past the HTTP head, once seen
        let readyAt = -1;     // the offset in the stream just past its ready event, once seen
        let seen = Buffer.alloc(0); // a stream's first bytes, until its ready event has gone by
        let offset = 0;       // the stream's bytes so far

        client.on('data', (chunk) => {
            if (!stream) {
                const head = chunk.toString('latin1', 0, Math.min(chunk.length, 2048));
                const upgrade = /^GET [^ ]*\?[^ ]*sid=/.test(head) && /\r\nupgrade:\s*websocket/i.test(head);
                if (upgrade && proxy.closeUpgrades) {
                    const key = /\r\nsec-websocket-key:\s*([^\r]+)/i.exec(head);
                    const accept = createHash('sha1').update(`${key ? key[1].trim() : ''}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
                    const reason = Buffer.from(proxy.closeUpgrades === 4404 ? 'item-not-found' : 'closed');
                    const close = Buffer.alloc(4 + reason.length);
                    close[0] = 0x88; // FIN + close
                    close[1] = 2 + reason.length;
                    close.writeUInt16BE(proxy.closeUpgrades, 2);
                    reason.copy(close, 4);
                    client.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
                        `Sec-WebSocket-Accept: ${accept}\r\nSec-WebSocket-Protocol: megaphone\r\n\r\n`);
                    client.end(close);
                    upstream.destroy();
                    return undefined;
                }
                if (upgrade && proxy.refuseUpgrades) {
                    client.end('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
                    upstream.destroy();
                    return undefined;
                }
                if (/^GET [^ ]*\/events\?/.test(head) || upgrade) {
                    stream = true;
                    websocket = upgrade;
                    headAt = -1;
                    readyAt = -1;
                    seen = Buffer.alloc(0);
                    offset = 0;
                    streams.add(pair);
                    proxy.streamsOpened += 1;
                    if (upgrade) proxy.websocketsOpened += 1;
                }
                if (upgrade && proxy.beforeUpgrade) {
                    const hook = proxy.beforeUpgrade;
                    proxy.beforeUpgrade = null;
                    client.pause();
                    return hook(head).finally(() => {
                        upstream.write(chunk);
                        client.resume();
                    });
                }
            }
            return upstream.write(chunk);
        });
        upstream.on('data', (chunk) => {
            if (!stream) {
                if (proxy.holdAnswers) return held.push([client, chunk]);
                return client.write(chunk);
            }
            const start = offset;
            offset += chunk.length;
            if (readyAt < 0) {
                seen = Buffer.concat([seen, chunk]);
                if (websocket) {
                    if (headAt < 0) {
                        const end = seen.indexOf('\r\n\r\n');
                        if (end >= 0) headAt = end + 4;
                    }
                    if (headAt >= 0) {
                        const n = frameLength(seen.subarray(headAt));
                        if (n >= 0) readyAt = headAt + n;
                    }
                } else {
                    const text = seen.toString('latin1');
                    const at = text.indexOf(READY_EVENT);
                    const end = at < 0 ? -1 : text.indexOf('\n\n', at);
                    if (end >= 0) readyAt = end + 2;
                }
                if (readyAt >= 0) seen = Buffer.alloc(0);
            }
            // Where swallowing starts: after the ready event (or first frame), or after the 101.
            const cut = proxy.mode === 'swallow-after-101' && websocket ? headAt : readyAt;
            if (proxy.mode === 'pass' || cut < 0) return client.write(chunk);
            if (cut > start) return client.write(chunk.subarray(0, cut - start));
            return undefined;
        });
        const finish = () => {
            streams.delete(pair);
            sockets.delete(client);
            sockets.delete(upstream);
            client.destroy();
            upstream.destroy();
        };
        for (const s of pair) {
            s.on('error', finish);
            s.on('close', finish);
        }
    });

    return new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(0, '127.0.0.1', () => {
            proxy.port = server.address().port;
            proxy.url = `http://127.0.0.1:${proxy.port}`;
            resolve(proxy);
        });
    });
}
