// The Megaphone admin dashboard (served at /admin; opened as /admin?token=TOKEN). It is itself a
// Megaphone application: megaphone.js keeps a session open at /admin/comet, where the server
// publishes a stats snapshot every second; the counts are drawn on the session machine's diagram
// (fsm.svg, generated from the transition table). The sessions table is fetched page by page. In a
// cluster, the snapshot lists the live nodes (hidden for a single node).
//
// The token is taken from the address once: kept in sessionStorage (a reload of this tab goes on
// working; closing the tab forgets it), taken out of the address bar (history.replaceState), and
// sent in the X-Megaphone-Token header only, never in a URL: URLs end up in access logs, proxies'
// logs and browser history. The server accepts it nowhere else for the data (app/admin.hpp).
import { connect } from './megaphone.js';

const TOKEN_KEY = 'megaphone.admin.token';
const given = new URLSearchParams(location.search);
if (given.has('token')) {
    sessionStorage.setItem(TOKEN_KEY, given.get('token'));
    given.delete('token');
    const rest = given.toString();
    history.replaceState(history.state, '', `${location.pathname}${rest ? `?${rest}` : ''}${location.hash}`);
}
const token = sessionStorage.getItem(TOKEN_KEY) || '';
const headers = { 'X-Megaphone-Token': token };
const STATES = ['waiting', 'have_request', 'have_packet', 'streaming', 'writing'];
const SVG_NS = 'http://www.w3.org/2000/svg';
const PAGE_SIZE = 20;

const $ = (id) => document.getElementById(id);
let page = 0;
let total = 0;
const badges = {}; // state → <text>
const edges = {}; // "from->to" → {g, label}

async function loadDiagram() {
    const res = await fetch('/admin/assets/fsm.svg');
    const text = await res.text();
    const box = $('diagram');
    box.innerHTML = text.slice(text.indexOf('<svg'));
    const svg = box.querySelector('svg');
    svg.removeAttribute('width');
    svg.removeAttribute('height');
    for (const g of svg.querySelectorAll('g.node')) {
        const name = g.querySelector('title').textContent;
        if (!STATES.includes(name)) continue;
        const bb = g.getBBox();
        const badge = document.createElementNS(SVG_NS, 'g');
        badge.setAttribute('class', 'count-badge');
        badge.setAttribute('id', `count-${name}`);
        const rect = document.createElementNS(SVG_NS, 'rect');
        rect.setAttribute('x', bb.x + bb.width - 30);
        rect.setAttribute('y', bb.y - 26);
        rect.setAttribute('width', 60);
        rect.setAttribute('height', 22);
        const label = document.createElementNS(SVG_NS, 'text');
        label.setAttribute('x', bb.x + bb.width);
        label.setAttribute('y', bb.y - 10);
        label.setAttribute('text-anchor', 'middle');
        label.textContent = '–';
        badge.append(rect, label);
        g.append(badge);
        badges[name] = label;
    }
    for (const g of svg.querySelectorAll('g.edge')) {
        const key = g.querySelector('title').textContent; // "from->to"
        const path = g.querySelector('path');
        if (!path) continue;
        const mid = path.getPointAtLength(path.getTotalLength() / 2);
        const label = document.createElementNS(SVG_NS, 'text');
        label.setAttribute('class', 'rate');
        label.setAttribute('x', mid.x);
        label.setAttribute('y', mid.y - 4);
        label.setAttribute('text-anchor', 'middle');
        g.append(label);
        edges[key] = { g, label };
    }
}

function show(stats) {
    for (const s of STATES) {
        if (badges[s]) badges[s].textContent = String(stats.states[s] ?? 0);
    }
    // Rates per drawn edge: the table's rows between two states share one edge.
    const rates = {};
    for (const t of stats.transitions) {
        const key = `${t.from}->${t.to}`;
        rates[key] = (rates[key] || 0) + t.rate;
    }
    for (const [key, { g, label }] of Object.entries(edges)) {
        const r = rates[key] || 0;
        label.textContent = r > 0 ? `${r.toFixed(r < 10 ? 1 : 0)}/s` : '';
        g.classList.toggle('active', r > 0);
    }
    $('stat-sessions').textContent = stats.sessions;
    $('stat-held').textContent = stats.held;
    $('stat-streams').textContent = stats.streams ?? 0;
    $('stat-rate').textContent = stats.transitions_per_second.toFixed(1);
    $('stat-transitions').textContent = stats.transitions_total;
    $('stat-created').textContent = stats.created;
    $('stat-closed').textContent = Object.values(stats.closed).reduce((a, b) => a + b, 0);
    $('stat-messages').textContent = `${stats.messages_in} / ${stats.messages_out}`;
    showNodes(stats.nodes || []);
    $('updated').textContent = `updated ${new Date(stats.time).toLocaleTimeString()}`;
    document.body.dataset.snapshots = String(Number(document.body.dataset.snapshots || 0) + 1);
}

function showNodes(nodes) {
    $('cluster').hidden = nodes.length === 0;
    $('cluster-count').textContent = String(nodes.length);
    $('nodes').replaceChildren(...nodes.map((n) => {
        const tr = document.createElement('tr');
        tr.dataset.node = n.id;
        if (n.self) tr.className = 'self';
        const id = document.createElement('td');
        id.className = 'sid';
        id.textContent = n.id;
        if (n.self) {
            const tag = document.createElement('span');
            tag.className = 'tag';
            tag.textContent = 'this node';
            id.append(tag);
        }
        const address = document.createElement('td');
        address.textContent = n.address;
        const age = document.createElement('td');
        age.className = 'num';
        age.textContent = (n.age_ms / 1000).toFixed(1);
        tr.append(id, address, age);
        return tr;
    }));
}

/** Shows why the dashboard cannot run (no token, or the server refused it). */
function refused(why) {
    $('status').textContent = why;
    $('status').className = '';
}

/** Loads the current page of the sessions table; false when the server refuses the token. */
async function loadSessions() {
    const res = await fetch(`/admin/sessions?page=${page}&size=${PAGE_SIZE}`, { headers });
    if (res.status === 403) return false;
    if (!res.ok) return true;
    const data = await res.json();
    total = data.total;
    const body = $('sessions');
    body.replaceChildren(...data.sessions.map((s) => {
        const tr = document.createElement('tr');
        const cells = [
            [s.sid, 'sid'], [s.transport], [s.state], [s.age.toFixed(1), 'num'],
            [String(s.queued), 'num'], [String(s.held), 'num'], [s.address],
        ];
        for (const [text, cls] of cells) {
            const td = document.createElement('td');
            td.textContent = text;
            if (cls) td.className = cls;
            tr.append(td);
        }
        return tr;
    }));
    const pages = Math.max(1, Math.ceil(total / PAGE_SIZE));
    $('page-info').textContent = `page ${page + 1} of ${pages} · ${total} sessions`;
    return true;
}

$('prev').addEventListener('click', () => { page = Math.max(0, page - 1); loadSessions(); });
$('next').addEventListener('click', () => {
    if ((page + 1) * PAGE_SIZE < total) page++;
    loadSessions();
});

await loadDiagram();
if (!token) {
    refused('no token: open this page as /admin?token=… (the server\'s --admin-token)');
} else if (!await loadSessions()) {
    sessionStorage.removeItem(TOKEN_KEY);
    refused('forbidden: wrong admin token (open /admin?token=… again)');
} else {
    const client = connect('/admin/comet', { wait: 30, headers });
    client.on('open', () => { $('status').textContent = 'live'; $('status').className = 'live'; });
    client.on('close', (c) => { $('status').textContent = `closed: ${c.condition}`; $('status').className = ''; });
    client.on('message', (m) => { if (m && m.type === 'stats') show(m); });
    window.megaphoneAdmin = { client };
    setInterval(loadSessions, 2000);
}
