// The client as a web developer consumes it: web/megaphone.d.ts type-checks an app using the whole
// API and refuses misuses (tsc --noEmit, strict), and web/package.json packs (npm pack) into a
// tarball that installs into a fresh project (npm install, offline: it has no dependencies), which
// Node imports and tsc resolves through the package's "exports"/"types".
// Needs node_modules/typescript (npm ci; scripts/setup) and npm; no server. Everything it writes
// goes to a temporary directory, removed at the end.
// Run: node --test tests/js/client_package.test.mjs  (or ctest -R js.client_package)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, copyFileSync, realpathSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const web = join(root, 'web');
const typedApp = join(root, 'tests/js/typed-app');
const tsc = join(root, 'node_modules/typescript/bin/tsc');
const npm = process.env.MEGAPHONE_NPM || 'npm';

// The keys of each payload: those the running client gives, and those web/megaphone.d.ts declares
// (both checked below).
const DECLARED = {
    open: ['hold', 'inactivity', 'polling', 'requests', 'sid', 'wait'],
    close: ['condition', 'reason', 'reconnecting'],
    recovered: ['channel', 'epoch', 'offset', 'recovered'],
    forbidden: ['channel'],
};

let work;

/** Runs a command; resolves {code, stdout, stderr} (never rejects on a non-zero exit). */
function run(file, args, options = {}) {
    return new Promise((resolvePromise, reject) => {
        execFile(file, args, { timeout: 30000, maxBuffer: 16 << 20, ...options }, (err, stdout, stderr) => {
            if (err && typeof err.code !== 'number') return reject(new Error(`${file} ${args.join(' ')}: ${err.message}\n${stderr}`));
            resolvePromise({ code: err ? err.code : 0, stdout, stderr });
        });
    });
}

const runTsc = (args, cwd) => run(process.execPath, [tsc, ...args, '--pretty', 'false'], { cwd });

/** npm with its cache, logs and config in the temporary directory: nothing of the user's touched. */
function runNpm(args, cwd) {
    const env = {
        ...process.env,
        npm_config_cache: join(work, 'npm-cache'),
        npm_config_userconfig: join(work, 'npmrc'),
        npm_config_update_notifier: 'false',
        npm_config_fund: 'false',
        npm_config_audit: 'false',
        npm_config_loglevel: 'error',
    };
    return run(npm, args, { cwd, env });
}

function ok(result, what) {
    assert.equal(result.code, 0, `${what} failed (exit ${result.code}):\n${result.stdout}\n${result.stderr}`);
}

before(() => {
    assert.ok(existsSync(tsc), `${tsc} is missing: run npm ci (scripts/setup installs the root devDependencies)`);
    work = realpathSync(mkdtempSync(join(tmpdir(), 'megaphone-client-package-')));
    writeFileSync(join(work, 'npmrc'), '');
});

after(() => {
    if (work) rmSync(work, { recursive: true, force: true });
});

test('the example app type-checks against web/megaphone.d.ts (strict), and every misuse is refused', async () => {
    // misuse.ts's @ts-expect-error lines fail this run if their error disappears.
    const r = await runTsc(['-p', join(typedApp, 'tsconfig.json')], typedApp);
    ok(r, 'tsc -p tests/js/typed-app');
});

test('each @ts-expect-error in misuse.ts marks a real error, and nothing else is one', async () => {
    // Without the directives, tsc must report errors on exactly the lines they marked: so the
    // misuses are caught by the declarations, not by an accident (an unresolved import, any).
    const source = readFileSync(join(typedApp, 'misuse.ts'), 'utf8').split('\n');
    const marked = new Set();
    const stripped = source.map((line, i) => {
        if (!/^\s*\/\/ @ts-expect-error/.test(line)) return line;
        marked.add(i + 2); // the line after the directive, 1-based
        return '';
    });
    assert.ok(marked.size >= 15, `misuse.ts has only ${marked.size} @ts-expect-error lines`);
    const dir = join(work, 'stripped');
    mkdirSync(dir);
    writeFileSync(join(dir, 'misuse.ts'), stripped.join('\n'));
    writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify({
        compilerOptions: {
            strict: true, noEmit: true, target: 'es2022', lib: ['es2022', 'dom'], types: [],
            module: 'esnext', moduleResolution: 'bundler',
            paths: { 'megaphone-client': [join(web, 'megaphone.d.ts')] },
        },
        files: ['misuse.ts'],
    }));
    const r = await runTsc(['-p', join(dir, 'tsconfig.json')], dir);
    assert.notEqual(r.code, 0, 'misuse.ts without its @ts-expect-error directives type-checks');
    const errorLines = new Set();
    for (const m of r.stdout.matchAll(/^misuse\.ts\((\d+),\d+\): error (TS\d+)/gm)) errorLines.add(Number(m[1]));
    const unexpected = [...errorLines].filter((l) => !marked.has(l));
    const missed = [...marked].filter((l) => !errorLines.has(l));
    assert.deepEqual(unexpected, [], `errors on lines no directive marks:\n${r.stdout}`);
    assert.deepEqual(missed, [], `marked lines that are no error:\n${r.stdout}`);
});

test('web/package.json: the project\'s version, ESM exports with types', () => {
    const pkg = JSON.parse(readFileSync(join(web, 'package.json'), 'utf8'));
    const cmake = readFileSync(join(root, 'CMakeLists.txt'), 'utf8');
    const version = /project\(megaphone\s+VERSION\s+([0-9.]+)/.exec(cmake);
    assert.ok(version, 'no project(megaphone VERSION ...) in CMakeLists.txt');
    assert.equal(pkg.version, version[1], 'web/package.json version differs from CMakeLists.txt');
    assert.equal(pkg.type, 'module');
    assert.deepEqual(pkg.exports['.'], { types: './megaphone.d.ts', default: './megaphone.js' });
    assert.equal(pkg.types, './megaphone.d.ts');
    assert.deepEqual(pkg.dependencies ?? {}, {}, 'the client has no dependencies');
});

test('npm pack + npm install into a scratch project: Node imports it, tsc finds its types', async () => {
    // Pack: the tarball holds the client, its declarations and package.json, nothing else of web/
    // (the demo pages, the admin dashboard).
    const packDir = join(work, 'pack');
    mkdirSync(packDir);
    const packed = await runNpm(['pack', web, '--pack-destination', packDir, '--json'], packDir);
    ok(packed, 'npm pack web/');
    const [info] = JSON.parse(packed.stdout);
    const files = info.files.map((f) => f.path).sort();
    assert.deepEqual(files, ['megaphone.d.ts', 'megaphone.js', 'package.json']);
    const tarball = join(packDir, info.filename);
    assert.ok(existsSync(tarball), `no ${tarball}`);

    // A fresh app installs the tarball: no registry needed (no dependencies).
    const app = join(work, 'app');
    mkdirSync(app);
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'scratch-app', version: '1.0.0', private: true, type: 'module' }));
    const installed = await runNpm(['install', '--offline', '--no-save', tarball], app);
    ok(installed, `npm install --offline ${info.filename}`);
    const pkgDir = join(app, 'node_modules', 'megaphone-client');
    assert.equal(realpathSync(pkgDir), pkgDir, 'the package is a copy, not a link to the repository');
    assert.deepEqual(readFileSync(join(pkgDir, 'megaphone.js')), readFileSync(join(web, 'megaphone.js')));

    // Node imports it by name and it works: a stub fetch plays the server (a creation answer, then
    // a message, a recovery notice, a forbidden notice and a terminate); each event's payload has
    // exactly the keys the declarations give it.
    writeFileSync(join(app, 'smoke.mjs'), `
import megaphone, { connect, Client } from 'megaphone-client';
const out = { exports: { connect: typeof connect, Client: typeof Client, default: megaphone.connect === connect } };
let created = false;
const fetch = async (url, init) => {
    const body = JSON.parse(init.body);
    let answer;
    if (!created) {
        created = true;
        answer = { sid: 'n0-smoke', wait: 1, hold: 1, requests: 2, inactivity: 45, polling: 2, rid: body.rid, messages: [] };
    } else {
        answer = { rid: body.rid, type: 'terminate', condition: 'system-shutdown', messages: [
            { hello: 'world' },
            { channel: 'news', recovered: false, epoch: 'E', offset: 3 },
            { error: 'forbidden', channel: 'secret' },
        ] };
    }
    return { status: 200, text: async () => JSON.stringify(answer) };
};
const client = connect('http://example.invalid/comet', { fetch, reconnect: false });
out.instance = client instanceof Client;
out.events = {};
for (const e of ['open', 'message', 'recovered', 'forbidden', 'close']) client.on(e, (p) => { out.events[e] = p; });
await new Promise((resolve, reject) => {
    client.on('close', resolve);
    setTimeout(() => reject(new Error('no close within 5 s')), 5000).unref();
});
out.state = client.state;
console.log(JSON.stringify(out));
`);
    const smoke = await run(process.execPath, ['smoke.mjs'], { cwd: app });
    ok(smoke, 'node smoke.mjs (import megaphone-client)');
    const out = JSON.parse(smoke.stdout);
    assert.deepEqual(out.exports, { connect: 'function', Client: 'function', default: true });
    assert.equal(out.instance, true);
    assert.equal(out.state, 'closed');
    for (const [event, keys] of Object.entries(DECLARED)) {
        assert.ok(out.events[event], `no '${event}' event`);
        assert.deepEqual(Object.keys(out.events[event]).sort(), keys, `'${event}' payload keys`);
    }
    assert.deepEqual(out.events.message, { hello: 'world' });
    assert.equal(out.events.close.condition, 'system-shutdown');
    assert.equal(out.events.close.reconnecting, false);

    // tsc resolves 'megaphone-client' to the installed declarations through "exports"/"types",
    // as a Node ESM app (nodenext) and as a bundled one (bundler); with no DOM and no @types/node
    // (the declarations need neither), and skipLibCheck off so that they are checked too.
    copyFileSync(join(typedApp, 'app.ts'), join(app, 'app.ts'));
    copyFileSync(join(typedApp, 'misuse.ts'), join(app, 'misuse.ts'));
    writeFileSync(join(app, 'env.d.ts'), 'declare const console: { log(...data: unknown[]): void };\n');
    // The payload keys checked against the running client above are exactly the declared ones.
    writeFileSync(join(app, 'keys.ts'), [
        "import type { ClientEventMap } from 'megaphone-client';",
        ...Object.entries(DECLARED).map(([event, keys]) =>
            `export const ${event}: Record<keyof ClientEventMap['${event}'], true> = { ${keys.map((k) => `${k}: true`).join(', ')} };`),
    ].join('\n') + '\n');
    const base = {
        strict: true, noEmit: true, target: 'es2022', lib: ['es2022'], types: [],
        verbatimModuleSyntax: true, noUnusedLocals: true, skipLibCheck: false,
    };
    const configs = {
        'tsconfig.node.json': { ...base, module: 'nodenext', moduleResolution: 'nodenext' },
        'tsconfig.bundler.json': { ...base, module: 'esnext', moduleResolution: 'bundler' },
    };
    const installedTypes = join(pkgDir, 'megaphone.d.ts');
    for (const [name, compilerOptions] of Object.entries(configs)) {
        writeFileSync(join(app, name), JSON.stringify({ compilerOptions, files: ['env.d.ts', 'app.ts', 'misuse.ts', 'keys.ts'] }));
        const r = await runTsc(['-p', join(app, name), '--listFiles'], app);
        ok(r, `tsc -p ${name} in the scratch app`);
        const listed = r.stdout.split('\n').map((l) => l.trim()).filter(Boolean);
        assert.ok(listed.includes(installedTypes), `${name}: tsc did not use ${installedTypes}:\n${r.stdout}`);
        assert.ok(!listed.some((f) => f.startsWith(web + '/')), `${name}: tsc read the repository's web/`);
    }
});
