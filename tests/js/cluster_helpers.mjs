// Helpers for the tests that run a local cluster (redis-server, nodes, nginx): processes tracked
// and stopped by pid, free ports, Redis and nginx started from a scratch directory, a one-shot
// Redis command. Nothing here touches /etc or /var, nor needs root.
//
//   const procs = new Processes('my.test.mjs', TEST_TIMEOUT_MS);  // SIGKILLs leftovers on exit
//   const redis = await startRedis(procs, { port, dir });
//   const nginx = await startNginx(procs, { conf, prefix, port });
//   await procs.stopAll();
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';

import { waitFor } from './helpers.mjs';
import { repoRoot } from './server.mjs';

export const NGINX = process.env.NGINX_BIN || '/usr/sbin/nginx';
export const REDIS = process.env.REDIS_SERVER_BIN || '/usr/bin/redis-server';

/** Whether a pid is alive (not gone, not a zombie). */
export function alive(pid) {
    try {
        const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
        return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
    } catch {
        return false;
    }
}

/** Pids of the children of `pid` (nginx's workers, a launched browser). */
export function childrenOf(pid) {
    const out = [];
    for (const d of readdirSync('/proc')) {
        if (!/^\d+$/.test(d)) continue;
        try {
            const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
            if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid) out.push(Number(d));
        } catch { /* gone */ }
    }
    return out;
}

/**
 * The processes a test started, each stopped by its pid: stop(p) (SIGTERM, then SIGKILL),
 * stopAll() (in reverse start order), and, whatever happens, SIGKILL for what is left when node
 * exits, or when the test is still running `deadlineMs` + 15 s after this was made (then this
 * process exits 1: a test past its timeout would otherwise be kept alive by its children).
 */
export class Processes {
    constructor(label, deadlineMs = null, onDeadline = () => {}) {
        this.started = []; // {name, pid, child, out, exited}
        process.on('exit', () => this.killAll());
        if (deadlineMs) {
            setTimeout(() => {
                console.error(`${label}: still running ${deadlineMs / 1000 + 15} s after start: killing everything`);
                this.killAll();
                try { onDeadline(); } catch { /* best effort */ }
                process.exit(1);
            }, deadlineMs + 15000).unref();
        }
    }

    track(name, pid, child = null) {
        const p = { name, pid, child, out: '' };
        this.started.push(p);
        return p;
    }

    /** Spawns a process with its output kept (and never blocking on a full pipe). */
    spawn(name, bin, args, { cwd = repoRoot } = {}) {
        const child = spawn(bin, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
        const p = this.track(name, child.pid, child);
        child.stdout.setEncoding('utf8').on('data', (d) => { p.out += d; });
        child.stderr.setEncoding('utf8').on('data', (d) => { p.out += d; });
        p.exited = new Promise((r) => child.once('exit', (code, signal) => r({ code, signal })));
        child.once('error', (e) => { p.out += `spawn error: ${e.message}\n`; });
        return p;
    }

    /** SIGTERM (or `signal`), then SIGKILL after `graceMs`; resolves when the process is gone. */
    async stop(p, { graceMs = 3000, signal = 'SIGTERM' } = {}) {
        if (p.pid && alive(p.pid)) {
            try { process.kill(p.pid, signal); } catch { /* gone */ }
            try {
                await waitFor(() => !alive(p.pid), { timeout: graceMs, interval: 20, message: `${p.name} to exit` });
            } catch {
                try { process.kill(p.pid, 'SIGKILL'); } catch { /* gone */ }
                await waitFor(() => !alive(p.pid), { timeout: 2000, interval: 20, message: `${p.name} to die` });
            }
        }
        this.started = this.started.filter((q) => q !== p);
    }

    /** Stops everything still tracked, the last started first. */
    async stopAll({ graceMs = 3000 } = {}) {
        for (const p of [...this.started].reverse()) {
            await this.stop(p, { graceMs }).catch(() => {});
        }
    }

    killAll() {
        for (const p of this.started) {
            try { process.kill(p.pid, 'SIGKILL'); } catch { /* gone */ }
        }
    }
}

export function canConnect(port) {
    return new Promise((resolve) => {
        const s = net.connect({ host: '127.0.0.1', port }, () => { s.destroy(); resolve(true); });
        s.on('error', () => resolve(false));
    });
}

export function portFree(port) {
    return new Promise((resolve) => {
        const srv = net.createServer();
        srv.once('error', () => resolve(false));
        srv.listen({ host: '127.0.0.1', port, exclusive: true }, () => srv.close(() => resolve(true)));
    });
}

/** A port P with P..P+count-1 free on 127.0.0.1 (nginx on P, node K on P+K, as run does). */
export async function freeRange(count) {
    for (let tries = 0; tries < 50; tries++) {
        const base = 20000 + Math.floor(Math.random() * 40000);
        let ok = true;
        for (let i = 0; i < count && ok; i++) ok = await portFree(base + i);
        if (ok) return base;
    }
    throw new Error('no free range of ports');
}

/** Fails with what to install when nginx or redis-server is missing. */
export function requireClusterTools() {
    for (const [what, bin] of [['nginx', NGINX], ['redis-server', REDIS]]) {
        if (!existsSync(bin)) {
            throw new Error(`${what} not found at ${bin}: apt-get install ${what === 'nginx' ? 'nginx-light' : 'redis-server'}`);
        }
    }
}

/** redis-server on 127.0.0.1:`port`, its data in `dir` (made); resolves once it accepts. */
export async function startRedis(procs, { port, dir }) {
    mkdirSync(dir, { recursive: true });
    const redis = procs.spawn('redis-server', REDIS, ['--bind', '127.0.0.1', '--port', String(port),
        '--dir', dir, '--appendonly', 'yes', '--save', '', '--daemonize', 'no']);
    await waitFor(() => {
        if (redis.out.includes('Ready to accept connections')) return true;
        if (!alive(redis.pid)) throw new Error(`redis-server exited:\n${redis.out}`);
        return false;
    }, { timeout: 10000, interval: 20, message: 'redis-server to be ready' });
    return redis;
}

/**
 * nginx in the foreground (the configuration must say `daemon off`) from the prefix `prefix`
 * (made, with tmp/), configured by `conf`; resolves once it listens on `port` and its workers
 * are forked, each tracked by pid. Returns {master, workers, log()}.
 */
export async function startNginx(procs, { conf, prefix, port }) {
    mkdirSync(join(prefix, 'tmp'), { recursive: true });
    for (const d of [join(prefix, '..'), prefix, join(prefix, 'tmp')]) chmodSync(d, 0o755); // workers may be 'nobody'
    writeFileSync(join(prefix, 'nginx.conf'), conf);
    const master = procs.spawn('nginx', NGINX, ['-p', `${prefix}/`, '-e', join(prefix, 'error.log'), '-c', join(prefix, 'nginx.conf')]);
    const log = () => { try { return readFileSync(join(prefix, 'error.log'), 'utf8'); } catch { return ''; } };
    await waitFor(async () => {
        if (!alive(master.pid)) throw new Error(`nginx exited:\n${master.out}\n${log()}`);
        return canConnect(port);
    }, { timeout: 10000, interval: 20, message: 'nginx to listen' });
    await waitFor(() => childrenOf(master.pid).length > 0, { timeout: 5000, message: "nginx's workers" });
    // Tracked after the master: stopAll() stops the master first (it stops its workers), and
    // only then kills the workers of a master that had to be SIGKILLed.
    const workers = childrenOf(master.pid).map((pid) => procs.track('nginx worker', pid));
    return { master, workers, log };
}

/**
 * One Redis command on a fresh connection (RESP2); resolves to its reply: a string, a number,
 * null, or an array of those; a Redis error rejects. Bounded by `timeoutMs`.
 */
export function redisCommand(port, args, { timeoutMs = 2000 } = {}) {
    return new Promise((resolve, reject) => {
        const s = net.connect({ host: '127.0.0.1', port });
        let buf = Buffer.alloc(0);
        const timer = setTimeout(() => { s.destroy(); reject(new Error(`redis ${args[0]}: no reply in ${timeoutMs} ms`)); }, timeoutMs);
        const finish = (err, value) => { clearTimeout(timer); s.destroy(); if (err) reject(err); else resolve(value); };
        s.on('error', (e) => finish(e));
        s.on('connect', () => {
            s.write(`*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(String(a))}\r\n${a}\r\n`).join('')}`);
        });
        // Parses one reply at `i`; returns [value, next] or null when more bytes are needed.
        const parse = (i) => {
            const eol = buf.indexOf('\r\n', i);
            if (eol < 0) return null;
            const type = String.fromCharCode(buf[i]);
            const line = buf.toString('utf8', i + 1, eol);
            if (type === '+') return [line, eol + 2];
            if (type === '-') return [new Error(line), eol + 2];
            if (type === ':') return [Number(line), eol + 2];
            if (type === '$') {
                const n = Number(line);
                if (n < 0) return [null, eol + 2];
                if (buf.length < eol + 2 + n + 2) return null;
                return [buf.toString('utf8', eol + 2, eol + 2 + n), eol + 2 + n + 2];
            }
            if (type === '*') {
                const n = Number(line);
                if (n < 0) return [null, eol + 2];
                const out = [];
                let at = eol + 2;
                for (let k = 0; k < n; k++) {
                    const r = parse(at);
                    if (!r) return null;
                    out.push(r[0]);
                    at = r[1];
                }
                return [out, at];
            }
            return [new Error(`unexpected Redis reply ${JSON.stringify(line)}`), eol + 2];
        };
        s.on('data', (d) => {
            buf = Buffer.concat([buf, d]);
            const r = parse(0);
            if (!r) return;
            if (r[0] instanceof Error) finish(r[0]);
            else finish(null, r[0]);
        });
    });
}

/** Prometheus text → Map of "name{labels}" (as written) → number. */
export function parseMetrics(text) {
    const out = new Map();
    for (const line of text.split('\n')) {
        const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (\S+)$/.exec(line);
        if (m) out.set(m[1], Number(m[2]));
    }
    return out;
}
