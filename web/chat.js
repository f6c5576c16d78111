// The chat demo: talks to the chat application at /chat through megaphone.js.
//   to the server:   {"join": ROOM, "nick": NICK}  {"say": TEXT, "room": ROOM}  {"leave": ROOM}
//   from the server: {"type":"history","room","messages":[…]}  {"type":"join","room","nick"}
//                    {"type":"message","room","nick","text","id","time"}  {"type":"leave","room","nick"}
//                    {"type":"error","text"}
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

if (!nickInput.value) nickInput.value = `guest-${Math.floor(1000 + Math.random() * 9000)}`;

const state = {
    room: null,     // the room joined (or being joined)
    nick: null,
    joined: false,  // our own join notice came back
    lastId: 0,      // highest message id shown for the room
};

const client = connect('/chat');
window.megaphoneChat = { client, state }; // handy from the console

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
    const nick = nickInput.value.trim() || `guest-${Math.floor(1000 + Math.random() * 9000)}`;
    const room = roomInput.value.trim() || 'lobby';
    nickInput.value = nick;
    roomInput.value = room;
    if (state.room && state.room !== room) client.send({ leave: state.room });
    if (state.room !== room) {
        list.replaceChildren();
        state.lastId = 0;
    }
    state.room = room;
    state.nick = nick;
    setJoined(false);
    notice(`joining #${room} as ${nick}…`);
    client.send({ join: room, nick });
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

client.on('open', () => {
    setStatus('connected', 'open');
    // A fresh session after a reconnect: join the room again (history fills any gap).
    if (state.room) client.send({ join: state.room, nick: state.nick });
});

client.on('close', (info) => {
    setJoined(false);
    if (info.reconnecting) setStatus(`reconnecting (${info.condition})…`, 'connecting');
    else setStatus(`disconnected (${info.condition})`, 'closed');
});

client.on('error', () => {
    if (client.state === 'open') setStatus('connection trouble, retrying…', 'connecting');
});

client.on('message', (m) => {
    if (client.state === 'open' && statusEl.textContent !== 'connected') setStatus('connected', 'open');
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
});
