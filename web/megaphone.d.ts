/**
 * TypeScript declarations of web/megaphone.js, the browser (and Node ≥ 18) client of Megaphone's
 * JSON long-poll transport. They declare the API documented at the top of megaphone.js, nothing
 * more; the wire protocol is docs/PROTOCOL.md.
 *
 *   import { connect } from 'megaphone-client';
 *
 *   const client = connect('/comet', { wait: 30 });
 *   client.on('message', (message) => console.log('got', message));
 *   client.subscribe('news');
 *   client.publish('news', { hello: 'world' });
 *
 * Self-contained: no DOM or @types/node needed (the `fetch` option's abort signal is typed from
 * whichever AbortSignal the project has, if any).
 */

/** Any value JSON can carry: what the server sends (a 'message' payload is one of these). */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/** The session as the server granted it: given to 'open', and kept as `client.session`. */
export interface SessionInfo {
    /** The session id; its prefix before the first '-' names the node that owns it (e.g. 'n0'). */
    sid: string;
    /** Longest time (s) the server holds a request: the asked `wait`, capped by the server. */
    wait: number;
    /** How many requests the server may hold: the asked `hold`, capped by the server. */
    hold: number;
    /** The size of the rid window (`hold` + 1): at most this many requests are outstanding. */
    requests: number;
    /** How long (s) the session lives with no request held. */
    inactivity: number;
    /** The shortest interval (s) between two empty requests of a polling session (hold 0). */
    polling: number;
}

/**
 * Why a session ended, as given to 'close': the server's condition ('item-not-found',
 * 'system-shutdown', 'policy-violation', 'bad-request', 'not-authorized', …), 'closed' after
 * client.close(), or 'undefined-condition' when the server gave none. Any other string the
 * server sends is passed on as it is.
 */
export type CloseCondition =
    | 'closed'
    | 'item-not-found'
    | 'system-shutdown'
    | 'policy-violation'
    | 'bad-request'
    | 'not-authorized'
    | 'undefined-condition'
    | (string & {});

/** The payload of 'close'. */
export interface CloseInfo {
    condition: CloseCondition;
    /** A human-readable explanation ('HTTP 404', 'terminated by the server', …), for logs. */
    reason: string;
    /** True when a fresh session is being opened (the `reconnect` option, or getToken after not-authorized). */
    reconnecting: boolean;
}

/** A message's position in its channel (docs/PROTOCOL.md, "Recovery"). */
export interface Position {
    /** Names the channel's stream; a new epoch means the history was lost. */
    epoch: string;
    /** 1, 2, 3, … within the epoch. */
    offset: number;
}

/**
 * The payload of 'recovered': a new session (after a reconnect) has resumed `channel` from the
 * last message received on it. `recovered` true: every message published meanwhile follows, as
 * 'message' events, in order, none twice; false: some were missed (the history no longer reaches
 * back, or the channel's stream was reset) and the app should reload its state. `epoch` and
 * `offset` are where the channel stands once the replayed messages are delivered.
 */
export interface RecoveredInfo extends Position {
    channel: string;
    recovered: boolean;
}

/** The payload of 'forbidden': the server refused a subscribe or publish on `channel`. */
export interface ForbiddenInfo {
    channel: string;
}

/**
 * A message of the built-in hub (the `megaphone` binary) published to a channel, as 'message'
 * delivers it: `{"epoch", "offset", "channel", "data"}`. Nothing checks a message's shape at run
 * time: narrow or cast 'message' payloads to this yourself.
 */
export interface ChannelMessage<T = JsonValue> extends Position {
    channel: string;
    data: T;
}

/** The events of a client and what their listeners receive. */
export interface ClientEventMap<M = unknown> {
    /** A session opened; fires again, with a new sid, after each reconnect. */
    open: SessionInfo;
    /**
     * Each message the server sent, exactly once and in order (recovery notices and forbidden
     * notices are not given here: see 'recovered' and 'forbidden').
     */
    message: M;
    /** The session ended. */
    close: CloseInfo;
    /** A subscribe or publish refused by the server; the session goes on. */
    forbidden: ForbiddenInfo;
    /** getToken gave a new token (now `client.token`). */
    token: string;
    /**
     * Informational: a request failed and will be retried (network error, 5xx, timeout), the
     * server answered something that is not the protocol, or getToken failed.
     */
    error: Error;
    /**
     * A channel resumed in a new session after a reconnect; or (recovered false) messages on it
     * were missed.
     */
    recovered: RecoveredInfo;
    /**
     * The client switched transport (client.transport is now `transport`). Informational: every
     * message still arrives exactly once and in order.
     */
    transport: TransportInfo;
    /** A probe of a streaming transport started, or failed (never reported as 'error'). */
    debug: DebugInfo;
}

/**
 * How a session's messages reach the client: 'long-poll' (always available: sessions open with
 * it and fall back to it) or a streaming transport ('websocket': a WebSocket, which carries the
 * client's requests too; 'sse': Server-Sent Events).
 */
export type TransportName = 'long-poll' | 'websocket' | 'sse';

/** What a 'transport' listener receives. */
export interface TransportInfo {
    /** The transport now in use. */
    transport: TransportName;
    /** The one used before. */
    previous: TransportName;
    /** Why: 'the stream is ready', 'no event for 4000 ms', 'the stream was lost', … */
    reason: string;
}

/** What a 'debug' listener receives. */
export interface DebugInfo {
    /** 'probe': a streaming transport is being tried; 'probe-failed': it did not flow. */
    type: 'probe' | 'probe-failed';
    transport: TransportName;
    reason?: string;
}

/** An EventSource constructor (the browser's, or npm `eventsource`'s in Node). */
export type EventSourceConstructor = new (url: string) => {
    readonly readyState: number;
    close(): void;
    addEventListener(type: string, listener: (event: { data: string; lastEventId: string }) => void): void;
};

/**
 * A WebSocket constructor (the browser's, or npm `ws`'s in Node): what the client uses of it.
 * It is opened as `new WebSocket(url, 'megaphone')`.
 */
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => {
    readonly readyState: number;
    send(data: string): void;
    close(code?: number, reason?: string): void;
};

/** The event names a client emits. */
export type ClientEvent = keyof ClientEventMap;

/** A listener of event `E`; called with the client as `this`. */
export type ClientListener<E extends ClientEvent, M = unknown> = (
    this: Client<M>,
    payload: ClientEventMap<M>[E],
) => void;

/** 'connecting' (opening a session, or waiting to reconnect) → 'open' → 'closing' → 'closed'. */
export type ClientState = 'connecting' | 'open' | 'closing' | 'closed';

/** The AbortSignal of the project's environment (DOM or Node), or never when it declares none. */
type EnvironmentAbortSignal = typeof globalThis extends { AbortSignal: { prototype: infer S } } ? S : never;

/** What the client passes to the `fetch` option: always a POST of a JSON text. */
export interface FetchInit {
    method: 'POST';
    /** The `headers` option, plus 'Content-Type': 'text/plain;charset=UTF-8'. */
    headers: Record<string, string>;
    body: string;
    signal?: EnvironmentAbortSignal;
    cache?: 'no-store';
    credentials?: 'same-origin';
    /** Set on the terminate sent when the page goes away. */
    keepalive?: boolean;
}

/** What the client reads of a `fetch` answer. */
export interface FetchResponse {
    readonly status: number;
    text(): Promise<string>;
}

/** A fetch function: globalThis.fetch fits, and so does a stub that answers `{status, text()}`. */
export type FetchLike = (url: string, init: FetchInit) => Promise<FetchResponse>;

/** The options of connect(); all optional. */
export interface ConnectOptions {
    /** Longest time (s) the server may hold a request; default 30 (the server caps it). */
    wait?: number;
    /** How many requests the server may hold; default 1; 0 asks for a polling session. */
    hold?: number;
    /**
     * Default true: when the session ends (terminate, item-not-found, …) emit 'close', then open a
     * fresh session and subscribe again to the channels it had subscribed.
     */
    reconnect?: boolean;
    /**
     * Delays (ms) between retries of a failed request and between reconnects, doubled on each
     * consecutive failure; default {initial: 250, max: 5000} (either may be given alone).
     */
    backoff?: { initial?: number; max?: number };
    /** The fetch function to use; default globalThis.fetch (inject one to test or proxy). */
    fetch?: FetchLike;
    /**
     * Extra request headers for every request, e.g. a credential ({'X-Megaphone-Token': t}): a
     * secret belongs in a header, never in the URL. With headers, the terminate sent when the
     * page goes away uses fetch with keepalive rather than navigator.sendBeacon. Cross-origin,
     * they make each request need a CORS preflight.
     */
    headers?: Record<string, string>;
    /** Extra time (ms) past `wait` before a request is given up and sent again; default 10000. */
    timeout?: number;
    /** Default true in browsers: terminate the session when the page goes away. */
    closeOnUnload?: boolean;
    /**
     * Default false: once a session is open, send its requests to `url` + '/' + the session's node
     * (the sid's prefix, e.g. /comet/n2), so that a balancer in front of a cluster routes them
     * straight to the node that owns the session; creations still go to `url`.
     */
    routeByNode?: boolean;
    /**
     * A client token (JWT) for a server that checks them (--token-secret…): sent as `token` in
     * every session creation (also re-creations after reconnects).
     */
    token?: string;
    /**
     * Called for a fresh token `refreshBefore` ms before the current token's `exp` (the new token
     * is sent on the session's next request), and when the server answers not-authorized (a new
     * session is created with the new token, resuming its channels). Called before the first
     * creation too if no `token` is given. Without it, not-authorized ends the client.
     */
    getToken?: () => string | PromiseLike<string>;
    /** Ms before the token's `exp` to call getToken; default 60000. */
    refreshBefore?: number;
    /**
     * The transports to use, in order of preference; default ['long-poll', 'websocket', 'sse']
     * (['long-poll'] when `headers` is given: neither a browser's WebSocket nor an EventSource
     * can send headers). Sessions always open with a long-poll, then probe the streaming
     * transports listed on the same session, in their order: the next one at once when a probe
     * fails, the first one again after upgradeRetry.
     */
    transports?: TransportName[];
    /** The WebSocket constructor for 'websocket'; default globalThis.WebSocket (Node: npm `ws`). */
    WebSocket?: WebSocketConstructor;
    /** The EventSource constructor for 'sse'; default globalThis.EventSource (Node: npm `eventsource`). */
    EventSource?: EventSourceConstructor;
    /** Ms a probed stream has to send its `ready` event before it is given up; default 5000. */
    probeTimeout?: number;
    /** Ms after a failed probe or a lost stream before the next probe; default 10000. */
    upgradeRetry?: number;
}

/**
 * A Megaphone client: made by connect(url, options) (or `new Client(url, options)`, the same).
 * `M` is the type 'message' listeners receive: unknown (any JSON value the server sends; narrow or
 * cast it) unless you say otherwise, e.g. connect<ChannelMessage<News>>(url); nothing checks it at
 * run time.
 */
export class Client<M = unknown> {
    /** Opens a session at once; the same as connect(url, options). */
    constructor(url: string, options?: ConnectOptions);

    /** 'connecting' | 'open' | 'closing' | 'closed'. */
    readonly state: ClientState;
    /** The current session info (as given to 'open'), or null. */
    readonly session: SessionInfo | null;
    /** The current token (options.token or getToken's last), or null. */
    readonly token: string | null;
    /** How the session's messages come now: 'long-poll', 'websocket' or 'sse'. */
    readonly transport: TransportName;

    /** Adds a listener; returns the client, so calls chain. */
    on<E extends ClientEvent>(event: E, fn: ClientListener<E, M>): this;
    /** Removes a listener added with on(); returns the client. */
    off<E extends ClientEvent>(event: E, fn: ClientListener<E, M>): this;

    /**
     * Sends any JSON value to the application (batched, in order; serialized at once). Throws
     * after close(), and on undefined.
     */
    send(message: {} | null): void;
    /**
     * Subscribes to a hub channel (asking for its position too); remembered for reconnects.
     * Throws after close().
     */
    subscribe(channel: string): void;
    /** Unsubscribes from a hub channel. Throws after close(). */
    unsubscribe(channel: string): void;
    /** The position of the last message received on `channel` (or of the subscription), or undefined. */
    position(channel: string): Position | undefined;
    /** Publishes `data` to a hub channel (undefined is sent as null). Throws after close(). */
    publish(channel: string, data?: unknown): void;
    /**
     * Sends a terminate (after any queued messages), then emits 'close' with condition 'closed'.
     * No reconnect.
     */
    close(): void;
}

/**
 * Opens a session with the Megaphone endpoint at `url`: a path ('/comet') resolved against the
 * page, or an absolute URL.
 */
export function connect<M = unknown>(url: string, options?: ConnectOptions): Client<M>;

declare const megaphone: { connect: typeof connect };
export default megaphone;

// Only what is exported above is public (EnvironmentAbortSignal stays private).
export {};
