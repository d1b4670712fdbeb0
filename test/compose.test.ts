import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { REPO } from './helpers.js';

// No Docker engine here: the compose file and Dockerfiles are checked for the structure the deployment relies on.
type Service = Record<string, unknown> & {
  image?: string;
  command?: string[];
  environment?: Record<string, string>;
  healthcheck?: { test: string[] };
  depends_on?: Record<string, { condition: string }>;
  ports?: unknown;
  container_name?: string;
  profiles?: string[];
  deploy?: { resources?: { reservations?: { devices?: { driver: string; count: number; capabilities: string[] }[] } } };
  stop_grace_period?: string;
  entrypoint?: string[];
};
const compose = parse(readFileSync(join(REPO, 'docker-compose.yml'), 'utf8'), { merge: true }) as { services: Record<string, Service> };
const svc = compose.services;

/** Every .ts source file of the project (not tests). */
function sources(dir = REPO): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    if (name === 'node_modules' || name === 'test' || name.startsWith('.')) return [];
    if (statSync(p).isDirectory()) return sources(p);
    return p.endsWith('.ts') && !p.endsWith('.test.ts') ? [p] : [];
  });
}
const code = sources().map((p) => readFileSync(p, 'utf8')).join('\n');

describe('docker-compose.yml', () => {
  it('has the services of the deployment', () => {
    expect(Object.keys(svc).sort()).toEqual(['aggregator', 'coordinator', 'redis', 's3', 's3-init', 'worker', 'worker-gpu']);
  });

  it('redis: AOF, noeviction, healthcheck, no host port', () => {
    expect(svc.redis!.command).toEqual(expect.arrayContaining(['--appendonly', 'yes', '--maxmemory-policy', 'noeviction']));
    expect(svc.redis!.healthcheck!.test).toContain('ping');
    expect(svc.redis!.ports).toBeUndefined();
  });

  it('s3: a maintained S3-compatible server (not MinIO) with a healthcheck and bucket creation, no host port', () => {
    expect(svc.s3!.image).not.toMatch(/minio/i);
    expect(svc.s3!.healthcheck).toBeDefined();
    expect(svc.s3!.ports).toBeUndefined();
    expect(JSON.stringify(svc['s3-init']!.command)).toMatch(/s3 mb s3:\/\//);
    expect(svc['s3-init']!.depends_on!.s3!.condition).toBe('service_healthy');
  });

  it('workers scale: no fixed names or host ports, wait for healthy redis/s3 and the bucket, drain on stop', () => {
    for (const name of ['worker', 'worker-gpu', 'aggregator']) {
      const s = svc[name]!;
      expect(s.container_name, name).toBeUndefined();
      expect(s.ports, name).toBeUndefined();
      expect(s.depends_on!.redis!.condition).toBe('service_healthy');
      expect(s.depends_on!.s3!.condition).toBe('service_healthy');
      expect(s.depends_on!['s3-init']!.condition).toBe('service_completed_successfully');
      expect(s.stop_grace_period, name).toMatch(/^\d+m$/);
    }
    expect(svc.worker!.command).toEqual(['pnpm', 'worker']);
    expect(svc.aggregator!.command).toEqual(['pnpm', 'aggregator']);
  });

  it('worker-gpu: profile gpu, one NVIDIA device reserved, TensorFlow backend with memory growth', () => {
    const g = svc['worker-gpu']!;
    expect(g.profiles).toEqual(['gpu']);
    const dev = g.deploy!.resources!.reservations!.devices![0]!;
    expect(dev).toMatchObject({ driver: 'nvidia', count: 1, capabilities: ['gpu'] });
    expect(g.environment!.TRAJLAB_BACKEND).toBe('tensorflow');
    expect(g.environment!.TF_FORCE_GPU_ALLOW_GROWTH).toBe('true');
  });

  it('coordinator is a run-once tool running the trajlab CLI', () => {
    expect(svc.coordinator!.profiles).toEqual(['tools']);
    expect(svc.coordinator!.entrypoint!.join(' ')).toMatch(/trajlab\.mjs$/);
  });

  it('passes exactly the environment variables the code reads', () => {
    const names = new Set(['worker', 'worker-gpu', 'aggregator', 'coordinator'].flatMap((n) => Object.keys(svc[n]!.environment!)));
    for (const name of names) {
      if (name === 'TF_FORCE_GPU_ALLOW_GROWTH') continue; // read by libtensorflow itself
      // read as env.NAME, env['NAME'], or through the backend's envChoice(env, 'NAME', ...)
      expect(code, name).toMatch(new RegExp(`env\\.${name}\\b|env\\[['"]${name}['"]\\]|envChoice(?:<[^>]*>)?\\(env, ['"]${name}['"]`));
    }
    expect(svc.worker!.environment!.REDIS_URL).toBe('redis://redis:6379');
    expect(svc.worker!.environment!.AWS_ENDPOINT_URL_S3).toBe('http://s3:8333');
    // credentials come from .env, never from the file itself
    expect(svc.worker!.environment!.AWS_SECRET_ACCESS_KEY).toMatch(/^\$\{AWS_SECRET_ACCESS_KEY:\?/);
  });
});

describe('images and scripts', () => {
  it('Dockerfiles pin pnpm, install from the lock file and build the TensorFlow binding; GPU on CUDA 11 + cuDNN 8', () => {
    for (const f of ['infra/Dockerfile.cpu', 'infra/Dockerfile.gpu']) {
      const text = readFileSync(join(REPO, f), 'utf8');
      expect(text).toMatch(/pnpm@12\.4\.2/);
      expect(text).toMatch(/pnpm install --frozen-lockfile/);
      expect(text).toMatch(/build-tfjs-node\.sh (cpu|gpu)/);
    }
    expect(readFileSync(join(REPO, 'infra/Dockerfile.gpu'), 'utf8')).toMatch(/^FROM nvidia\/cuda:11\.\d+\.\d+-cudnn8/m);
    // the CPU image's wasm fallback gets native matrix products: a C compiler before `pnpm install` builds them
    const cpu = readFileSync(join(REPO, 'infra/Dockerfile.cpu'), 'utf8');
    const aptLine = cpu.split('\n').find((l) => l.includes('apt-get install'))!;
    expect(aptLine).toMatch(/\bg\+\+/);
    expect(cpu.indexOf(aptLine)).toBeLessThan(cpu.indexOf('pnpm install --frozen-lockfile'));
  });

  it('root scripts start the services from a checkout, compiled at install', () => {
    const pkg = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8'));
    expect(pkg.scripts.worker).toMatch(/services\/worker\/bin\/worker\.mjs$/);
    expect(pkg.scripts.aggregator).toMatch(/services\/aggregator\/bin\/aggregator\.mjs$/);
    // `pnpm install` compiles the TypeScript (prepare), so the images copy the compiler before installing and never
    // take a checkout's compiled output
    expect(pkg.scripts.prepare).toMatch(/scripts\/build-js\.mjs$/);
    for (const f of ['infra/Dockerfile.cpu', 'infra/Dockerfile.gpu']) {
      const text = readFileSync(join(REPO, f), 'utf8');
      expect(text.indexOf('COPY scripts ./scripts'), f).toBeGreaterThan(-1);
      expect(text.indexOf('COPY scripts ./scripts'), f).toBeLessThan(text.indexOf('pnpm install --frozen-lockfile'));
    }
    expect(readFileSync(join(REPO, '.dockerignore'), 'utf8')).toMatch(/^\*\*\/dist$/m);
  });
});
