// Starts a Megaphone server binary for the JS tests and stops it when done (or when node exits).
//
//   const server = await startServer('megaphone', ['--wait', '1']);
//   server.url          // 'http://127.0.0.1:PORT': the public port (clients)
//   server.internalUrl  // 'http://127.0.0.1:PORT': the internal door (POST /publish without a key)
//   await server.stop();
//
// The binary comes from the environment: MEGAPHONE_BIN for 'megaphone', MEGAPHONE_DEMO_BIN for
// 'megaphone-demo' (tests/js/CMakeLists.txt sets both). It is started with `--port 0`,
// `--internal-port 0` (unless the arguments give an --internal-port: the binaries' default, 9080,
// would collide between servers run at once) and the given arguments, from the repository root,
// and must print `megaphone: internal door on URL` then `megaphone: listening on URL` on stdout
// within 10 s. Publishing without a key is served on the internal door only: POST
// `${server.internalUrl}/publish/{channel}`, or start the server with `--publish-key KEY` and send
// `Authorization: Bearer KEY` to the public port.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

const ENV = {
    megaphone: 'MEGAPHONE_BIN',
    'megaphone-demo': 'MEGAPHONE_DEMO_BIN',
    'megaphone-xmpp': 'MEGAPHONE_XMPP_BIN',
    'megaphone-chaos-server': 'MEGAPHONE_CHAOS_BIN',
};
const running = new Set();

process.on('exit', () => {
    for (const child of running) {
        try { child.kill('SIGKILL'); } catch { /* already gone */ }
    }
});
for (const signal of ['SIGINT', 'SIGTERM']) {
    process.once(signal, () => process.exit(128 + (signal === 'SIGINT' ? 2 : 15)));
}

/** The path of a server binary from the environment; throws a clear error if it is not set. */
export function binaryPath(name) {
    const variable = ENV[name];
    const path = process.env[variable];
    if (!path) {
        throw new Error(`${variable} is not set: run these tests through ctest (tests/js/CMakeLists.txt), ` +
            `or set ${variable}=<build>/bin/${name}`);
    }
    if (!existsSync(path)) throw new Error(`${variable}=${path} does not exist: build it first`);
    return path;
}

/**
 * Spawns `name` ('megaphone' or 'megaphone-demo') with `--port 0 [--internal-port 0] ...args`.
 * Resolves to {url, port, internalUrl, internalPort, process, output(), stop()} once the server
 * is listening.
 */
export function startServer(name, args = [], { timeoutMs = 10000 } = {}) {
    const bin = binaryPath(name);
    const ownInternalPort = args.some((a) => a === '--internal-port' || a.startsWith('--internal-port='));
    const child = spawn(bin, ['--port', '0', ...(ownInternalPort ? [] : ['--internal-port', '0']), ...args], {
        cwd: repoRoot,
        stdio: ['ignore', 'pipe', 'pipe'],
    });
    running.add(child);
    let out = '';
    let err = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d) => { err += d; });
    child.stdout.setEncoding('utf8');

    const exited = new Promise((resolveExit) => {
        child.once('exit', (code, signal) => {
            running.delete(child);
            resolveExit({ code, signal });
        });
    });

    return new Promise((resolveStart, rejectStart) => {
        const timer = setTimeout(() => {
            child.kill('SIGKILL');
            rejectStart(new Error(`${name} did not print "megaphone: listening on ..." within ${timeoutMs} ms\n` +
                `stdout: ${out}\nstderr: ${err}`));
        }, timeoutMs);
        child.once('error', (e) => {
            clearTimeout(timer);
            rejectStart(new Error(`cannot start ${bin}: ${e.message}`));
        });
        exited.then(({ code, signal }) => {
            clearTimeout(timer);
            rejectStart(new Error(`${name} exited (code ${code}, signal ${signal}) before listening\n` +
                `stdout: ${out}\nstderr: ${err}`));
        });
        child.stdout.on('data', (d) => {
            out += d;
            const m = /megaphone: listening on (http:\/\/[^\s:]+:(\d+))/.exec(out);
            const internal = /megaphone: internal door on (http:\/\/[^\s:]+:(\d+))/.exec(out);
            if (m && !internal) {
                clearTimeout(timer);
                child.kill('SIGKILL');
                rejectStart(new Error(`${name} printed no "megaphone: internal door on ..." line before ` +
                    `"listening on"\nstdout: ${out}\nstderr: ${err}`));
                return;
            }
            if (m) {
                clearTimeout(timer);
                // Keep reading (and keeping) what it prints, so it never blocks on a full pipe.
                child.stdout.removeAllListeners('data');
                child.stdout.on('data', (more) => { out += more; });
                resolveStart({
                    url: m[1],
                    port: Number(m[2]),
                    internalUrl: internal[1],
                    internalPort: Number(internal[2]),
                    process: child,
                    exited, // resolves to {code, signal} when the process ends
                    output: () => ({ stdout: out, stderr: err }),
                    async stop() {
                        if (child.exitCode !== null || child.signalCode !== null) return exited;
                        child.kill('SIGTERM');
                        const killer = setTimeout(() => child.kill('SIGKILL'), 5000);
                        const result = await exited;
                        clearTimeout(killer);
                        return result;
                    },
                });
            }
        });
    });
}
