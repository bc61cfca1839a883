// The Helm chart infra/helm/sa-engine, offline (no cluster): infra/chart-check/check.sh passes for
// the example values sets (helm lint, Kubernetes schemas in strict mode, KEDA's CRDs and temporal
// scaler) and catches what it claims to; the rendered manifests have what a production rollout
// needs (GPU requests, probes, non-root pods, PDBs, secrets only by reference); and every container
// command line the chart renders is one the programs accept: `node bin/sa-engine.mjs ...` parsed by
// the real commander program (cli/program.ts) with the actions replaced, `python -m sae_trainer ...`
// by the trainer's argparse parser.
//
// Needs helm and the chart check's venv and KEDA files, which `npm run setup` installs
// (infra/install-tools.sh); without them the suite is skipped with the reason, except under CI,
// where it fails.
import { execFile, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { CommanderError, type Command } from 'commander';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { parseAllDocuments, stringify } from 'yaml';
import { buildProgram } from '../../cli/program.ts';
import { loadRunConfigFile } from '../../lib/run-config.ts';
import { toolPath } from '../../infra/tools.ts';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const CHECK = join(ROOT, 'infra/chart-check/check.sh');
const CHART = join(ROOT, 'infra/helm/sa-engine');
const TRAINER_PYTHON = process.env.SAE_PYTHON ?? join(ROOT, 'trainer/.venv/bin/python');
const KUBE_VERSION = '1.31.0'; // infra/chart-check/check.py KUBE_VERSIONS[0]

/** The values sets infra/chart-check/check.py knows, as values files on top of values.yaml. */
const VALUE_SETS: Record<string, string[]> = {
  selfhosted: ['infra/helm/sa-engine/values-selfhosted.yaml'],
  cloud: ['infra/helm/sa-engine/values-cloud.yaml'],
  'draining-mtls': ['infra/helm/sa-engine/values-cloud.yaml', 'infra/chart-check/values/draining-mtls.yaml'],
  'cpu-only': ['infra/chart-check/values/cpu-only.yaml'],
};

const installed = spawnSync('bash', [CHECK, '--installed'], { encoding: 'utf8' });
const notInstalled =
  installed.status === 0 ? undefined : installed.stderr.trim() || `exit ${installed.status}`;
// Locally a missing tool skips the suite, saying why; CI has run `npm run setup` and must not skip.
const skip = notInstalled !== undefined && !process.env.CI;
if (skip) console.warn(`helm-chart.test.ts skipped: ${notInstalled}`);

// --- rendering ------------------------------------------------------------------------------------

/* eslint-disable @typescript-eslint/no-explicit-any -- rendered manifests are untyped YAML */
type Manifest = Record<string, any>;

async function render(valueSet: string): Promise<Manifest[]> {
  const files = VALUE_SETS[valueSet]!.flatMap((f) => ['-f', join(ROOT, f)]);
  const args = ['template', 'sa-engine', CHART, '--namespace', 'sa-engine', '--kube-version', KUBE_VERSION];
  const { stdout } = await run(toolPath('helm'), [...args, ...files], { maxBuffer: 64 << 20 });
  return parseAllDocuments(stdout)
    .map((doc) => doc.toJS() as Manifest | null)
    .filter((doc): doc is Manifest => doc !== null);
}

const ofKind = (docs: Manifest[], kind: string) => docs.filter((d) => d.kind === kind);

interface RenderedContainer {
  where: string;
  deployment: Manifest;
  container: Manifest;
}

function containers(docs: Manifest[]): RenderedContainer[] {
  return ofKind(docs, 'Deployment').flatMap((deployment) =>
    (deployment.spec.template.spec.containers as Manifest[]).map((container) => ({
      where: `Deployment/${deployment.metadata.name} container ${container.name}`,
      deployment,
      container,
    })),
  );
}

const envValue = (container: Manifest, name: string): string | undefined =>
  (container.env as Manifest[] | undefined)?.find((e) => e.name === name)?.value;

const healthPort = (container: Manifest): number =>
  (container.ports as Manifest[]).find((p) => p.name === 'health')!.containerPort;

// --- parsing command lines with the real programs --------------------------------------------------

interface ParsedCli {
  /** The subcommand path, e.g. ['annotate', 'serve']. */
  path: string[];
  args: unknown[];
  opts: Record<string, unknown>;
}

/**
 * Parses `node bin/sa-engine.mjs ...` with the sa-engine program, every action replaced by one that
 * records what commander parsed; nothing runs. Variables the options read (SAE_BUILD_ID ...) are
 * cleared, so the command line alone must carry the values. Rejects with commander's error.
 */
async function parseCli(argv: string[], clearEnv: string[]): Promise<ParsedCli> {
  const program = buildProgram();
  let parsed: ParsedCli | undefined;
  const instrument = (command: Command, path: string[]) => {
    command.exitOverride();
    command.configureOutput({ writeOut: () => {}, writeErr: () => {} });
    if (command.commands.length === 0 && path.length > 0) {
      command.action((...actionArgs: unknown[]) => {
        const self = actionArgs.at(-1) as Command;
        parsed = { path, args: [...self.processedArgs], opts: self.opts() };
      });
    }
    for (const sub of command.commands) instrument(sub, [...path, sub.name()]);
  };
  instrument(program, []);
  for (const name of clearEnv) vi.stubEnv(name, undefined);
  try {
    await program.parseAsync(argv, { from: 'node' });
  } finally {
    vi.unstubAllEnvs();
  }
  if (!parsed) throw new Error(`${argv.join(' ')}: no command's action was reached`);
  return parsed;
}

/** Variables the sa-engine commands read for options (Option.env). */
function optionEnvNames(): string[] {
  const names: string[] = [];
  const walk = (command: Command) => {
    for (const option of command.options) if (option.envVar) names.push(option.envVar);
    command.commands.forEach(walk);
  };
  walk(buildProgram());
  return names;
}

type TrainerParse = { ok: true; args: Record<string, unknown> } | { ok: false; code: number; error: string };

/** Parses trainer command lines (after `python -m sae_trainer`) with its argparse parser, in one process. */
async function parseTrainer(argvs: string[][]): Promise<TrainerParse[]> {
  const script = `
import contextlib, io, json, sys
from sae_trainer.__main__ import build_parser
out = []
for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            ns = build_parser().parse_args(argv)
        out.append({"ok": True, "args": {k: v for k, v in vars(ns).items() if k != "func"}})
    except SystemExit as e:
        out.append({"ok": False, "code": e.code, "error": err.getvalue()})
print(json.dumps(out, default=str))
`;
  const { stdout } = await run(TRAINER_PYTHON, ['-c', script, JSON.stringify(argvs)], {
    cwd: ROOT,
    env: { ...process.env, PYTHONPATH: join(ROOT, 'trainer') },
  });
  return JSON.parse(stdout) as TrainerParse[];
}

// --------------------------------------------------------------------------------------------------

describe.skipIf(skip)(
  `the Helm chart infra/helm/sa-engine${skip ? ` (skipped: ${notInstalled})` : ''}`,
  () => {
    const rendered: Record<string, Manifest[]> = {};

    beforeAll(async () => {
      if (notInstalled) throw new Error(notInstalled); // CI: fail, do not skip
      for (const name of Object.keys(VALUE_SETS)) rendered[name] = await render(name);
    });

    afterEach(() => {
      vi.unstubAllEnvs();
    });

    it.each(['selfhosted', 'cloud'])(
      'infra/chart-check/check.sh passes for values-%s.yaml',
      async (valueSet) => {
        const result = spawnSync('bash', [CHECK, valueSet], { encoding: 'utf8' });
        expect(result.stderr + result.stdout).toContain('chart-check: all passed');
        expect(result.status).toBe(0);
      },
    );

    it("check.sh passes for the chart's other values sets (defaults, draining builds, CPU-only)", () => {
      const result = spawnSync('bash', [CHECK, 'default', 'draining-mtls', 'cpu-only'], { encoding: 'utf8' });
      expect(result.stderr + result.stdout).toContain('chart-check: all passed');
      expect(result.status).toBe(0);
    });

    it('check.sh fails, naming each problem, on manifests that break a schema or the temporal scaler', () => {
      const docs = structuredClone(rendered.cloud!);
      const orchestration = ofKind(docs, 'Deployment').find((d) =>
        d.metadata.name.includes('orchestration'),
      )!;
      const container = orchestration.spec.template.spec.containers[0];
      container.livenessProbe.httpGet.paht = '/healthz'; // unknown field: strict schema
      container.env.push({ name: 'AWS_SECRET_ACCESS_KEY', value: 'literal' });
      const scaled = ofKind(docs, 'ScaledObject')[0]!;
      scaled.spec.triggers[0].metadata.taskQueues = 'sae-orchestration'; // not a scaler key
      scaled.spec.minReplicas = 1; // not in KEDA's CRD
      const dir = mkdtempSync(join(tmpdir(), 'sae-chart-'));
      try {
        const file = join(dir, 'bad.yaml');
        writeFileSync(file, docs.map((d) => stringify(d)).join('---\n'));
        const result = spawnSync('bash', [CHECK, '--rendered', file], { encoding: 'utf8' });
        expect(result.status).toBe(1);
        expect(result.stderr).toMatch(/'paht' was unexpected/);
        expect(result.stderr).toMatch(/AWS_SECRET_ACCESS_KEY is set by value/);
        expect(result.stderr).toMatch(/metadata key 'taskQueues' is not one KEDA's temporal scaler reads/);
        expect(result.stderr).toMatch(/KEDA CRD schema, at spec: .*'minReplicas' was unexpected/);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });

    it.each(Object.keys(VALUE_SETS))('%s: GPU pools request nvidia.com/gpu unless turned off', (valueSet) => {
      const deployments = ofKind(rendered[valueSet]!, 'Deployment');
      const gpuPools = deployments.filter((d) => /gpu-(inference|training)/.test(d.metadata.name));
      expect(gpuPools.length).toBeGreaterThanOrEqual(2);
      for (const d of gpuPools) {
        const limits = d.spec.template.spec.containers[0].resources.limits ?? {};
        if (valueSet === 'cpu-only') expect(limits['nvidia.com/gpu'], d.metadata.name).toBeUndefined();
        else {
          expect(limits['nvidia.com/gpu'], d.metadata.name).toBeGreaterThanOrEqual(1);
          const tolerations = d.spec.template.spec.tolerations as Manifest[];
          expect(tolerations.some((t) => t.key === 'nvidia.com/gpu')).toBe(true);
        }
      }
      for (const d of deployments.filter((d) => /orchestration|annotation/.test(d.metadata.name))) {
        expect(d.spec.template.spec.containers[0].resources.limits?.['nvidia.com/gpu']).toBeUndefined();
      }
    });

    it.each(['selfhosted', 'cloud', 'draining-mtls'])(
      '%s: the orchestration pool never scales to zero; GPU pools and draining builds may',
      (valueSet) => {
        const scaled = ofKind(rendered[valueSet]!, 'ScaledObject');
        const current = (d: Manifest) =>
          !ofKind(rendered[valueSet]!, 'Deployment').find((x) => x.metadata.name === d.metadata.name)!
            .metadata.annotations['sa-engine/draining'];
        const orchestration = scaled.filter((s) => s.metadata.name.includes('orchestration') && current(s));
        expect(orchestration).toHaveLength(1);
        expect(orchestration[0]!.spec.minReplicaCount).toBeGreaterThanOrEqual(1);
        for (const s of scaled) {
          const trigger = s.spec.triggers[0];
          expect(trigger.type).toBe('temporal');
          expect(trigger.metadata.queueTypes).toBe(
            s.metadata.name.includes('orchestration') ? 'workflow,activity' : 'activity',
          );
          if (!current(s)) expect(s.spec.minReplicaCount).toBe(0);
        }
        expect(
          scaled.filter((s) => /gpu-/.test(s.metadata.name)).every((s) => s.spec.minReplicaCount === 0),
        ).toBe(true);
      },
    );

    it.each(Object.keys(VALUE_SETS))(
      '%s: every Deployment has probes, a non-root read-only container and a PodDisruptionBudget',
      (valueSet) => {
        const docs = rendered[valueSet]!;
        const pdbs = ofKind(docs, 'PodDisruptionBudget');
        for (const d of ofKind(docs, 'Deployment')) {
          const pod = d.spec.template.spec;
          expect(pod.securityContext, d.metadata.name).toMatchObject({
            runAsNonRoot: true,
            runAsUser: 10001,
            seccompProfile: { type: 'RuntimeDefault' },
          });
          expect(pod.terminationGracePeriodSeconds).toBeGreaterThan(0);
          for (const c of pod.containers as Manifest[]) {
            expect(c.livenessProbe?.httpGet, d.metadata.name).toMatchObject({
              path: '/healthz',
              port: 'health',
            });
            expect(c.readinessProbe?.httpGet, d.metadata.name).toMatchObject({
              path: '/readyz',
              port: 'health',
            });
            expect(healthPort(c)).toBe(8080);
            expect(c.securityContext).toMatchObject({
              allowPrivilegeEscalation: false,
              readOnlyRootFilesystem: true,
              capabilities: { drop: ['ALL'] },
            });
            expect(c.volumeMounts).toContainEqual({ name: 'tmp', mountPath: '/tmp' });
            if (/gpu-/.test(d.metadata.name)) expect(c.startupProbe?.httpGet?.path).toBe('/healthz');
          }
          const podLabels = d.spec.template.metadata.labels as Record<string, string>;
          const covering = pdbs.filter((p) =>
            Object.entries(p.spec.selector.matchLabels as Record<string, string>).every(
              ([k, v]) => podLabels[k] === v,
            ),
          );
          expect(covering, `PodDisruptionBudget for ${d.metadata.name}`).toHaveLength(1);
        }
      },
    );

    it.each(Object.keys(VALUE_SETS))(
      '%s: secrets only by reference: no AWS_SECRET_ACCESS_KEY or TEMPORAL_API_KEY value',
      (valueSet) => {
        for (const { where, container } of containers(rendered[valueSet]!)) {
          for (const env of (container.env ?? []) as Manifest[]) {
            if (!['AWS_SECRET_ACCESS_KEY', 'AWS_ACCESS_KEY_ID', 'TEMPORAL_API_KEY'].includes(env.name))
              continue;
            expect(env.value, `${where} ${env.name}`).toBeUndefined();
            expect(env.valueFrom?.secretKeyRef?.name, `${where} ${env.name}`).toBeTruthy();
          }
        }
        for (const doc of rendered[valueSet]!) expect(doc.kind).not.toBe('Secret');
      },
    );

    it('selfhosted: S3-compatible endpoint with keys from a Secret; cloud: IRSA and a Temporal Cloud API key', () => {
      const [selfhosted] = containers(rendered.selfhosted!).filter((c) => c.where.includes('orchestration'));
      expect(envValue(selfhosted!.container, 'SAE_S3_ENDPOINT')).toMatch(/^http/);
      expect(envValue(selfhosted!.container, 'TEMPORAL_ADDRESS')).toBe(
        'temporal-frontend.temporal.svc.cluster.local:7233',
      );
      const secretKey = (selfhosted!.container.env as Manifest[]).find(
        (e) => e.name === 'AWS_SECRET_ACCESS_KEY',
      );
      expect(secretKey?.valueFrom.secretKeyRef).toEqual({
        name: 'sa-engine-s3',
        key: 'AWS_SECRET_ACCESS_KEY',
      });

      const cloud = rendered.cloud!;
      const [account] = ofKind(cloud, 'ServiceAccount');
      expect(account!.metadata.annotations['eks.amazonaws.com/role-arn']).toMatch(/^arn:aws:iam::\d+:role\//);
      for (const { where, container } of containers(cloud)) {
        expect(envValue(container, 'SAE_S3_ENDPOINT'), where).toBeUndefined();
        expect(
          (container.env as Manifest[]).some((e) => e.name.startsWith('AWS_ACCESS')),
          where,
        ).toBe(false);
        const apiKey = (container.env as Manifest[]).find((e) => e.name === 'TEMPORAL_API_KEY');
        expect(apiKey?.valueFrom.secretKeyRef.name, where).toBe('temporal-cloud-api-key');
      }
      const [auth] = ofKind(cloud, 'TriggerAuthentication');
      expect(auth!.spec.secretTargetRef).toEqual([
        { parameter: 'apiKey', name: 'temporal-cloud-api-key', key: 'api-key' },
      ]);
    });

    it('draining builds keep their own Deployments, images and ScaledObjects, scaled by their own version', () => {
      const docs = rendered['draining-mtls']!;
      const names = ofKind(docs, 'Deployment').map((d) => d.metadata.name as string);
      for (const suffix of ['2026-12-07-g1a2b3c4', '2026-11-30', '2026-11-02-hotfix'])
        for (const pool of ['orchestration', 'gpu-inference', 'gpu-training'])
          expect(names).toContain(`sa-engine-${pool}-${suffix}`);
      const old = ofKind(docs, 'Deployment').find(
        (d) => d.metadata.name === 'sa-engine-gpu-training-2026-11-02-hotfix',
      )!;
      expect(old.spec.template.spec.containers[0].image).toMatch(
        /sa-engine-trainer:2026\.11\.02-hotfix@sha256:/,
      );
      const trigger = ofKind(docs, 'ScaledObject').find((s) => s.metadata.name === old.metadata.name)!.spec
        .triggers[0];
      expect(trigger.metadata).toMatchObject({
        workerDeploymentName: 'sa-engine-prod',
        workerDeploymentBuildId: '2026.11.02_hotfix',
        taskQueue: 'sae-gpu-training',
      });
    });

    it.each(['selfhosted', 'cloud', 'cpu-only'])(
      "%s: the annotation service's run config (ConfigMap run.yaml) is a valid run config",
      async (valueSet) => {
        const [configMap] = ofKind(rendered[valueSet]!, 'ConfigMap');
        const dir = mkdtempSync(join(tmpdir(), 'sae-chart-'));
        try {
          const file = join(dir, 'run.yaml');
          writeFileSync(file, configMap!.data['run.yaml']);
          const config = await loadRunConfigFile(file);
          expect(config.stage1.enabled).toBe(true);
        } finally {
          rmSync(dir, { recursive: true, force: true });
        }
      },
    );

    it.each(Object.keys(VALUE_SETS))(
      '%s: every `node bin/sa-engine.mjs` command line parses with the sa-engine program',
      async (valueSet) => {
        const clearEnv = optionEnvNames();
        const nodeCommands = containers(rendered[valueSet]!).filter(
          ({ container }) => container.command[0] === 'node',
        );
        expect(nodeCommands.length).toBeGreaterThanOrEqual(2);
        for (const { where, deployment, container } of nodeCommands) {
          const command = container.command as string[];
          expect(command.slice(0, 2), where).toEqual(['node', 'bin/sa-engine.mjs']);
          const parsed = await parseCli(command, clearEnv).catch((err: Error) => {
            throw new Error(`${where}: \`${command.join(' ')}\` is refused: ${err.message}`);
          });
          const port = String(healthPort(container));
          if (parsed.path[0] === 'worker') {
            const queue = deployment.metadata.labels['sa-engine/task-queue'];
            expect(parsed.opts.queues, where).toBe(queue);
            expect(parsed.opts.healthPort, where).toBe(port);
            const grace = Number(parsed.opts.shutdownGrace);
            expect(grace, where).toBeGreaterThan(0);
            expect(grace, where).toBeLessThan(deployment.spec.template.spec.terminationGracePeriodSeconds);
            const deploymentName = envValue(container, 'SAE_DEPLOYMENT_NAME');
            if (deploymentName !== undefined) {
              expect(parsed.opts.deploymentName, where).toBe(deploymentName);
              expect(parsed.opts.buildId, where).toBe(deployment.metadata.annotations['sa-engine/build-id']);
            } else {
              expect(parsed.opts.deploymentName, where).toBeUndefined();
            }
            if (queue === 'sae-gpu-inference') {
              expect(parsed.opts.concurrency, where).toEqual([
                expect.stringMatching(/^sae-gpu-inference=\d+$/),
              ]);
              expect(parsed.opts.onnxThreads, where).toMatch(/^\d+$/);
            }
          } else {
            expect(parsed.path, where).toEqual(['annotate', 'serve']);
            expect(parsed.args, where).toEqual(['/etc/sa-engine/run.yaml']);
            expect(parsed.opts.host, where).toBe('0.0.0.0');
            expect(String(parsed.opts.port), where).toBe(port);
            expect(container.volumeMounts, where).toContainEqual(
              expect.objectContaining({ mountPath: '/etc/sa-engine' }),
            );
          }
          // The instrumented program does refuse what the CLI refuses.
          const refused = await parseCli([...command, '--no-such-flag'], clearEnv).then(
            () => undefined,
            (err: unknown) => err,
          );
          expect(refused, where).toBeInstanceOf(CommanderError);
          expect((refused as CommanderError).code).toBe('commander.unknownOption');
        }
      },
    );

    it("every `python -m sae_trainer` command line parses with the trainer's argparse parser", async () => {
      const trainers = Object.entries(rendered).flatMap(([valueSet, docs]) =>
        containers(docs)
          .filter(({ container }) => container.command[0] === 'python')
          .map((c) => ({ ...c, where: `${valueSet}: ${c.where}` })),
      );
      expect(trainers.length).toBeGreaterThanOrEqual(Object.keys(VALUE_SETS).length);
      const argvs = trainers.map(({ where, container }) => {
        expect(container.command.slice(0, 3), where).toEqual(['python', '-m', 'sae_trainer']);
        return (container.command as string[]).slice(3);
      });
      const results = await parseTrainer([...argvs, [...argvs[0]!, '--no-such-flag']]);
      trainers.forEach(({ where, deployment, container }, i) => {
        const result = results[i]!;
        if (!result.ok)
          throw new Error(`${where}: \`${container.command.join(' ')}\` is refused: ${result.error}`);
        const gpu = deployment.spec.template.spec.containers[0].resources.limits?.['nvidia.com/gpu'];
        expect(result.args, where).toMatchObject({
          command: 'worker',
          device: gpu ? 'cuda' : 'cpu',
          health_port: expect.anything(),
        });
        expect(String(result.args.health_port), where).toBe(String(healthPort(container)));
        const grace = Number(result.args.shutdown_grace);
        expect(grace, where).toBeGreaterThan(0);
        expect(grace, where).toBeLessThan(deployment.spec.template.spec.terminationGracePeriodSeconds);
        const deploymentName = envValue(container, 'SAE_DEPLOYMENT_NAME');
        expect(result.args.deployment_name ?? undefined, where).toBe(deploymentName);
        if (deploymentName !== undefined)
          expect(result.args.build_id, where).toBe(deployment.metadata.annotations['sa-engine/build-id']);
      });
      const refused = results.at(-1)!;
      expect(refused.ok).toBe(false);
      expect(refused.ok ? '' : refused.error).toMatch(/unrecognized arguments: --no-such-flag/);
    });
  },
);
