// A TCP proxy for the upgrade tests (tests/js/upgrade.test.mjs): it passes every connection to
// the server byte for byte, and can misbehave on the connections that carry a Server-Sent Events
// stream (a request `GET .../events?...`; a keep-alive connection that carried long-polls may
// carry a stream later, so every request is looked at):
//
//   proxy.cutStreams()   destroys every stream connection now, both sides (a dead network path);
//   proxy.mode = 'swallow'  a stream's head and its `ready` event pass, then nothing more of it
//                        (no message, no ping): a proxy that buffers after the first bytes, or a
//                        half-open connection. The server sees nothing wrong. Set on a flowing
//                        stream, it swallows from then on.
//   proxy.mode = 'pass'  (the default) streams pass too.
//
//   const proxy = await startStreamProxy(server.port);
//   proxy.url, proxy.streams (open stream connections), await proxy.close()
import net from 'node:net';

const READY_EVENT = 'event: ready\n';

export function startStreamProxy(targetPort, { mode = 'pass' } = {}) {
    const sockets = new Set();
    const streams = new Set(); // [client, upstream] pairs carrying a stream
    const proxy = {
        mode,
        url: null,
        port: 0,
        streamsOpened: 0,
        get streams() {
            return streams.size;
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
        let readyAt = -1;     // the offset in the stream just past its ready event, once seen
        let seen = '';        // a stream's first bytes, until its ready event has gone by
        let offset = 0;       // the stream's bytes so far

        client.on('data', (chunk) => {
            const head = chunk.toString('latin1', 0, Math.min(chunk.length, 512));
            if (/^GET [^ ]*\/events\?/.test(head)) {
                stream = true;
                readyAt = -1;
                seen = '';
                offset = 0;
                streams.add(pair);
                proxy.streamsOpened += 1;
            }
            upstream.write(chunk);
        });
        upstream.on('data', (chunk) => {
            if (!stream) return client.write(chunk);
            const start = offset;
            offset += chunk.length;
            if (readyAt < 0) {
                seen += chunk.toString('latin1');
                const at = seen.indexOf(READY_EVENT);
                const end = at < 0 ? -1 : seen.indexOf('\n\n', at);
                if (end >= 0) {
                    readyAt = end + 2;
                    seen = '';
                }
            }
            if (proxy.mode !== 'swallow' || readyAt < 0) return client.write(chunk);
            // Swallowing: the head and the ready event pass, nothing after them.
            if (readyAt > start) return client.write(chunk.subarray(0, readyAt - start));
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
