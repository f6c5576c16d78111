/**
 * megaphone.js — the browser (and Node ≥ 18) client of Megaphone's JSON long-poll transport.
 * A dependency-free ES module; the server serves it at /megaphone.js. Wire protocol: docs/PROTOCOL.md.
 *
 *   import { connect } from '/megaphone.js';
 *
 *   const client = connect('/comet', { wait: 30 });
 *   client.on('open', (session) => console.log('session', session.sid));
 *   client.on('message', (message) => console.log('got', message));
 *   client.on('close', (info) => console.log('closed:', info.condition));
 *   client.subscribe('news');
 *   client.publish('news', { hello: 'world' });
 *
 * connect(url, options) → client
 *   url      the endpoint: a path ('/comet', '/chat') resolved against the page, or an absolute URL.
 *   options  (all optional)
 *     wait       longest time (s) the server may hold a request; default 30 (the server caps it).
 *     hold       how many requests the server may hold; default 1; 0 asks for a polling session.
 *     reconnect  default true: when the session ends (terminate, item-not-found, …) emit 'close',
 *                then open a fresh session and subscribe again to the channels it had subscribed.
 *     backoff    {initial: 250, max: 5000}: delays (ms) between retries of a failed request and
 *                between reconnects; doubled on each consecutive failure.
 *     fetch      the fetch function to use; default globalThis.fetch (inject one to test or proxy).
 *     headers    extra request headers for every request, e.g. a credential
 *                ({'X-Megaphone-Token': t}, as the /admin dashboard does): a secret belongs in a
 *                header, never in `url` (URLs end up in logs and browser history). With headers,
 *                the terminate sent when the page goes away uses fetch with keepalive rather than
 *                navigator.sendBeacon, which cannot carry them. (Cross-origin, they make each
 *                request need a CORS preflight.)
 *     timeout    extra time (ms) past `wait` before a request is given up and sent again;
 *                default 10000.
 *     closeOnUnload  default true in browsers: terminate the session when the page goes away.
 *     routeByNode    default false: once a session is open, send its requests to `url` + '/' +
 *                the session's node (the sid's prefix, e.g. /comet/n2), so that a balancer in
 *                front of a cluster routes them straight to the node that owns the session
 *                (examples/cluster/nginx.conf.in); creations still go to `url`.
 *     token      a client token (JWT) for a server that checks them (--token-secret…): sent as
 *                `token` in every session creation (also re-creations after reconnects).
 *     getToken   async () => token: called for a fresh token (a) `refreshBefore` ms before the
 *                current token's `exp` (read from its payload, not verified here): the new token
 *                goes as a top-level `token` on the next request (a refresh of the same session);
 *                (b) when the server answers not-authorized (HTTP 401): a new session is created
 *                with the new token, resuming its channels as a reconnect does. Called before the
 *                first creation too if no `token` is given. Without getToken, not-authorized ends
 *                the client: 'close' with condition 'not-authorized', no reconnect.
 *     refreshBefore  ms before the token's `exp` to call getToken; default 60000 (at once if the
 *                token is already that close to its end).
 *     transports  the transports to use, in order of preference: default
 *                ['long-poll', 'websocket', 'sse'] (['long-poll'] when `headers` is given: neither
 *                a browser's WebSocket nor an EventSource can send headers). A session always
 *                opens with a long-poll (it works everywhere) and falls back to it; the streaming
 *                transports in the list ('websocket', 'sse') are probed on the same session once
 *                it is open, in their order (see "Upgrade" below).
 *     WebSocket  the WebSocket constructor for 'websocket'; default globalThis.WebSocket (in Node,
 *                pass npm `ws`'s). Without one, 'websocket' is skipped.
 *     EventSource the EventSource constructor for 'sse'; default globalThis.EventSource (in Node,
 *                pass npm `eventsource`'s). Without one, 'sse' is skipped.
 *     probeTimeout  ms a probed stream has to show it flows (its `ready` event) before the client
 *                gives it up and stays on long-polling; default 5000.
 *     upgradeRetry  ms after a failed probe or a lost stream before the next probe; default 10000.
 *
 * client.on(event, fn) / client.off(event, fn)   (on returns the client, so calls chain)
 *   'open'     fn(session): a session opened; session = {sid, wait, hold, requests, inactivity,
 *              polling}. Fires again, with a new sid, after each reconnect.
 *   'message'  fn(message): each message the server sent, exactly once and in order.
 *   'close'    fn({condition, reason, reconnecting}): the session ended. condition is the server's
 *              ('item-not-found', 'system-shutdown', 'policy-violation', …), or 'closed' after
 *              client.close(). reconnecting tells whether a fresh session is being opened.
 *   'forbidden' fn({channel}): the server refused a subscribe or publish on `channel` (the
 *              token does not allow it; pushed as {"error": "forbidden", "channel": C}, not given
 *              to 'message'). The session goes on. A refused subscription (one with no position
 *              yet) is forgotten, so that reconnects do not ask for it again.
 *   'token'    fn(token): getToken gave a new token (now the client's token).
 *   'error'    fn(error): a request failed and will be retried (network error, 5xx, timeout), or
 *              the server answered something that is not the protocol, or getToken failed.
 *              Informational.
 *   'transport' fn({transport, previous, reason}): the client switched transport ('long-poll',
 *              'websocket' or 'sse'; client.transport tells the current one). Informational: messages go on
 *              exactly once and in order across a switch.
 *   'debug'    fn({type, transport, reason}): a probe started ('probe') or failed ('probe-failed':
 *              no `ready` within probeTimeout, refused, cut). Never reported as 'error'. A
 *              WebSocket closed 4409 (another socket or tab took the session) is told as a
 *              switch back to 'long-poll', not as an error; no more probes on that session.
 *   'recovered' fn({channel, recovered, epoch, offset}): a new session (after a reconnect: the old
 *              one expired, its server died or restarted) has resumed `channel` from the last
 *              message received on it. recovered true: every message published meanwhile follows
 *              (as 'message' events, in order, none twice); false: the server's history no longer
 *              reaches back (or the channel's stream was reset): some messages were missed, and
 *              the app should reload its state. Live messages follow either way.
 *
 * Positions. Every message published to a channel carries the channel's `epoch` and `offset`
 * (docs/PROTOCOL.md, "Recovery"). The client keeps the last position per subscribed channel
 * (client.position(channel)), drops a message it has had already (same epoch, offset not past
 * the last), and gives the positions as the new session's `recover` cursor when it reconnects.
 *
 * client.send(message)             send any JSON value to the application (batched, in order).
 * client.subscribe(channel)        hub: {"subscribe": channel, "recover": {}} (asks for the
 *                                  channel's position too); remembered for reconnects.
 * client.unsubscribe(channel)      hub: {"unsubscribe": channel}.
 * client.position(channel)         {epoch, offset} of the last message received on the channel
 *                                  (or of the subscription), or undefined.
 * client.publish(channel, data)    hub: {"publish": channel, "data": data}.
 * client.close()                   send {"type": "terminate"} (with any queued messages first),
 *                                  then emit 'close' with condition 'closed'. No reconnect.
 * client.state                     'connecting' | 'open' | 'closing' | 'closed'
 * client.session                   the current session info (as given to 'open'), or null.
 * client.token                     the current token (options.token or getToken's last), or null.
 * client.transport                 'long-poll' | 'websocket' | 'sse': how the session's messages
 *                                  come now (on 'websocket', the client's requests go on it too).
 *
 * How it works. The session's creation request carries no messages (its answer may be lost, and
 * the copy sent again creates another session): they go in the first request with the sid.
 * One request is kept held by the server at all times (the poll loop); messages to
 * send go on a second request, so at most `requests` (= hold + 1) are outstanding, and messages
 * sent while no slot is free are batched into the next request. Each new request's rid is the
 * previous one + 1. Responses are processed strictly in rid order (an early one waits for the gap
 * to fill), each exactly once, and every request carries `ack`: the highest rid processed with all
 * lower ones. A request that fails on the network (fetch rejects, a 5xx answer, or no answer
 * within wait + 10 s) is sent again with the same rid and the same body, after a backoff: the
 * server answers a repeated rid with its cached response, so nothing is lost or duplicated. Only
 * the newest copy of a rid counts: answers to copies given up on, such as the
 * {"type":"error","condition":"replaced"} the server gives a copy a newer one replaced, are
 * ignored. If the copy we wait on is itself replaced (a copy we did not send, e.g. a proxy's,
 * took its place), the rid is sent again.
 * In a polling session (hold 0) empty requests are spaced by the session's `polling` interval.
 *
 * Upgrade (docs/PROTOCOL.md, "Upgrade"). Once a session is open, the first streaming transport
 * of `transports` is probed on the same sid, with `rid` = the latest rid sent (the fence) and
 * the last stream id received (a probe that fails is followed at once by one of the next
 * transport; after the last, the first again after upgradeRetry). From then on no request is kept held: requests (sends, acks) are
 * POSTed with `streaming: true` and answered at once, empty. The stream's messages are delivered
 * only after every answer up to the fence (a held request answered while switching carries what
 * came before the stream, and is delivered first, once). The client switches ('transport') when
 * the stream's `ready` event arrives; without it within probeTimeout, or when the stream errs,
 * ends, or shows no event (message, ready or ping) for 2 heartbeats + 2 s, the stream is closed
 * and long-polling resumes on the same session, each request carrying `stream_ack` = the last
 * stream id received: the server hands back, first, whatever the stream wrote after it. A new
 * probe follows after upgradeRetry. A stream that can carry requests (a WebSocket: its handle has
 * send(body)) carries them once it flows: each request's body, unchanged, as a frame, answered
 * by a frame with its rid; when the stream is given up, every request it has not answered goes
 * again by POST, the same rid and body (the server answers a processed rid from its cache), so
 * each is processed exactly once. A stream transport is one object of STREAM_TRANSPORTS
 * ({name, available(options), open(ctx, sink)}); the switching logic does not depend on which.
 */

const DEFAULTS = {
    wait: 30,
    hold: 1,
    reconnect: true,
    backoff: { initial: 250, max: 5000 },
    timeout: 10000,
    closeOnUnload: true,
    refreshBefore: 60000,
    probeTimeout: 5000,
    upgradeRetry: 10000,
};
// How many not-authorized answers in a row (no session opened between them) before giving up.
const MAX_AUTH_FAILURES = 3;
const MAX_TIMER = 2 ** 31 - 1;

const CONTENT_TYPE = 'text/plain;charset=UTF-8';
// The condition an error status stands for when its answer carries none (docs/PROTOCOL.md, Errors).
const STATUS_CONDITIONS = { 400: 'bad-request', 401: 'not-authorized', 403: 'policy-violation', 404: 'item-not-found', 413: 'policy-violation' };
const MAX_RID = 2 ** 53 - 1;
// A stream shows no event for 2 heartbeats + this: it is taken for dead (half-open, buffered).
const LIVENESS_MARGIN = 2000;
/** A flowing stream's acknowledgement (ms): what it received leaves the server's replay window. */
const STREAM_ACK_DELAY = 1000;

/**
 * Streaming transports, each one object of the same shape, so that the switching logic (Client:
 * _probe, _onStream*, _streamFailed) never names one:
 *   name                  as in the `transports` option and client.transport
 *   available(options)    whether it can run here with these options
 *   open(ctx, sink)       opens a stream; returns a handle {close(), send?(body)} (no sink call
 *                         after close()). send(body), for a transport that carries the client's
 *                         requests too, sends one request's JSON text and returns whether it went.
 *     ctx   {url, sid, rid, lastId, options}: the endpoint, the session, the fence (the latest
 *           rid sent), the last stream id received (0: none)
 *     sink  ready({heartbeat}) once the stream flows; message(id, data) per message, in order;
 *           ping() per heartbeat (or any sign of life); terminate(info) when the server ends
 *           the session on it; answer(rid, status, answer) per answer to a request sent with
 *           send() (status as HTTP's: 200, or an error's); error(reason) for a complaint that
 *           leaves it open; fail(reason, {retry}) when it errs or ends (then nothing more;
 *           retry false: no more streams for this session).
 */
const STREAM_TRANSPORTS = {
    sse: {
        name: 'sse',
        available(options) {
            return !options.headers && typeof (options.EventSource || globalThis.EventSource) === 'function';
        },
        open(ctx, sink) {
            const Source = ctx.options.EventSource || globalThis.EventSource;
            const query = `sid=${encodeURIComponent(ctx.sid)}&rid=${ctx.rid}&lastEventId=${ctx.lastId}`;
            const es = new Source(`${ctx.url.replace(/\/+$/, '')}/events?${query}`);
            let last = ctx.lastId;
            let closed = false;
            const fail = (reason) => {
                if (closed) return;
                closed = true;
                es.close();
                sink.fail(reason);
            };
            const parse = (e) => {
                try {
                    return JSON.parse(e.data);
                } catch (err) {
                    fail('an event that is not JSON');
                    return undefined;
                }
            };
            es.addEventListener('ready', (e) => {
                if (closed) return;
                const info = parse(e);
                if (info !== undefined) sink.ready({ heartbeat: info && typeof info.heartbeat === 'number' ? info.heartbeat : 0 });
            });
            es.addEventListener('ping', () => {
                if (!closed) sink.ping();
            });
            es.addEventListener('message', (e) => {
                if (closed) return;
                const data = parse(e);
                if (data === undefined) return;
                const id = e.lastEventId === '' ? NaN : Number(e.lastEventId);
                if (id > last) {
                    last = id;
                    sink.message(id, data);
                } else if (data !== null && typeof data === 'object' && data.type === 'terminate') {
                    // The one event without an id: the session ended.
                    closed = true;
                    es.close();
                    sink.terminate(data);
                }
            });
            es.addEventListener('error', () => {
                // CLOSED: refused (204: the session ended) or not an event stream; otherwise
                // the connection was lost. Either way the client goes back to long-polling,
                // whose answer tells whether the session is still there.
                fail(es.readyState === 2 ? 'the stream was refused or ended' : 'the stream was lost');
            });
            return {
                close() {
                    if (closed) return;
                    closed = true;
                    es.close();
                },
            };
        },
    },
    websocket: {
        name: 'websocket',
        available(options) {
            // A browser's WebSocket cannot send headers either.
            return !options.headers && typeof (options.WebSocket || globalThis.WebSocket) === 'function';
        },
        open(ctx, sink) {
            const Socket = ctx.options.WebSocket || globalThis.WebSocket;
            const base = ctx.url.replace(/^http(s?):/i, 'ws$1:');
            const query = `sid=${encodeURIComponent(ctx.sid)}&rid=${ctx.rid}&lastEventId=${ctx.lastId}`;
            const ws = new Socket(`${base}${base.indexOf('?') < 0 ? '?' : '&'}${query}`, 'megaphone');
            let last = ctx.lastId;
            let closed = false;
            const shut = () => {
                closed = true;
                try {
                    ws.close();
                } catch (err) {
                    // not open yet or already closed: nothing to do
                }
            };
            const fail = (reason, more) => {
                if (closed) return;
                shut();
                sink.fail(reason, more);
            };
            ws.onmessage = (e) => {
                if (closed) return;
                let frame;
                try {
                    frame = JSON.parse(typeof e.data === 'string' ? e.data : String(e.data));
                } catch (err) {
                    return fail('a frame that is not JSON');
                }
                if (frame === null || typeof frame !== 'object') return fail('a frame that is not a JSON object');
                if (typeof frame.rid === 'number') {
                    // The answer to one of our frame requests: what a POST would have been
                    // answered, with its status (an error frame carries it).
                    sink.ping();
                    const status = frame.type === 'error' && typeof frame.status === 'number' ? frame.status : 200;
                    return sink.answer(frame.rid, status, frame);
                }
                if (typeof frame.id === 'number' && Array.isArray(frame.messages)) {
                    // A batch: its k messages have the ids id-k+1 .. id.
                    const first = frame.id - frame.messages.length + 1;
                    for (let i = 0; i < frame.messages.length && !closed; i++) {
                        const id = first + i;
                        if (id > last) {
                            last = id;
                            sink.message(id, frame.messages[i]);
                        }
                    }
                    return undefined;
                }
                switch (frame.type) {
                case 'ready':
                    return sink.ready({ heartbeat: typeof frame.heartbeat === 'number' ? frame.heartbeat : 0 });
                case 'ping':
                    return sink.ping();
                case 'terminate':
                    shut();
                    return sink.terminate(frame);
                default:
                    // An error frame without a rid (a frame it could not read): the socket goes on.
                    sink.ping();
                    return sink.error(`the server: ${frame.type === 'error' ? frame.condition : 'an unknown frame'}`);
                }
            };
            ws.onerror = () => fail('the socket failed or was refused');
            ws.onclose = (e) => {
                // 4404: no stream for this session (unknown, ended, or a position it cannot
                // resume from): the long-poll that follows learns that the session is gone and
                // a new one recovers the channels. 4409: a newer stream of the session took over
                // (another tab or socket): no more streams for this session.
                if (e.code === 4409) return fail('replaced by a newer stream (4409)', { retry: false });
                return fail(`the socket closed (${e.code}${e.reason ? ' ' + e.reason : ''})`);
            };
            return {
                send(body) {
                    if (closed || ws.readyState !== 1) return false;
                    try {
                        ws.send(body);
                        return true;
                    } catch (err) {
                        return false;
                    }
                },
                close() {
                    if (closed) return;
                    shut();
                },
            };
        },
    },
};
// At most this many frame requests wait for their answers on one socket (docs/PROTOCOL.md,
// "WebSocket": the server reads no more meanwhile); more go as POSTs.
const MAX_FRAMES_IN_FLIGHT = 4;

function randomRid() {
    // A random first rid in [2^20, 2^20 + 2^44): large, and far from 2^53 − 1.
    const words = new Uint32Array(2);
    if (globalThis.crypto && globalThis.crypto.getRandomValues) {
        globalThis.crypto.getRandomValues(words);
    } else {
        words[0] = Math.floor(Math.random() * 2 ** 32);
        words[1] = Math.floor(Math.random() * 2 ** 32);
    }
    return 2 ** 20 + (words[0] % 2 ** 12) * 2 ** 32 + words[1];
}

function resolveUrl(url) {
    if (/^[a-z][a-z0-9+.-]*:/i.test(url)) return url;
    if (globalThis.location && globalThis.location.href) return new URL(url, globalThis.location.href).href;
    return url;
}

/** The `exp` claim (s) of a JWT, read without verification; undefined if there is none. */
function tokenExpiry(token) {
    if (typeof token !== 'string') return undefined;
    const parts = token.split('.');
    if (parts.length < 2) return undefined;
    try {
        let b64 = parts[1].replace(/-/g, '+').replace(/_/g, '/');
        while (b64.length % 4) b64 += '=';
        let text;
        if (typeof atob === 'function') {
            const bin = atob(b64);
            const bytes = new Uint8Array(bin.length);
            for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
            text = new TextDecoder().decode(bytes);
        } else {
            text = Buffer.from(b64, 'base64').toString('utf8');
        }
        const payload = JSON.parse(text);
        return payload && typeof payload.exp === 'number' ? payload.exp : undefined;
    } catch (err) {
        return undefined;
    }
}

class NetworkError extends Error {
    constructor(message, cause) {
        super(message);
        this.name = 'NetworkError';
        if (cause !== undefined) this.cause = cause;
    }
}

class Client {
    constructor(url, options = {}) {
        this.url = resolveUrl(url);
        this.options = {
            ...DEFAULTS,
            ...options,
            backoff: { ...DEFAULTS.backoff, ...(options.backoff || {}) },
        };
        this._fetch = this.options.fetch || globalThis.fetch.bind(globalThis);
        this._listeners = new Map();
        this._channels = new Set();   // subscribed channels, re-subscribed on reconnect
        this._positions = new Map();  // channel → {epoch, offset}: the last message received
        this._queue = [];             // messages not yet put into a request
        this.state = 'connecting';
        this.session = null;
        this._closeRequested = false;
        this._reconnectAttempt = 0;
        this._timers = new Set();
        this._flushScheduled = false;
        this.token = typeof this.options.token === 'string' ? this.options.token : null;
        this._tokenToSend = null;     // a refreshed token not yet sent to the current session
        this._refreshTimer = null;
        this._refreshing = null;      // the getToken promise in flight
        this._authFailures = 0;
        // The streaming transports to probe, in order; 'long-poll' opens sessions and is the
        // fallback whatever the list says.
        const transports = this.options.transports || (this.options.headers ? ['long-poll'] : ['long-poll', 'websocket', 'sse']);
        this._streamTransports = transports
            .filter((name) => Object.prototype.hasOwnProperty.call(STREAM_TRANSPORTS, name))
            .map((name) => STREAM_TRANSPORTS[name])
            .filter((t) => t.available(this.options));
        this.transport = 'long-poll';
        this._installUnload();
        this._scheduleRefresh();
        const needToken = !this.token && typeof this.options.getToken === 'function';
        this._schedule(() => (needToken ? this._reopenWithNewToken() : this._openSession()), 0);
    }

    // ---- public API -------------------------------------------------------------------------

    on(event, fn) {
        if (!this._listeners.has(event)) this._listeners.set(event, new Set());
        this._listeners.get(event).add(fn);
        return this;
    }

    off(event, fn) {
        const set = this._listeners.get(event);
        if (set) set.delete(fn);
        return this;
    }

    send(message) {
        if (this.state === 'closed' || this._closeRequested) {
            throw new Error('megaphone: send on a closed client');
        }
        if (message === undefined) throw new TypeError('megaphone: cannot send undefined');
        // Serialize now, so later mutation of the object does not change what is sent.
        this._queue.push(JSON.parse(JSON.stringify(message)));
        this._scheduleFlush();
    }

    subscribe(channel) {
        channel = String(channel);
        this._channels.add(channel);
        // An empty cursor asks the server for the channel's position: from then on a reconnect
        // can recover every message published after the subscription, even before the first.
        const at = this._positions.get(channel);
        this.send({ subscribe: channel, recover: at ? { ...at } : {} });
    }

    unsubscribe(channel) {
        channel = String(channel);
        this._channels.delete(channel);
        this._positions.delete(channel);
        this.send({ unsubscribe: channel });
    }

    position(channel) {
        const at = this._positions.get(String(channel));
        return at ? { ...at } : undefined;
    }

    publish(channel, data) {
        this.send({ publish: String(channel), data: data === undefined ? null : data });
    }

    close() {
        if (this._closeRequested || this.state === 'closed') return;
        this._closeRequested = true;
        if (this.state === 'open') {
            this.state = 'closing';
            this._scheduleFlush();
        } else if (!this._s || this._s.ended || !this._s.creating) {
            // No session and none being created (e.g. waiting to reconnect): just stop.
            this._finish({ condition: 'closed', reason: 'closed by the client' }, false);
        }
        // If a session is being created, close() completes once it opens (see _onOpen).
    }

    /** Stops at once: aborts every request, no terminate sent, no more events. For tests/teardown. */
    _destroy() {
        this._closeRequested = true;
        this._listeners.clear();
        const s = this._s;
        if (s && !s.ended) {
            s.ended = true;
            this._closeStream(s);
            for (const req of s.pending.values()) {
                this._cancel(req.timer);
                this._cancel(req.retryTimer);
                if (req.controller) req.controller.abort();
            }
            s.pending.clear();
        }
        this.state = 'closed';
        this.session = null;
        for (const t of this._timers) clearTimeout(t);
        this._timers.clear();
        this._removeUnload();
    }

    // ---- events ---------------------------------------------------------------------------------

    _emit(event, arg) {
        const set = this._listeners.get(event);
        if (!set) return;
        for (const fn of [...set]) {
            try {
                fn.call(this, arg);
            } catch (err) {
                // A listener's bug must not break the transport; report it asynchronously.
                setTimeout(() => { throw err; }, 0);
            }
        }
    }

    // ---- timers ---------------------------------------------------------------------------------

    _schedule(fn, ms) {
        const t = setTimeout(() => {
            this._timers.delete(t);
            fn();
        }, ms);
        this._timers.add(t);
        return t;
    }

    _cancel(t) {
        if (t === undefined || t === null) return;
        clearTimeout(t);
        this._timers.delete(t);
    }

    _backoffDelay(attempt) {
        const { initial, max } = this.options.backoff;
        const base = Math.min(max, initial * 2 ** Math.max(0, attempt - 1));
        return Math.round(base * (0.8 + 0.4 * Math.random()));
    }

    // ---- tokens ---------------------------------------------------------------------------------

    /** Calls getToken (once at a time); resolves to the new token (also this.token). */
    _fetchToken() {
        if (this._refreshing) return this._refreshing;
        this._refreshing = Promise.resolve()
            .then(() => this.options.getToken())
            .then((token) => {
                if (typeof token !== 'string' || !token) throw new Error('getToken gave no token');
                this.token = token;
                this._scheduleRefresh();
                this._emit('token', token);
                return token;
            })
            .finally(() => { this._refreshing = null; });
        return this._refreshing;
    }

    /** Arms the timer that refreshes the token `refreshBefore` ms before its exp. */
    _scheduleRefresh() {
        this._cancel(this._refreshTimer);
        this._refreshTimer = null;
        if (typeof this.options.getToken !== 'function' || this.state === 'closed') return;
        const exp = tokenExpiry(this.token);
        if (exp === undefined) return;
        const delay = Math.min(MAX_TIMER, Math.max(0, exp * 1000 - this.options.refreshBefore - Date.now()));
        this._refreshTimer = this._schedule(() => {
            this._refreshTimer = null;
            this._refresh(1);
        }, delay);
    }

    /** Gets a fresh token and sends it to the current session on its next request. */
    _refresh(attempt) {
        if (this.state === 'closed' || this._closeRequested) return;
        const before = this.token;
        this._fetchToken().then((token) => {
            if (this.state === 'closed' || token === before) return;
            const s = this._s;
            if (s && !s.ended) {
                // Sent on the session's next request (once open, if it is still being created
                // with the old token).
                this._tokenToSend = token;
                this._scheduleFlush();
            }
            // Otherwise the next creation carries this.token.
        }, (err) => {
            if (this.state === 'closed') return;
            this._emit('error', new Error(`getToken failed: ${err && err.message ? err.message : err}`));
            this._refreshTimer = this._schedule(() => {
                this._refreshTimer = null;
                this._refresh(attempt + 1);
            }, this._backoffDelay(attempt));
        });
    }

    /** Not-authorized (or no token yet): a new token from getToken, then a new session. */
    _reopenWithNewToken() {
        if (this.state === 'closed') return;
        this._fetchToken().then(() => this._openSession(), (err) => {
            if (this.state === 'closed') return;
            this._emit('error', new Error(`getToken failed: ${err && err.message ? err.message : err}`));
            this._finish({ condition: 'not-authorized', reason: 'getToken failed' }, false);
        });
    }

    // ---- session --------------------------------------------------------------------------------

    _openSession() {
        if (this.state === 'closed') return;
        this.state = 'connecting';
        const rid = randomRid();
        // The creation carries no messages: it has no sid, so when its answer is lost the copy
        // sent again makes a second session, and messages in it would reach the app twice. The
        // re-subscriptions and queued messages go in the session's first request instead.
        const body = { rid, wait: this.options.wait, hold: this.options.hold };
        if (this.token) body.token = this.token;
        this._tokenToSend = null; // the new session has the current token
        let recovering = null; // channels resumed from a real position: 'recovered' is emitted
        // The channels it had, each from its last position: the new session is subscribed and
        // first gets what it missed (docs/PROTOCOL.md, "Recovery"). Idempotent, unlike messages:
        // a creation sent twice makes two sessions, but only one is used.
        if (this._channels.size) {
            body.recover = {};
            for (const ch of this._channels) {
                const at = this._positions.get(ch);
                body.recover[ch] = at ? { ...at } : {};
            }
            recovering = new Set([...this._channels].filter((ch) => this._positions.has(ch)));
        }
        // Per-session state; a new object per session, so stale callbacks can tell they are stale.
        const s = {
            creating: true,
            sid: null,
            firstRid: rid,
            nextRid: rid + 1,   // the rid of the next new request
            processed: rid - 1, // the highest rid processed with all lower ones
            pending: new Map(), // rid → request record, for rids without an answer yet
            answers: new Map(), // rid → parsed answer waiting for earlier rids
            info: null,
            lastAnswerAt: 0,
            pollTimer: null,
            ended: false,
            recovering: new Set(),
            url: null,          // where its requests go once open (routeByNode)
            stream: null,       // the stream open or being probed: {transport, fence, handle, ready, timer}
            streamed: false,    // a stream was tried: long-polls carry stream_ack
            lastEventId: 0,     // the last stream id received
            ackedEventId: 0,    // the last stream id told to the server (stream_ack)
            ackTimer: null,     // a stream acknowledgement due
            streamQueue: [],    // stream items waiting for the answers up to their fence
            probeTimer: null,
            probeIndex: 0,      // which of the stream transports the next probe tries
            noStream: false,    // a newer stream took the session over (4409): no more probes
        };
        if (recovering) s.recovering = recovering;
        this._s = s;
        this._sendRequest(s, rid, JSON.stringify(body), false);
    }

    _onOpen(s, answer) {
        s.creating = false;
        s.sid = answer.sid;
        if (this.options.routeByNode && answer.sid.indexOf('-') > 0) {
            s.url = this.url.replace(/\/+$/, '') + '/' + answer.sid.slice(0, answer.sid.indexOf('-'));
        }
        const hold = Number.isInteger(answer.hold) ? answer.hold : this.options.hold;
        const wait = typeof answer.wait === 'number' ? answer.wait : this.options.wait;
        s.info = {
            sid: answer.sid,
            wait,
            hold,
            requests: Number.isInteger(answer.requests) ? answer.requests : hold + 1,
            inactivity: answer.inactivity,
            polling: typeof answer.polling === 'number' ? answer.polling : 0,
        };
        s.polling = s.info.hold === 0 || s.info.wait === 0;
        this.session = { ...s.info };
        this._reconnectAttempt = 0;
        this._authFailures = 0;
        // The creation's `recover` subscribed the new session to every channel we had.
        if (this._closeRequested) {
            this.state = 'closing';
        } else {
            this.state = 'open';
            this._emit('open', { ...s.info });
            this._scheduleProbe(s, 0);
        }
    }

    // ---- streaming transports (the upgrade) ----------------------------------------------------

    _scheduleProbe(s, delay) {
        if (!this._streamTransports.length || s.ended || this._s !== s || s.noStream) return;
        this._cancel(s.probeTimer);
        s.probeTimer = this._schedule(() => {
            s.probeTimer = null;
            this._probe(s);
        }, delay);
    }

    /** Opens the preferred stream on session `s`; polling pauses until it flows or fails. */
    _probe(s) {
        if (s.ended || this._s !== s || s.stream || this.state !== 'open' || this._closeRequested) return;
        // The transports are tried in their order: after a failed probe, the next one at once;
        // after the last one (or a stream that flowed and was lost), the first one again after
        // upgradeRetry.
        const transport = this._streamTransports[s.probeIndex % this._streamTransports.length];
        const st = { transport, fence: s.nextRid - 1, handle: null, ready: false, timer: null, inFlight: 0 };
        s.stream = st;
        const live = () => this._s === s && !s.ended && s.stream === st;
        st.timer = this._schedule(() => this._streamFailed(s, st, `no ready event within ${this.options.probeTimeout} ms`),
            this.options.probeTimeout);
        this._emit('debug', { type: 'probe', transport: transport.name });
        try {
            st.handle = transport.open({
                url: s.url || this.url,
                sid: s.sid,
                rid: st.fence,
                lastId: s.lastEventId,
                options: this.options,
            }, {
                ready: (info) => live() && this._onStreamReady(s, st, info),
                message: (id, data) => live() && this._onStreamItem(s, st, { id, data }),
                ping: () => live() && this._feedStream(s, st),
                terminate: (info) => live() && this._onStreamItem(s, st, { terminate: info }),
                answer: (rid, status, answer) => live() && this._onFrameAnswer(s, st, rid, status, answer),
                error: (reason) => live() && this._emit('error', new NetworkError(reason)),
                fail: (reason, more) => live() && this._streamFailed(s, st, reason, more),
            });
        } catch (err) {
            this._streamFailed(s, st, `cannot open: ${err && err.message ? err.message : err}`);
        }
    }

    _onStreamReady(s, st, info) {
        st.ready = true;
        st.heartbeat = info.heartbeat;
        this._feedStream(s, st);
        this._setTransport(st.transport.name, 'the stream is ready');
    }

    /** Any event of a flowing stream: its liveness watchdog starts again. */
    _feedStream(s, st) {
        if (!st.ready) return; // still within probeTimeout
        this._cancel(st.timer);
        st.timer = null;
        if (st.heartbeat > 0) {
            const limit = 2 * st.heartbeat + LIVENESS_MARGIN;
            st.timer = this._schedule(() => this._streamFailed(s, st, `no event for ${limit} ms`), limit);
        }
    }

    _onStreamItem(s, st, item) {
        this._feedStream(s, st);
        item.fence = st.fence;
        if (item.id !== undefined) {
            s.lastEventId = item.id; // received (delivered in its turn)
            this._scheduleStreamAck(s);
        }
        if (item.terminate) {
            // Nothing more comes on it (no watchdog); the terminate is told in its turn, and no
            // long-poll starts meanwhile.
            this._cancel(st.timer);
            st.timer = null;
            st.ready = false;
        }
        s.streamQueue.push(item);
        this._flushStream(s);
    }

    /**
     * A flowing stream is acknowledged within STREAM_ACK_DELAY of a message (a request with
     * `streaming` and `stream_ack`, unless one went meanwhile), so the server's replay window
     * holds about a second of it rather than up to `--max-queue` messages.
     */
    _scheduleStreamAck(s) {
        if (s.ackTimer !== null) return;
        s.ackTimer = this._schedule(() => {
            s.ackTimer = null;
            if (this._s !== s || s.ended || !s.stream || !s.stream.ready) return;
            if (s.lastEventId <= s.ackedEventId) return;
            const lowest = s.pending.size ? Math.min(...s.pending.keys()) : s.nextRid;
            if (s.nextRid - lowest < s.info.requests && s.nextRid <= MAX_RID) {
                this._newRequest(s, {}, this._takeQueue());
            } else {
                this._scheduleStreamAck(s); // the rid window is full: next time
            }
        }, STREAM_ACK_DELAY);
    }

    /** Delivers the stream items whose fence is passed: every answer up to it is processed. */
    _flushStream(s) {
        while (!s.ended && this._s === s && s.streamQueue.length && s.streamQueue[0].fence <= s.processed) {
            const item = s.streamQueue.shift();
            if (item.terminate) {
                this._end(s, { condition: item.terminate.condition || 'undefined-condition', reason: 'terminated by the server' });
            } else {
                this._deliver(s, item.data);
            }
        }
    }

    /** The stream (probed or flowing) is given up: back to long-polling, from where it stopped. */
    _streamFailed(s, st, reason, more) {
        if (s.stream !== st) return;
        this._closeStream(s);
        s.streamed = true;
        const flowed = st.ready || this.transport !== 'long-poll';
        if (this.transport !== 'long-poll') {
            this._setTransport('long-poll', reason);
        } else {
            this._emit('debug', { type: 'probe-failed', transport: st.transport.name, reason });
        }
        if (more && more.retry === false) {
            // Another stream has the session (4409): it stays on long-polling from now on.
            s.noStream = true;
        }
        if (!s.ended && this._s === s) {
            if (flowed) {
                s.probeIndex = 0;
                this._scheduleProbe(s, this.options.upgradeRetry);
            } else {
                s.probeIndex++;
                const round = s.probeIndex % this._streamTransports.length === 0;
                this._scheduleProbe(s, round ? this.options.upgradeRetry : 0);
            }
            this._pump();
        }
    }

    /** The answer to a request sent as a frame on the stream `st`. */
    _onFrameAnswer(s, st, rid, status, answer) {
        this._feedStream(s, st);
        const req = s.pending.get(rid);
        if (!req || req.via !== st) return; // not ours, or given up on (sent again by POST)
        req.via = null;
        st.inFlight--;
        this._onResponse(s, req, status, answer);
    }

    _closeStream(s) {
        const st = s.stream;
        if (!st) return;
        s.stream = null;
        this._cancel(st.timer);
        st.timer = null;
        if (st.handle) st.handle.close();
        // Requests sent on it and not answered go again, the same rid and body, by POST: the
        // server answers a rid it has processed from its cache, and processes one it never got.
        for (const req of [...s.pending.values()]) {
            if (req.via !== st) continue;
            req.via = null;
            if (!s.ended && this._s === s) this._attempt(s, req);
        }
    }

    _setTransport(name, reason) {
        if (this.transport === name) return;
        const previous = this.transport;
        this.transport = name;
        this._emit('transport', { transport: name, previous, reason });
    }

    // ---- requests -------------------------------------------------------------------------------

    _scheduleFlush() {
        if (this._flushScheduled) return;
        this._flushScheduled = true;
        // A microtask: every send() of the current task goes into one request.
        queueMicrotask(() => {
            this._flushScheduled = false;
            this._pump();
        });
    }

    /** Sends whatever should be sent now: queued messages, a terminate, or a poll. */
    _pump() {
        const s = this._s;
        if (!s || s.creating || s.ended || this.state === 'closed') return;
        const windowFree = () => {
            // New rid must stay within `requests` of the lowest unanswered rid.
            const lowest = s.pending.size ? Math.min(...s.pending.keys()) : s.nextRid;
            return s.nextRid - lowest < s.info.requests && s.nextRid <= MAX_RID;
        };
        if (this._closeRequested) {
            if (!s.terminateSent && windowFree()) {
                s.terminateSent = true;
                this._newRequest(s, { type: 'terminate' }, this._takeQueue());
            }
            return;
        }
        if ((this._queue.length || this._tokenToSend) && windowFree()) {
            this._newRequest(s, {}, this._takeQueue());
        }
        if (s.pending.size === 0 && windowFree() && !s.stream) {
            // Nothing out: keep one request held (or, for a polling session, poll in a while).
            // (Not while a stream carries the session's messages, or is being probed.)
            if (!s.polling) {
                this._newRequest(s, {}, []);
            } else if (s.pollTimer === null) {
                const interval = Math.max(250, s.info.polling * 1000 + 100);
                const delay = Math.max(0, s.lastAnswerAt + interval - Date.now());
                s.pollTimer = this._schedule(() => {
                    s.pollTimer = null;
                    if (s.pending.size === 0 && !s.ended) this._newRequest(s, {}, this._takeQueue());
                }, delay);
            }
        }
    }

    _takeQueue() {
        const q = this._queue;
        this._queue = [];
        return q;
    }

    _newRequest(s, extra, messages) {
        if (s.pollTimer !== null) {
            this._cancel(s.pollTimer);
            s.pollTimer = null;
        }
        const rid = s.nextRid++;
        const body = { sid: s.sid, rid, ...extra };
        if (this._tokenToSend) {
            // A refresh: the server replaces the session's token (same sub).
            body.token = this._tokenToSend;
            this._tokenToSend = null;
        }
        if (messages.length) body.messages = messages;
        body.ack = s.processed;
        if (s.stream) {
            // A stream carries the session's messages (or is being probed): answer at once.
            body.streaming = true;
            if (s.stream.ready && s.lastEventId > s.ackedEventId) {
                // What the stream brought: acknowledged (the stream goes on).
                body.stream_ack = s.lastEventId;
                s.ackedEventId = s.lastEventId;
            }
        } else if (s.streamed) {
            // Back from a stream: what it wrote after the last message received comes first.
            body.stream_ack = s.lastEventId;
        }
        this._sendRequest(s, rid, JSON.stringify(body), messages.length > 0);
    }

    /** Sends rid with this exact body, and keeps sending it (same body) until it gets an answer. */
    _sendRequest(s, rid, body, hasData) {
        const req = { rid, body, hasData, attempt: 0, controller: null, timer: null, retryTimer: null };
        s.pending.set(rid, req);
        this._attempt(s, req);
    }

    _attempt(s, req) {
        if (s.ended || this._s !== s) return;
        req.attempt++;
        req.via = null;
        const st = s.stream;
        if (st && st.ready && st.handle && typeof st.handle.send === 'function' && st.inFlight < MAX_FRAMES_IN_FLIGHT &&
            st.handle.send(req.body)) {
            // A flowing stream that carries requests (a WebSocket): the request is a frame on
            // it, its answer a frame too. No timer of its own: the stream's watchdog notices a
            // dead socket, and then every request sent on it goes again by POST (_closeStream).
            req.via = st;
            st.inFlight++;
            req.controller = null;
            req.timer = null;
            return;
        }
        const controller = typeof AbortController !== 'undefined' ? new AbortController() : null;
        req.controller = controller;
        const thisAttempt = req.attempt;
        const wait = s.info ? s.info.wait : this.options.wait;
        const timeoutMs = wait * 1000 + this.options.timeout;
        let timedOut = false;
        req.timer = this._schedule(() => {
            timedOut = true;
            if (controller) controller.abort();
        }, timeoutMs);

        let status = 0;
        Promise.resolve()
            .then(() => this._fetch(s.url || this.url, {
                method: 'POST',
                headers: this._headers(),
                body: req.body,
                signal: controller ? controller.signal : undefined,
                cache: 'no-store',
                credentials: 'same-origin',
            }))
            .then(async (res) => {
                status = res.status;
                const text = await res.text();
                return text;
            })
            .then((text) => {
                if (!this._current(s, req, thisAttempt)) return;
                this._cancel(req.timer);
                let answer;
                try {
                    answer = JSON.parse(text);
                } catch (err) {
                    answer = undefined;
                }
                this._onResponse(s, req, status, answer);
            })
            .catch((err) => {
                if (!this._current(s, req, thisAttempt)) return;
                this._cancel(req.timer);
                const error = timedOut
                    ? new NetworkError(`no answer to rid ${req.rid} within ${timeoutMs} ms`)
                    : new NetworkError(`request ${req.rid} failed: ${err && err.message ? err.message : err}`, err);
                this._retry(s, req, error);
            });
    }

    /** The answer to req's current attempt (POST or frame): `status` as HTTP's, `answer` parsed. */
    _onResponse(s, req, status, answer) {
        if (status >= 500 && !(answer && answer.type === 'terminate' && status === 503)) {
            return this._retry(s, req, new NetworkError(`HTTP ${status}`));
        }
        if (answer === undefined || answer === null || typeof answer !== 'object') {
            if (status === 200) return this._retry(s, req, new NetworkError('the answer is not JSON'));
            s.pending.delete(req.rid);
            return this._end(s, { condition: STATUS_CONDITIONS[status] || 'undefined-condition', reason: `HTTP ${status}` });
        }
        if (answer.type === 'error' && answer.condition === 'replaced') {
            // Another copy of this rid took this one's place at the server. Answers to
            // our earlier copies are ignored anyway (only the current attempt counts), so
            // that copy is not ours (a proxy or a stray retry sent it) and its answer
            // will not reach us: send the same rid and body again.
            return this._retry(s, req, new NetworkError(`rid ${req.rid} was replaced by another copy`));
        }
        if (status !== 200) {
            // An error ends the session (404 item-not-found, 403, 400, 413, 503 …).
            s.pending.delete(req.rid);
            const condition = answer.condition || STATUS_CONDITIONS[status] || 'undefined-condition';
            return this._end(s, { condition, reason: `HTTP ${status}`, status });
        }
        s.pending.delete(req.rid);
        this._onAnswer(s, req.rid, answer);
    }

    _current(s, req, attempt) {
        return this._s === s && !s.ended && s.pending.get(req.rid) === req && req.attempt === attempt;
    }

    _retry(s, req, error) {
        this._emit('error', error);
        const delay = this._backoffDelay(req.attempt);
        req.retryTimer = this._schedule(() => {
            req.retryTimer = null;
            if (this._s === s && !s.ended && s.pending.get(req.rid) === req) this._attempt(s, req);
        }, delay);
    }

    // ---- answers --------------------------------------------------------------------------------

    _onAnswer(s, rid, answer) {
        s.lastAnswerAt = Date.now();
        if (rid <= s.processed) return; // already processed (cannot happen: one record per rid)
        s.answers.set(rid, answer);
        while (!s.ended && s.answers.has(s.processed + 1)) {
            // A stream's messages come after every answer up to its fence, before later ones.
            this._flushStream(s);
            if (s.ended) return;
            const next = s.processed + 1;
            const a = s.answers.get(next);
            s.answers.delete(next);
            s.processed = next;
            this._process(s, next, a);
        }
        this._flushStream(s);
        if (!s.ended) this._pump();
    }

    _process(s, rid, answer) {
        if (rid === s.firstRid) {
            if (typeof answer.sid !== 'string') {
                return this._end(s, { condition: answer.condition || 'undefined-condition', reason: 'no sid in the answer' });
            }
            this._onOpen(s, answer);
        }
        if (Array.isArray(answer.messages)) {
            for (const m of answer.messages) {
                if (s.ended || this._s !== s) return;
                this._deliver(s, m);
            }
        }
        if (answer.type === 'terminate') {
            const condition = answer.condition || (s.terminateSent ? 'closed' : 'undefined-condition');
            this._end(s, { condition, reason: 'terminated by the server' });
        }
    }

    /** One message of the server: positions kept, duplicates dropped, recovery notices told. */
    _deliver(s, m) {
        if (m !== null && typeof m === 'object' && m.error === 'forbidden' && typeof m.channel === 'string') {
            // A subscribe or publish the token does not allow. A subscription never confirmed
            // (no position) is dropped: a reconnect would only be refused again.
            if (this._channels.has(m.channel) && !this._positions.has(m.channel)) this._channels.delete(m.channel);
            s.recovering.delete(m.channel);
            return this._emit('forbidden', { channel: m.channel });
        }
        const positioned = m !== null && typeof m === 'object' && typeof m.channel === 'string' &&
            typeof m.epoch === 'string' && typeof m.offset === 'number';
        if (!positioned) return this._emit('message', m);
        if (typeof m.recovered === 'boolean') {
            // {"channel", "recovered", "epoch", "offset"}: where a subscription stands once the
            // replayed messages that follow it are delivered. Recovered from our position: those
            // messages move it. Otherwise (a first subscription, or the stream lost) it starts here.
            const at = this._positions.get(m.channel);
            const resumed = m.recovered && at && at.epoch === m.epoch;
            if (!resumed && this._channels.has(m.channel)) this._positions.set(m.channel, { epoch: m.epoch, offset: m.offset });
            if (s.recovering.delete(m.channel) || !m.recovered) {
                this._emit('recovered', { channel: m.channel, recovered: m.recovered, epoch: m.epoch, offset: m.offset });
            }
            return;
        }
        const at = this._positions.get(m.channel);
        if (at && at.epoch === m.epoch && m.offset <= at.offset) return; // had it already
        if (this._channels.has(m.channel)) this._positions.set(m.channel, { epoch: m.epoch, offset: m.offset });
        this._emit('message', m);
    }

    /** The session is over: emit 'close', and reconnect unless closing or told not to. */
    _end(s, info) {
        if (s.ended) return;
        // Deliver whatever later answers arrived (the session is gone; a lost gap cannot be filled).
        const later = [...s.answers.keys()].sort((a, b) => a - b);
        s.ended = true;
        this._closeStream(s);
        const streamed = s.streamQueue.filter((item) => item.data !== undefined);
        s.streamQueue = [];
        for (const rid of later) {
            while (streamed.length && streamed[0].fence < rid) this._deliver(s, streamed.shift().data);
            const a = s.answers.get(rid);
            if (a && Array.isArray(a.messages)) for (const m of a.messages) this._deliver(s, m);
        }
        for (const item of streamed) this._deliver(s, item.data);
        s.answers.clear();
        this._cancel(s.probeTimer);
        s.probeTimer = null;
        this._cancel(s.ackTimer);
        s.ackTimer = null;
        this._setTransport('long-poll', 'the session ended');
        for (const req of s.pending.values()) {
            this._cancel(req.timer);
            this._cancel(req.retryTimer);
            if (req.controller) req.controller.abort();
        }
        s.pending.clear();
        this._cancel(s.pollTimer);
        s.pollTimer = null;
        this.session = null;
        const byClient = this._closeRequested;
        let reconnecting = !byClient && this.options.reconnect !== false;
        if (byClient) info = { ...info, condition: s.terminateSent ? 'closed' : info.condition };
        if (!byClient && info.condition === 'not-authorized') {
            // The token was refused (expired, invalid, another user's): only a new one can help.
            this._authFailures++;
            reconnecting = typeof this.options.getToken === 'function' && this._authFailures <= MAX_AUTH_FAILURES;
            return this._finish(info, reconnecting, reconnecting);
        }
        this._finish(info, reconnecting);
    }

    _finish(info, reconnecting, newToken = false) {
        if (this.state === 'closed') return;
        this.state = reconnecting ? 'connecting' : 'closed';
        this._emit('close', { condition: info.condition, reason: info.reason, reconnecting });
        if (this.state === 'closed' && reconnecting) return; // a 'close' listener called close()
        if (reconnecting) {
            this._reconnectAttempt++;
            const reopen = newToken ? () => this._reopenWithNewToken() : () => this._openSession();
            this._schedule(reopen, this._backoffDelay(this._reconnectAttempt));
        } else {
            for (const t of this._timers) clearTimeout(t);
            this._timers.clear();
            this._removeUnload();
        }
    }

    /** Every request's headers: the content type and the `headers` option. */
    _headers() {
        return { ...(this.options.headers || {}), 'Content-Type': CONTENT_TYPE };
    }

    // ---- page unload ----------------------------------------------------------------------------

    _installUnload() {
        if (!this.options.closeOnUnload || typeof window === 'undefined' || !window.addEventListener) return;
        this._unloadHandler = () => {
            const s = this._s;
            if (!s || !s.sid || s.ended || this.state === 'closed') return;
            const body = JSON.stringify({ sid: s.sid, rid: s.nextRid++, type: 'terminate', ack: s.processed });
            try {
                if (navigator.sendBeacon && !this.options.headers) {
                    navigator.sendBeacon(s.url || this.url, new Blob([body], { type: CONTENT_TYPE }));
                } else {
                    this._fetch(s.url || this.url, { method: 'POST', body, keepalive: true, headers: this._headers() });
                }
            } catch (err) {
                // The page is going away; nothing more to do.
            }
        };
        window.addEventListener('pagehide', this._unloadHandler);
    }

    _removeUnload() {
        if (this._unloadHandler && typeof window !== 'undefined') {
            window.removeEventListener('pagehide', this._unloadHandler);
            this._unloadHandler = null;
        }
    }
}

/** Opens a session with the Megaphone endpoint at `url` (see the top of this file). */
export function connect(url, options) {
    return new Client(url, options);
}

export { Client };
export default { connect };
