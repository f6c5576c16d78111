// Misuses the types must refuse: each `@ts-expect-error` makes tsc fail if the line type-checks.
// tests/js/client_package.test.mjs also checks that, without the directives, every marked line is
// an error, and nothing else is.
import { connect, Client, type SessionInfo } from 'megaphone-client';

const client = connect('/comet');

// @ts-expect-error: no such event
client.on('opened', () => {});
// @ts-expect-error: 'open' gives a SessionInfo, not a string
client.on('open', (sid: string) => console.log(sid));
// @ts-expect-error: 'close' payload has no `code`
client.on('close', (info) => console.log(info.code));
// @ts-expect-error: a message is unknown until narrowed (or typed with connect<M>)
client.on('message', (m) => console.log(m.channel));
// @ts-expect-error: 'recovered' is a boolean
client.on('recovered', (info) => info.recovered.toFixed());
// @ts-expect-error: wait is a number of seconds
connect('/comet', { wait: '30' });
// @ts-expect-error: no such option
connect('/comet', { reconnectDelay: 1000 });
// @ts-expect-error: backoff is an object
connect('/comet', { backoff: 250 });
// @ts-expect-error: getToken must give a string
connect('/comet', { getToken: async () => 42 });
// @ts-expect-error: headers are strings
connect('/comet', { headers: { 'X-Count': 1 } });
// @ts-expect-error: no such transport
connect('/comet', { transports: ['websockets'] });
// @ts-expect-error: a WebSocket constructor, not a URL
connect('/comet', { WebSocket: 'ws://example.com' });
// @ts-expect-error: client.transport is read-only
client.transport = 'sse';
// @ts-expect-error: send(undefined) throws
client.send(undefined);
// @ts-expect-error: a channel name is a string
client.subscribe();
// @ts-expect-error: state is read-only
client.state = 'open';
// @ts-expect-error: not a state
const state: 'connected' = client.state;
// @ts-expect-error: session may be null
const sid: string = client.session.sid;
// @ts-expect-error: position may be undefined
const offset: number = client.position('news').offset;
// @ts-expect-error: private members are not declared
client._destroy();
// @ts-expect-error: close() takes no reason
client.close('bye');
// @ts-expect-error: SessionInfo.sid is a string
const info: SessionInfo = { sid: 1, wait: 30, hold: 1, requests: 2, inactivity: 45, polling: 2 };
// @ts-expect-error: a url is required
new Client();

void [state, sid, offset, info];
