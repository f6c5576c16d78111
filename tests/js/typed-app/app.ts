// An app written against megaphone-client's types (web/megaphone.d.ts), using the whole documented
// API. Type-checked, never run: tests/js/client_package.test.mjs runs `tsc --noEmit` (strict) on it
// here and again in a scratch project that installed the packed package.
import megaphone, {
    connect,
    Client,
    type ChannelMessage,
    type ClientEvent,
    type ClientEventMap,
    type ClientListener,
    type ClientState,
    type CloseCondition,
    type CloseInfo,
    type ConnectOptions,
    type FetchLike,
    type ForbiddenInfo,
    type JsonValue,
    type Position,
    type RecoveredInfo,
    type SessionInfo,
    type TransportInfo,
    type TransportName,
    type DebugInfo,
    type EventSourceConstructor,
    type WebSocketConstructor,
} from 'megaphone-client';

// A stub fetch, as a test would inject: an answer with status and text() is enough.
const stubFetch: FetchLike = async (url, init) => {
    const body: string = init.body;
    const method: 'POST' = init.method;
    const contentType: string | undefined = init.headers['Content-Type'];
    void [url.length, body, method, contentType, init.keepalive, init.cache, init.credentials];
    return { status: 200, text: async () => JSON.stringify({ sid: 'n0-x', wait: 30, hold: 1 }) };
};

let tokens = 0;
const options: ConnectOptions = {
    wait: 30,
    hold: 1,
    reconnect: true,
    backoff: { initial: 250, max: 5000 },
    fetch: stubFetch,
    headers: { 'X-Megaphone-Token': 'secret' },
    timeout: 10000,
    closeOnUnload: true,
    routeByNode: false,
    token: 'eyJhbGciOiJIUzI1NiJ9.e30.x',
    getToken: async () => `token-${++tokens}`,
    refreshBefore: 60000,
};

const client: Client = connect('/comet', options);
const polling = connect('https://example.org/comet', { hold: 0, backoff: { max: 1000 } });
const sync = new Client('/comet', { getToken: () => 'a token, given at once' });
const same: Client = megaphone.connect('/comet');

// Events: each listener gets its payload's type; on() and off() chain.
const onOpen = (session: SessionInfo): void => {
    const sid: string = session.sid;
    const numbers: number[] = [session.wait, session.hold, session.requests, session.inactivity, session.polling];
    void [sid, numbers];
};
client
    .on('open', onOpen)
    .on('message', (message) => {
        // unknown: narrow it, or cast it to what the app knows the server sends.
        if (typeof message === 'object' && message !== null && 'channel' in message && message.channel === 'news') {
            const m = message as ChannelMessage<{ headline: string }>;
            const headline: string = m.data.headline;
            const at: Position = { epoch: m.epoch, offset: m.offset };
            void [headline, at];
        }
    })
    .on('close', (info) => {
        const condition: CloseCondition = info.condition;
        const reason: string = info.reason;
        const reconnecting: boolean = info.reconnecting;
        if (condition === 'not-authorized' && !reconnecting) console.log('log in again', reason);
    })
    .on('forbidden', ({ channel }: ForbiddenInfo) => console.log('not allowed:', channel))
    .on('token', (token) => console.log('new token of', token.length, 'characters'))
    .on('error', (error) => console.log('retrying after', error.message))
    .on('recovered', (info: RecoveredInfo) => {
        if (!info.recovered) console.log('reload', info.channel, 'from', info.epoch, info.offset);
    })
    .on('transport', (info: TransportInfo) => {
        const now: TransportName = info.transport;
        console.log('now on', now, 'after', info.previous, 'because', info.reason);
    })
    .on('debug', (info: DebugInfo) => console.log(info.type, info.transport, info.reason));
client.off('open', onOpen).off('message', () => {});

// A listener is called with the client as `this`.
client.on('close', function (info: CloseInfo) {
    const self: Client = this;
    if (info.reconnecting) console.log(self.state);
});

// Typed listeners and payloads from the event map.
const onRecovered: ClientListener<'recovered'> = (info) => console.log(info.channel);
client.on('recovered', onRecovered);
const events: ClientEvent[] = ['open', 'message', 'close', 'forbidden', 'token', 'error', 'recovered',
    'transport', 'debug'];
const lastClose: ClientEventMap['close'] | null = null;
const json: JsonValue = { any: ['json', 1, true, null] };
void [events, lastClose];

// Transports: the upgrade to Server-Sent Events (an EventSource constructor injected, as in Node).
declare const NodeEventSource: EventSourceConstructor;
const streaming = connect('/comet', {
    transports: ['long-poll', 'sse'],
    EventSource: NodeEventSource,
    probeTimeout: 5000,
    upgradeRetry: 10000,
});
const longPollOnly = connect('/comet', { transports: ['long-poll'] });
const how: TransportName = streaming.transport;
void [how, longPollOnly];

// The upgrade to a WebSocket first, SSE if it fails (a WebSocket constructor injected, as npm `ws`'s in Node).
declare const NodeWebSocket: WebSocketConstructor;
const socket = connect('/comet', {
    transports: ['long-poll', 'websocket', 'sse'],
    WebSocket: NodeWebSocket,
    EventSource: NodeEventSource,
});
socket.on('transport', ({ transport, previous }) => {
    const onSocket: boolean = transport === 'websocket';
    void [onSocket, previous];
});

// Messages typed by the app: connect<M> (not checked at run time).
const news = connect<ChannelMessage<{ headline: string }>>('/comet');
news.on('message', (m) => console.log(m.channel, m.epoch, m.offset, m.data.headline));

// Another client whose messages the app declares.
interface ChatMessage {
    nick: string;
    text: string;
}
const chat = connect<ChatMessage>('/chat');
chat.on('message', (m) => console.log(`${m.nick}: ${m.text}`));
chat.send({ type: 'say', text: 'hello' });

// Methods.
client.subscribe('news');
client.publish('news', { headline: 'hi' });
client.publish('news');
client.send(json);
client.send('a string');
client.send(null);
const at: Position | undefined = client.position('news');
if (at) console.log(at.epoch, at.offset);
client.unsubscribe('news');

// State.
const state: ClientState = client.state;
const session: SessionInfo | null = client.session;
const token: string | null = client.token;
if (state === 'open' && session) console.log(session.sid, token);

client.close();
polling.close();
sync.close();
same.close();
chat.close();
news.close();
streaming.close();
longPollOnly.close();
