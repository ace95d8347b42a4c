/**
 * The package as users install it: `npm pack` of this checkout (which builds dist/), then
 * `npm install` of the tarball in an empty folder. The installed `dkv` runs the compiled build
 * (tsx, a development dependency, is not there), `clustron-dkv` and `clustron-dkv/server` import
 * with their types, and a program using both serves and answers a put and a get.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freeBase } from '../server/cluster-harness.js';

const repo = join(import.meta.dirname, '..', '..');
const tsc = join(repo, 'node_modules', 'typescript', 'bin', 'tsc');

/** The environment of an installed package's user: no DKV_FROM_SOURCE the caller may have set. */
function userEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.DKV_FROM_SOURCE;
  delete env.NODE_OPTIONS;
  return env;
}

function run(command: string, args: readonly string[], cwd: string, timeout = 180_000): { stdout: string; stderr: string } {
  const result = spawnSync(command, args, { cwd, env: userEnv(), encoding: 'utf8', timeout });
  if (result.status !== 0) {
    throw new Error(`${command} ${args.join(' ')} exited ${result.status ?? result.signal}:\n${result.stdout}\n${result.stderr}`);
  }
  return { stdout: result.stdout, stderr: result.stderr };
}

describe('the packed package', () => {
  let dir: string;
  let app: string;
  let files: string[];

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'dkv-pack-'));
    app = join(dir, 'app');
    mkdirSync(app);
    // Packed from a copy of the checkout: `npm pack` builds (prepare), and rebuilding this
    // checkout's dist/ would change the files the other suites' processes are running.
    const copy = join(dir, 'checkout');
    const listed = spawnSync('git', ['ls-files', '--cached', '--others', '--exclude-standard', '-z'], { cwd: repo, encoding: 'utf8' });
    if (listed.status !== 0) throw new Error(`git ls-files failed: ${listed.stderr}`);
    for (const file of listed.stdout.split('\0').filter((f) => f !== '' && existsSync(join(repo, f)))) {
      mkdirSync(dirname(join(copy, file)), { recursive: true });
      copyFileSync(join(repo, file), join(copy, file));
    }
    symlinkSync(join(repo, 'node_modules'), join(copy, 'node_modules'), 'dir');
    const packed = run('npm', ['pack', '--json', '--pack-destination', dir], copy);
    const [summary] = JSON.parse(packed.stdout) as { filename: string; files: { path: string }[] }[];
    files = summary!.files.map((f) => f.path);
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }));
    run('npm', ['install', join(dir, summary!.filename), '--no-audit', '--no-fund', '--prefer-offline'], app);
  }, 300_000);

  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('ships the build, the protos and the bin entries, and no tests or TypeScript sources', () => {
    expect(files).toContain('dist/src/client/index.js');
    expect(files).toContain('dist/src/client/index.d.ts');
    expect(files).toContain('dist/src/server/index.js');
    expect(files).toContain('bin/dkv.js');
    // The malloc_trim addon's source and build script (src/native/), and the addon itself where
    // prepare could build it (CI installs a C compiler: there it must be in).
    expect(files).toContain('src/native/malloc-trim.c');
    expect(files).toContain('src/native/build.mjs');
    if (process.env.CI === 'true') expect(files).toContain('dist/native/malloc-trim.node');
    expect(files).toContain('proto/etcd/etcdserverpb/rpc.proto');
    expect(files.filter((f) => f.startsWith('test/') || f.includes('.test.'))).toEqual([]);
    expect(files.filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))).toEqual([]);
    expect(files).not.toContain('dist/.tsbuildinfo');
    // tsx and the other development tools are not installed with it.
    expect(readdirSync(join(app, 'node_modules'))).not.toContain('tsx');
    expect(readdirSync(join(app, 'node_modules'))).not.toContain('vitest');
  });

  it('installs a dkv command that runs the compiled build', () => {
    const dkv = join(app, 'node_modules', '.bin', 'dkv');
    expect(run(dkv, ['--version'], app).stdout).toMatch(/^DKV Version: \d+\.\d+\.\d+\netcd API Version: 3\.5\.0\n/);
    expect(run(dkv, ['--help'], app).stdout).toContain('Usage: dkv <command>');
  });

  it('type-checks a program importing clustron-dkv and clustron-dkv/server', () => {
    writeFileSync(
      join(app, 'typed.ts'),
      [
        "import { DkvClient, EtcdChannel, type DkvClientOptions } from 'clustron-dkv';",
        "import { startServer, type DkvNode } from 'clustron-dkv/server';",
        "const options: DkvClientOptions = { servers: [{ address: '127.0.0.1:2379', priority: 1 }], reconnect: { maxDelayMs: 1000 } };",
        'const start: (args: readonly string[]) => Promise<DkvNode> = startServer;',
        'export { options, start, DkvClient, EtcdChannel };',
        '// A wrong type must be caught, so the declarations are really used:',
        '// @ts-expect-error',
        'const wrong: DkvClientOptions = { endpoints: 42 };',
        'export { wrong };',
        '',
      ].join('\n'),
    );
    writeFileSync(
      join(app, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          target: 'ES2022',
          strict: true,
          noEmit: true,
          skipLibCheck: false,
          types: ['node'],
          typeRoots: [join(app, 'node_modules', '@types'), join(repo, 'node_modules', '@types')],
        },
        files: ['typed.ts'],
      }),
    );
    run(process.execPath, [tsc, '-p', app], app);
  });

  it('runs a program that embeds a node and talks to it through DkvClient', async () => {
    const base = await freeBase(1);
    const client = `http://127.0.0.1:${base}`;
    const peer = `http://127.0.0.1:${base + 1}`;
    writeFileSync(
      join(app, 'embedded.mjs'),
      `
import { DkvClient } from 'clustron-dkv';
import { startServer } from 'clustron-dkv/server';
const node = await startServer(['--name', 'p1', '--data-dir', ${JSON.stringify(join(dir, 'data'))},
  '--listen-client-urls', '${client}', '--advertise-client-urls', '${client}',
  '--listen-peer-urls', '${peer}', '--initial-advertise-peer-urls', '${peer}',
  '--initial-cluster', 'p1=${peer}', '--log-level', 'error']);
const dkv = new DkvClient({ servers: [{ address: '127.0.0.1:${base}' }] });
await dkv.put('greeting', 'hello');
console.log((await dkv.get('greeting')).value.toString());
dkv.close();
await node.stop();
`,
    );
    expect(run(process.execPath, ['embedded.mjs'], app, 60_000).stdout.trim()).toBe('hello');
  });

  it('runs the README\'s "Use from Node.js" examples as written', async () => {
    const readme = readFileSync(join(repo, 'README.md'), 'utf8');
    const section = readme.slice(readme.indexOf('## Use from Node.js'), readme.indexOf('\n## ', readme.indexOf('## Use from Node.js') + 1));
    const examples = [...section.matchAll(/```js\n([\s\S]*?)```/g)].map((m) => m[1]!);
    expect(examples.length).toBeGreaterThanOrEqual(3);
    // The etcd3 client is this repository's development dependency; the app borrows it.
    symlinkSync(join(repo, 'node_modules', 'etcd3'), join(app, 'node_modules', 'etcd3'), 'dir');
    for (const [i, example] of examples.entries()) {
      const base = await freeBase(1);
      // The examples name the ports of "npm start"; here one node on free ports stands for the
      // first, and the others are ports nothing listens on (the client must cope).
      const code = example
        .replaceAll('127.0.0.1:2379', `127.0.0.1:${base}`)
        .replaceAll('127.0.0.1:2389', `127.0.0.1:${base + 3}`)
        .replaceAll('127.0.0.1:2399', `127.0.0.1:${base + 4}`)
        .replaceAll('/tmp/n1', join(dir, `readme-${i}`));
      const embeds = code.includes('startServer(');
      const imports = code.split('\n').filter((line) => line.startsWith('import '));
      const body = code.split('\n').filter((line) => !line.startsWith('import ')).join('\n');
      const peer = `http://127.0.0.1:${base + 1}`;
      const script = embeds
        ? code
        : [
            ...imports,
            "import { startServer as startExampleNode } from 'clustron-dkv/server';",
            `const exampleNode = await startExampleNode(['--name', 'r${i}', '--data-dir', ${JSON.stringify(join(dir, `readme-node-${i}`))}, '--listen-client-urls', 'http://127.0.0.1:${base}', '--advertise-client-urls', 'http://127.0.0.1:${base}', '--listen-peer-urls', '${peer}', '--initial-advertise-peer-urls', '${peer}', '--initial-cluster', 'r${i}=${peer}', '--log-level', 'error']);`,
            'try {',
            body,
            '} finally {',
            '  await exampleNode.stop();',
            '}',
          ].join('\n');
      writeFileSync(join(app, `readme-${i}.mjs`), script);
      const output = run(process.execPath, [`readme-${i}.mjs`], app, 60_000).stdout;
      // Every "// value" comment after a console.log is what the example promises to print.
      for (const promised of [...example.matchAll(/console\.log\(.*\); \/\/ (\S+)/g)].map((m) => m[1]!)) {
        expect(output.split('\n')).toContain(promised);
      }
    }
  });
});
