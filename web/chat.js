// The chat demo: talks to the chat application at /chat through megaphone.js.
//   to the server:   {"join": ROOM, "nick": NICK}  {"say": TEXT, "room": ROOM}  {"leave": ROOM}
//   from the server: {"type":"history","room","messages":[…]}  {"type":"join","room","nick"}
//                    {"type":"message","room","nick","text","id","time"}  {"type":"leave","room","nick"}
//                    {"type":"error","text"}
// Speaking needs a token: the demo server mints one for a nickname at /demo/token?nick=NAME
// (a real app would mint it after logging its user in). The page opens its session when you
// join, with getToken fetching a token for the nickname (again before it expires, and whenever
// the server refuses it); a new nickname opens a new session. Without a token the server
// refuses the join ({"error":"forbidden"}: megaphone.js's 'forbidden' event).
import { connect } from '/megaphone.js';

const $ = (id) => document.getElementById(id);
const nickInput = $('nick');
const roomInput = $('room');
const joinButton = $('join');
const list = $('messages');
const textInput = $('text');
const sendButton = $('send');
const statusEl = $('status');
const roomTitle = $('room-title');

const NICK = /^[A-Za-z0-9_-]{1,32}$/; // what /demo/token accepts
const guest = () => `guest-${Math.floor(1000 + Math.random() * 9000)}`;
if (!nickInput.value) nickInput.value = guest();

const state = {
    room: null,     // the room joined (or being joined)
    nick: null,
    joined: false,  // our own join notice came back
    lastId: 0,      // highest message id shown for the room
};

let client = null; // the session's client, made at the first join (and again for a new nick)
window.megaphoneChat = { get client() { return client; }, state }; // handy from the console

/** A token for `nick` from the demo server. */
async function fetchToken(nick) {
    const res = await fetch(`/demo/token?nick=${encodeURIComponent(nick)}`, { cache: 'no-store' });
    const body = await res.json().catch(() => ({}));
    if (!res.ok || typeof body.token !== 'string') {
        throw new Error(body.error || `/demo/token answered ${res.status}`);
    }
    return body.token;
}

function setStatus(text, cls) {
    statusEl.textContent = text;
    statusEl.className = `status ${cls || ''}`;
}

function nearBottom() {
    return list.scrollHeight - list.scrollTop - list.clientHeight < 60;
}

function append(li) {
    const stick = nearBottom();
    const empty = list.querySelector('li.empty');
    if (empty) empty.remove();
    list.appendChild(li);
    if (stick) list.scrollTop = list.scrollHeight;
}

function time(ms) {
    const d = new Date(ms);
    return Number.isFinite(d.getTime())
        ? d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' })
        : '';
}

function messageItem(m) {
    const li = document.createElement('li');
    li.className = 'msg';
    if (m.nick === state.nick) li.classList.add('mine');
    li.dataset.id = String(m.id);
    const nick = document.createElement('span');
    nick.className = 'nick';
    nick.textContent = m.nick;
    const text = document.createElement('span');
    text.className = 'text';
    text.textContent = m.text;
    const when = document.createElement('time');
    when.className = 'time';
    when.textContent = time(m.time);
    if (Number.isFinite(m.time)) when.dateTime = new Date(m.time).toISOString();
    li.append(nick, text, when);
    return li;
}

function notice(text, cls = 'notice') {
    const li = document.createElement('li');
    li.className = cls;
    li.textContent = text;
    append(li);
}

function divider(text) {
    const li = document.createElement('li');
    li.className = 'divider';
    const span = document.createElement('span');
    span.textContent = text;
    li.appendChild(span);
    append(li);
}

function setJoined(joined) {
    state.joined = joined;
    textInput.disabled = !joined;
    sendButton.disabled = !joined;
    textInput.placeholder = joined ? `Message #${state.room}` : 'Join a room to chat';
    roomTitle.textContent = joined ? `#${state.room}` : '';
    if (joined) textInput.focus();
}

function join() {
    const nick = nickInput.value.trim() || guest();
    const room = roomInput.value.trim() || 'lobby';
    nickInput.value = nick;
    roomInput.value = room;
    if (!NICK.test(nick)) {
        notice('a nickname is 1 to 32 letters, digits, - or _', 'error');
        return;
    }
    if (client && state.nick === nick && state.room && state.room !== room) {
        client.send({ leave: state.room });
    }
    if (state.room !== room) {
        list.replaceChildren();
        state.lastId = 0;
    }
    state.room = room;
    setJoined(false);
    notice(`joining #${room} as ${nick}…`);
    if (client && state.nick === nick && client.state !== 'closed') {
        client.send({ join: room, nick });
        return;
    }
    // A new nickname (or the first join): a new session, with a token for it. Its 'open'
    // sends the join.
    state.nick = nick;
    openClient(nick);
}

function say() {
    const text = textInput.value.trim();
    if (!text || !state.joined) return;
    client.send({ say: text, room: state.room });
    textInput.value = '';
    textInput.focus();
}

$('join-form').addEventListener('submit', (e) => {
    e.preventDefault();
    join();
});
$('say-form').addEventListener('submit', (e) => {
    e.preventDefault();
    say();
});

function openClient(nick) {
    if (client) client.close(); // the old nickname's session: its 'close' is ignored below
    setStatus('connecting…', 'connecting');
    const c = connect('/chat', { getToken: () => fetchToken(nick) });
    client = c;
    const mine = (fn) => (...args) => { if (c === client) fn(...args); };

    c.on('open', mine(() => {
        setStatus(`connected as ${nick}`, 'open');
        // The session's first request (also a fresh session after a reconnect): join the room
        // (history fills any gap).
        if (state.room) c.send({ join: state.room, nick: state.nick });
    }));

    c.on('close', mine((info) => {
        setJoined(false);
        if (info.reconnecting) setStatus(`reconnecting (${info.condition})…`, 'connecting');
        else setStatus(`disconnected (${info.condition})`, 'closed');
    }));

    c.on('error', mine((err) => {
        if (/getToken/.test(err && err.message)) notice(`no token for ${nick}: ${err.message}`, 'error');
        if (c.state === 'open') setStatus('connection trouble, retrying…', 'connecting');
    }));

    c.on('forbidden', mine(({ channel }) => {
        notice(`not allowed in ${channel}: the server wants a token`, 'error');
    }));

    c.on('message', mine(onMessage));
}

function onMessage(m) {
    if (client.state === 'open' && !statusEl.textContent.startsWith('connected')) {
        setStatus(`connected as ${state.nick}`, 'open');
    }
    if (!m || typeof m !== 'object') return;
    if (m.type === 'error') {
        notice(m.text || 'error', 'error');
        return;
    }
    if (m.room !== state.room) return;
    switch (m.type) {
    case 'history': {
        const earlier = (m.messages || []).filter((h) => h && h.id > state.lastId);
        if (earlier.length) {
            divider(state.lastId ? 'missed while away' : 'earlier messages');
            for (const h of earlier) append(messageItem(h));
            state.lastId = Math.max(state.lastId, ...earlier.map((h) => h.id));
            divider('now');
        }
        break;
    }
    case 'join':
        if (m.nick === state.nick && !state.joined) {
            setJoined(true);
            notice(`you joined #${m.room}`);
        } else {
            notice(`${m.nick} joined`);
        }
        break;
    case 'leave':
        notice(`${m.nick} left`);
        break;
    case 'message':
        append(messageItem(m));
        if (m.id > state.lastId) state.lastId = m.id;
        break;
    default:
        break;
    }
}
