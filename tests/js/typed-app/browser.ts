// The browser side (lib "dom"): the real fetch fits the `fetch` option, and listeners may use the
// page. Checked with tsconfig.json here only (the scratch project checks the package without DOM).
import { connect } from 'megaphone-client';

const client = connect(new URL('/comet', location.href).href, {
    fetch: window.fetch.bind(window),
    headers: { 'X-Megaphone-Token': sessionStorage.getItem('token') ?? '' },
});
client.on('message', (message) => {
    const li = document.createElement('li');
    li.textContent = JSON.stringify(message);
    document.body.append(li);
});
window.addEventListener('beforeunload', () => client.close());

// The browser's own EventSource fits the `EventSource` option (the default where there is one).
const streaming = connect('/comet', { EventSource: window.EventSource, transports: ['long-poll', 'sse'] });
streaming.on('transport', ({ transport }) => document.body.classList.toggle('streaming', transport === 'sse'));
// And the browser's own WebSocket fits the `WebSocket` option (the default where there is one).
const socket = connect('/comet', { WebSocket: window.WebSocket, transports: ['long-poll', 'websocket', 'sse'] });
socket.on('transport', ({ transport }) => document.body.classList.toggle('socket', transport === 'websocket'));
