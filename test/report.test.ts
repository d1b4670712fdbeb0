import { tableFromIPC as flechetteRead } from '@uwdata/flechette';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runStudyEmbedded } from '@trajlab/runner';
import { cliAsync, REPO, runSpec, tempDir } from './helpers.js';

const CHROMIUM = '/usr/bin/chromium';
const hasChromium = existsSync(CHROMIUM);
if (!hasChromium && process.env.CI) throw new Error(`${CHROMIUM} is missing: .ci/run must install Debian's chromium`);
const ARTIFACTS = join(REPO, 'test-artifacts');

/** A small image dataset: 60 8x8 gray images (bars at random positions), written as an IDX file. */
function writeImages(dir: string): string {
  const n = 60;
  const header = Buffer.from([0, 0, 8, 3, 0, 0, 0, n, 0, 0, 0, 8, 0, 0, 0, 8]);
  const body = Buffer.alloc(n * 64);
  for (let i = 0; i < n; i++) for (let y = 0; y < 8; y++) for (let x = 0; x < 8; x++) body[i * 64 + y * 8 + x] = (i % 2 ? x === i % 8 : y === i % 8) ? 255 : 20;
  const path = join(dir, 'bars-idx3-ubyte');
  writeFileSync(path, Buffer.concat([header, body]));
  return path;
}

let mixture: Awaited<ReturnType<typeof runStudyEmbedded>> & { dir: string };
let images: Awaited<ReturnType<typeof runSpec>>;

beforeAll(async () => {
  // the shipped quickstart, exactly as a user runs it
  const out = join(tempDir(), 'out');
  mixture = { ...(await runStudyEmbedded(join(REPO, 'examples/quickstart.yaml'), { out })), dir: out };
  const dir = tempDir();
  writeImages(dir);
  images = await runSpec(
    {
      name: 'report-images',
      samples: 8,
      dataset: { kind: 'idx', uri: './bars-idx3-ubyte' },
      solvers: [{ solver: 'heun', steps: 8 }],
      keepStates: 4,
    },
    dir,
  );
});

describe.skipIf(!hasChromium)('report.html in real headless Chromium', () => {
  let browser: Awaited<ReturnType<typeof chromium.launch>>;
  beforeAll(async () => {
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    mkdirSync(ARTIFACTS, { recursive: true });
  });
  afterAll(async () => browser?.close());

  async function open(report: string, shot: string) {
    const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    const errors: string[] = [];
    const requests: string[] = [];
    page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
    page.on('pageerror', (e) => errors.push(String(e)));
    page.on('request', (r) => requests.push(r.url()));
    await page.goto(`file://${report}`);
    await page.screenshot({ path: join(ARTIFACTS, shot), fullPage: true });
    const figures = await page.$$eval('figure', (fs) =>
      fs.map((f) => ({
        id: f.id,
        marks: f.querySelectorAll('svg path, svg polygon, svg circle').length,
        images: [...f.querySelectorAll('img')].map((i) => (i as unknown as { naturalWidth: number }).naturalWidth),
        noData: f.querySelectorAll('.empty').length,
      })),
    );
    const tableRows = await page.$$eval('#table-summary tbody tr', (r) => r.length);
    await page.close();
    return { errors, requests: requests.filter((u) => !u.startsWith('data:') && u !== `file://${report}`), figures, tableRows };
  }

  it('the quickstart report loads offline with every expected figure drawn', async () => {
    const r = await open(mixture.report, 'report-quickstart.png');
    expect(r.errors).toEqual([]);
    expect(r.requests).toEqual([]);
    expect(r.figures.map((f) => f.id)).toEqual(['fig-deviation', 'fig-magnitudes', 'fig-projections', 'fig-error-nfe', 'fig-score-dev', 'fig-kde-gain', 'fig-nn-ratio']);
    for (const f of r.figures) {
      expect(f.marks, f.id).toBeGreaterThan(3);
      expect(f.noData, f.id).toBe(0);
    }
    expect(r.tableRows).toBe(10);
  });

  it('the image study report adds PNG grids of x_t / D(x_t) and of final samples next to their nearest training images', async () => {
    const r = await open(images.report, 'report-images.png');
    expect(r.errors).toEqual([]);
    expect(r.requests).toEqual([]);
    const byId = Object.fromEntries(r.figures.map((f) => [f.id, f]));
    expect(byId['fig-image-steps']!.images).toHaveLength(1);
    expect(byId['fig-image-steps']!.images[0]).toBeGreaterThan(8 * 2 * 8);
    expect(byId['fig-image-nn']!.images[0]).toBeGreaterThan(8 * 2 * 8);
  });
});

describe('reports are reproducible from the output files alone', () => {
  it('the final samples shown beside their nearest training images are the first 16, across shards, whatever the sharding', async () => {
    // the PNG of the figure (its width: one column per final sample shown)
    const nnGrid = (report: string) => {
      const html = readFileSync(report, 'utf8');
      const figure = html.slice(html.indexOf('<figure id="fig-image-nn">'));
      const png = Buffer.from(/src="data:image\/png;base64,([^"]+)"/.exec(figure)![1]!, 'base64');
      return { png, width: png.readUInt32BE(16) };
    };
    const study = async (samples: number, shardSize: number) => {
      const dir = tempDir();
      writeImages(dir);
      const res = await runSpec({ name: 'report-finals', samples, shardSize, dataset: { kind: 'idx', uri: './bars-idx3-ubyte' }, solvers: [{ solver: 'euler', steps: 6 }], metrics: { kde: false, pca: false } }, dir);
      return nnGrid(res.report);
    };
    const [oneShard, smallShards, eight] = [await study(20, 20), await study(20, 3), await study(8, 8)];
    // 16 of the 20 samples, the same images whether they come from one shard or six (3 per shard)
    expect(smallShards.png.equals(oneShard.png)).toBe(true);
    // one column per sample shown: 8x8 images drawn at scale 2 with 1-pixel gaps (png.ts imageGrid); a study of 8
    // samples shows all 8
    expect(oneShard.width).toBe(16 * (8 * 2 + 1) + 1);
    expect(eight.width).toBe(8 * (8 * 2 + 1) + 1);
  });

  it('a report rebuilt from a copied output folder is identical', async () => {
    const copy = join(tempDir(), mixture.studyId);
    cpSync(mixture.studyDir, copy, { recursive: true });
    const res = await cliAsync(['report', copy]);
    expect(res.status, res.stderr).toBe(0);
    expect(res.stdout.trim()).toBe(join(copy, 'summary/report.html'));
    expect(readFileSync(join(copy, 'summary/report.html')).equals(readFileSync(mixture.report))).toBe(true);
  });
});

describe('an independent Arrow reader (flechette) opens every file of a study', () => {
  const contract: Record<string, Record<string, string>> = {
    steps: { config_id: 'utf8', solver: 'utf8', schedule: 'utf8', steps: 'int32', sample: 'int32', step: 'int32', sigma: 'float64', nfe: 'int32', x_norm: 'float32', d_norm: 'float32', dist_x_final: 'float', dist_d_final: 'float', dev_x: 'float', dev_d: 'float', cos_eps_final: 'float', turn_angle: 'float', score_dev: 'float', kde_gain: 'float' },
    samples: { config_id: 'utf8', sample: 'int32', nfe_total: 'int32', chord: 'float', path_length: 'float', max_dev_x: 'float', max_dev_ratio: 'float', pca_var_1: 'float', pca_var_2: 'float', pca_var_3: 'float', nn_index: 'int32', nn_dist: 'float', nn2_dist: 'float', final: 'fixed_size_list<float32>' },
    states: { config_id: 'utf8', sample: 'int32', step: 'int32', sigma: 'float64', x: 'fixed_size_list<float32>', denoised: 'fixed_size_list<float32>' },
  };
  // Arrow type ids (format spec): 2 Int, 3 FloatingPoint, 5 Utf8, 16 FixedSizeList
  function typeName(t: { typeId: number; bitWidth?: number; precision?: number; children?: { type: { typeId: number; precision?: number } }[] }): string {
    if (t.typeId === 5) return 'utf8';
    if (t.typeId === 2) return `int${t.bitWidth}`;
    if (t.typeId === 3) return t.precision === 1 ? 'float32' : t.precision === 2 ? 'float64' : 'float16';
    if (t.typeId === 16) return `fixed_size_list<${typeName(t.children![0]!.type)}>`;
    return `type${t.typeId}`;
  }

  it('sees the contract columns with their types and the right row counts', () => {
    const shardsDir = join(mixture.studyDir, 'shards');
    let files = 0;
    for (const config of readdirSync(shardsDir)) {
      const steps = Number(/-s(\d+)/.exec(config)![1]);
      for (const file of readdirSync(join(shardsDir, config)).filter((f) => f.endsWith('.arrow'))) {
        const kind = file.split('.')[1]!;
        const t = flechetteRead(readFileSync(join(shardsDir, config, file)));
        const [first, last] = file.split('.')[0]!.split('-').map(Number) as [number, number];
        const samples = last - first + 1;
        const kept = Math.max(0, Math.min(samples, 8 - first));
        expect(t.numRows, file).toBe({ steps: samples * (steps + 1), samples, states: kept * (steps + 1) }[kind]);
        for (const [name, type] of Object.entries(contract[kind]!)) {
          const field = t.schema.fields.find((f) => f.name === name);
          expect(field, `${config}/${file}: ${name}`).toBeDefined();
          const actual = typeName(field!.type as never);
          if (type === 'float') expect(actual, name).toMatch(/^float(32|64)$/);
          else expect(actual, name).toBe(type);
        }
        files++;
      }
    }
    // 10 configs x 4 shards x (steps, samples) + the states of the first shard of each config
    expect(files).toBe(10 * 4 * 2 + 10);
    for (const file of ['summary/summary.arrow', 'summary/curves.arrow']) {
      const t = flechetteRead(readFileSync(join(mixture.studyDir, file)));
      // curves: one row per (config, step): sum over configs of S + 1
      expect(t.numRows).toBe(file.includes('summary.arrow') ? 10 : [10, 20, 40, 5, 10, 20, 5, 10, 20, 256].reduce((a, s) => a + s + 1, 0));
      expect(t.schema.fields.some((f) => f.name === 'config_id')).toBe(true);
    }
  });
});
