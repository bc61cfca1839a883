// `sa-engine demo --annotate` as a user runs it: the whole engine on its own dev stack (a state
// folder of its own, free ports), the real Python trainer, simulated annotators, and this test as
// the person the stage-1 round waits for, working through the annotation service's HTTP API with
// the token the demo printed. Then the engine report is checked: written, and every section filled
// from this run's measurements.
//
// Needs the dev tools and the trainer's venv (`npm run setup`, which `npm test` runs first).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { AnnotationApi } from '../../client/annotation-api.ts';
import { compressRle, encodeMask } from '../../lib/rle.ts';

const REPO = resolve(import.meta.dirname, '../..');
const CLI = join(REPO, 'bin/sa-engine.mjs');
const stateDir = mkdtempSync(join(tmpdir(), 'sae-demo-'));
const env = { ...process.env, SAE_STATE_DIR: stateDir };
let demoProcess: ChildProcess | undefined;

afterAll(async () => {
  // Only still there when the test failed: the demo and its workers, trainer and annotators.
  if (demoProcess?.pid && demoProcess.exitCode === null) process.kill(-demoProcess.pid, 'SIGKILL');

  await new Promise((done) =>
    spawn('node', [CLI, 'dev', 'down'], { env, stdio: 'ignore' }).on('close', done),
  );
  rmSync(stateDir, { recursive: true, force: true });
});

/** The demo's output so far, and a promise for each line a test waits on. */
function startDemo() {
  const child = spawn('node', [CLI, 'demo', '--annotate'], { env, cwd: REPO, detached: true });
  demoProcess = child;
  let output = '';
  const waiters: { pattern: RegExp; resolve: (m: RegExpMatchArray) => void }[] = [];
  const onData = (chunk: Buffer) => {
    output += chunk.toString('utf8');
    for (const w of [...waiters]) {
      const m = output.match(w.pattern);
      if (m) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(m);
      }
    }
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
  const exited = new Promise<number | null>((done) => child.on('close', done));
  return {
    output: () => output,
    exited,
    waitFor: (pattern: RegExp) =>
      new Promise<RegExpMatchArray>((resolveMatch, reject) => {
        const m = output.match(pattern);
        if (m) return resolveMatch(m);
        waiters.push({ pattern, resolve: resolveMatch });
        void exited.then(() => reject(new Error(`demo exited before ${pattern}:\n${output}`)));
      }),
  };
}

describe('sa-engine demo --annotate', () => {
  it('runs the whole engine, waits for the person, and writes a filled engine report', async () => {
    const demo = startDemo();
    const [, url] = await demo.waitFor(/annotation tool: (http:\/\/\S+)/);
    const [, token] = await demo.waitFor(/token: (\S+)/);
    const person = new AnnotationApi(url!, token!);

    // The person takes the tasks they are given, like anyone, until they have done round 1's
    // image 0: the one the simulated annotators leave to them, which the round waits for.
    let mine: number[] | undefined;
    for (let i = 0; i < 300 && !mine?.includes(0); i++) {
      const task = await person.next();
      if (!task) {
        await new Promise((r) => setTimeout(r, 1000));
        continue;
      }
      const box = new Uint8Array(task.height * task.width);
      for (let y = 10; y < 40; y++) for (let x = 10; x < 50; x++) box[y * task.width + x] = 1;
      const mask = compressRle(encodeMask(box, task.height, task.width));
      await person.submit(task.task, {
        submissionId: `person-${task.imageId}`,
        mask,
        seconds: 12,
        clicks: 3,
      });
      await person.finish(task.task);
      if (task.round === 1) (mine ??= []).push(task.imageId);
    }
    expect(mine).toContain(0);

    expect(await demo.exited, demo.output()).toBe(0);
    const out = demo.output();
    for (const line of [
      /stage 1 {4}assisted-manual annotation/,
      /round 1 +\d+ masks on 3\/3 images/,
      /retrain +demo-\S+\/retrain-1: v\d+, 1-click mIoU \d\.\d{3}/,
      /stage 2 {4}semi-automatic annotation/,
      /detector demo-\S+\/detector-retrain-1: v\d+ box AP/,
      /round 2 +\d+ masks on 3\/3 images/,
      /stage 3 {4}fully automatic, with /,
      /█+ 4\/4 images \(0 failed\)/,
      /audit +mean IoU \d\.\d{3}/,
    ])
      expect(out).toMatch(line);

    // The person's mask is in round 1, under their name.
    const [, reportUri] = out.match(/Engine report: (file:\S+)/)!;
    const reportPath = fileURLToPath(reportUri!);
    const round1 = JSON.parse(
      readFileSync(join(reportPath, '../../stage1/round-1/summary.json'), 'utf8'),
    ) as { annotators: Record<string, { masks: number }>; stage: string };
    expect(round1.annotators.you?.masks).toBe(mine!.length);
    expect(round1.stage).toBe('stage1');

    const html = readFileSync(reportPath, 'utf8');
    expect(html).not.toMatch(/not (yet|run)/i);
    expect(html).toContain('<svg');
  }, 900_000);
});
