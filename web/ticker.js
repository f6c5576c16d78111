// The ticker demo: subscribes to the hub channel "ticker" through /comet and charts the last
// 100 prices on a <canvas>. Messages: {"channel":"ticker","data":{"symbol","price","time","seq"}}.
import { connect } from '/megaphone.js';

const POINTS = 100;
const $ = (id) => document.getElementById(id);
const canvas = $('chart');
const ctx = canvas.getContext('2d');
const priceEl = $('price');
const changeEl = $('change');
const countEl = $('count');
const statusEl = $('status');

const points = [];      // {price, time, seq}
const arrivals = [];    // local arrival times, for the rate
let count = 0;
let firstPrice = null;
let dirty = true;

// No token: a visitor may subscribe to "ticker" but publish nowhere (the server's
// --client-publish default); a try, client.publish('ticker', …), is refused with 'forbidden'.
const client = connect('/comet');
const forbidden = []; // channels the server refused
window.megaphoneTicker = { client, points, forbidden };
client.on('forbidden', ({ channel }) => forbidden.push(channel));

function setStatus(text, cls) {
    statusEl.textContent = text;
    statusEl.className = `status ${cls || ''}`;
}

client.on('open', () => setStatus('live', 'open'));
client.on('close', (info) => setStatus(info.reconnecting ? 'reconnecting…' : `disconnected (${info.condition})`,
    info.reconnecting ? 'connecting' : 'closed'));
client.on('error', () => setStatus('connection trouble, retrying…', 'connecting'));
client.subscribe('ticker');

const fmt = (p) => (Number.isFinite(p) ? p.toFixed(2) : '–');

client.on('message', (m) => {
    if (!m || m.channel !== 'ticker' || !m.data || typeof m.data.price !== 'number') return;
    const d = m.data;
    if (statusEl.textContent !== 'live') setStatus('live', 'open');
    count++;
    points.push({ price: d.price, time: d.time, seq: d.seq });
    if (points.length > POINTS) points.shift();
    if (firstPrice === null) firstPrice = d.price;
    const now = performance.now();
    arrivals.push(now);
    while (arrivals.length && now - arrivals[0] > 5000) arrivals.shift();

    $('symbol').textContent = d.symbol || 'MEGA';
    priceEl.textContent = fmt(d.price);
    countEl.textContent = String(count);
    $('seq').textContent = d.seq ?? '–';
    const prices = points.map((p) => p.price);
    $('low').textContent = fmt(Math.min(...prices));
    $('high').textContent = fmt(Math.max(...prices));
    const change = d.price - firstPrice;
    const pct = firstPrice ? (change / firstPrice) * 100 : 0;
    changeEl.textContent = `${change >= 0 ? '+' : '−'}${Math.abs(change).toFixed(2)} (${Math.abs(pct).toFixed(2)}%)`;
    changeEl.className = `change ${change >= 0 ? 'up' : 'down'}`;
    if (arrivals.length > 1) {
        const span = (arrivals[arrivals.length - 1] - arrivals[0]) / 1000;
        $('rate').textContent = span > 0 ? ((arrivals.length - 1) / span).toFixed(1) : '–';
    }
    dirty = true;
});

function draw() {
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth;
    const h = canvas.clientHeight;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
        canvas.width = Math.round(w * dpr);
        canvas.height = Math.round(h * dpr);
    }
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);

    const style = getComputedStyle(document.documentElement);
    const accent = style.getPropertyValue('--accent').trim() || '#e8590c';
    const line = style.getPropertyValue('--line').trim() || '#e2e5eb';
    const muted = style.getPropertyValue('--muted').trim() || '#6b7386';
    const pad = { left: 8, right: 64, top: 12, bottom: 12 };
    const plotW = w - pad.left - pad.right;
    const plotH = h - pad.top - pad.bottom;

    let lo = Infinity;
    let hi = -Infinity;
    for (const p of points) {
        lo = Math.min(lo, p.price);
        hi = Math.max(hi, p.price);
    }
    if (!points.length) {
        lo = 0;
        hi = 1;
    }
    if (hi - lo < 0.5) {
        const mid = (hi + lo) / 2;
        lo = mid - 0.25;
        hi = mid + 0.25;
    }
    const margin = (hi - lo) * 0.08;
    lo -= margin;
    hi += margin;
    const x = (i) => pad.left + (plotW * i) / (POINTS - 1);
    const y = (p) => pad.top + plotH * (1 - (p - lo) / (hi - lo));

    // Grid and price labels.
    ctx.font = '12px system-ui, sans-serif';
    ctx.textBaseline = 'middle';
    ctx.lineWidth = 1;
    for (let i = 0; i <= 4; i++) {
        const v = lo + ((hi - lo) * i) / 4;
        const gy = Math.round(y(v)) + 0.5;
        ctx.strokeStyle = line;
        ctx.beginPath();
        ctx.moveTo(pad.left, gy);
        ctx.lineTo(pad.left + plotW, gy);
        ctx.stroke();
        ctx.fillStyle = muted;
        ctx.fillText(v.toFixed(2), pad.left + plotW + 8, gy);
    }

    if (!points.length) {
        ctx.fillStyle = muted;
        ctx.textAlign = 'center';
        ctx.fillText('waiting for the first update…', pad.left + plotW / 2, pad.top + plotH / 2);
        ctx.textAlign = 'start';
        return;
    }
    // The newest point sits at the right edge. Soft fill under the line first, then the line.
    const offset = POINTS - points.length;
    const trace = () => {
        ctx.beginPath();
        points.forEach((p, i) => {
            if (i === 0) ctx.moveTo(x(offset + i), y(p.price));
            else ctx.lineTo(x(offset + i), y(p.price));
        });
    };
    trace();
    ctx.lineTo(x(offset + points.length - 1), pad.top + plotH);
    ctx.lineTo(x(offset), pad.top + plotH);
    ctx.closePath();
    const grad = ctx.createLinearGradient(0, pad.top, 0, pad.top + plotH);
    grad.addColorStop(0, 'rgba(232, 89, 12, 0.22)');
    grad.addColorStop(1, 'rgba(232, 89, 12, 0)');
    ctx.fillStyle = grad;
    ctx.fill();
    trace();
    ctx.strokeStyle = accent;
    ctx.lineWidth = 2;
    ctx.lineJoin = 'round';
    ctx.stroke();

    // The last price: a dot and a tag on the axis.
    const last = points[points.length - 1];
    const lx = x(POINTS - 1);
    const ly = y(last.price);
    ctx.fillStyle = accent;
    ctx.beginPath();
    ctx.arc(lx, ly, 4, 0, Math.PI * 2);
    ctx.fill();
    ctx.fillRect(pad.left + plotW + 4, ly - 10, pad.right - 6, 20);
    ctx.fillStyle = '#fff';
    ctx.font = '600 12px system-ui, sans-serif';
    ctx.fillText(last.price.toFixed(2), pad.left + plotW + 8, ly);
}

function frame() {
    if (dirty) {
        dirty = false;
        draw();
    }
    requestAnimationFrame(frame);
}
window.addEventListener('resize', () => { dirty = true; });
requestAnimationFrame(frame);
