import { readIpcFile } from '@trajlab/results';
import type { ObjectStore } from '@trajlab/storage';
import { studyKeys } from '@trajlab/study';
import type { Table } from 'apache-arrow';
import { imageGrid } from './png.js';
import { projectTrajectory } from './projection.js';
import { histogram, linePlot, seriesStyle, type Series } from './svg.js';

/** What the report reads from study.json (itself one of the study's output files). */
interface StudyDoc {
  studyId: string;
  trajlabVersion: string;
  status?: string;
  spec: Record<string, unknown> & { keepStates?: number; name?: string };
  data: { dataset: { kind: string; n: number; dim: number; source: string; contentHash: string; image?: { height: number; width: number; channels: number } } };
  plan: { shardSize: number; configs: { configId: string; role: string; solver: string; schedule: string; steps: number; nfe: number; shards: string[] }[] };
  backend?: { name: string; package: string; matMul?: string } | null;
  versions?: Record<string, string>;
  elapsedMs?: number;
  startedAt?: string;
  completedAt?: string;
}

type Row = Record<string, unknown>;
const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const num = (v: unknown): number => (typeof v === 'number' ? v : Number.NaN);
const fmt = (v: unknown, d = 4) => (typeof v === 'number' && Number.isFinite(v) ? (Math.abs(v) >= 1e-3 || v === 0 ? Number(v.toPrecision(d)).toString() : v.toExponential(2)) : '-');

function tableRows(t: Table): Row[] {
  return t.toArray().map((r) => r.toJSON() as Row);
}

/**
 * The cells of `columns` (those the table has) in its first `limit` rows, as rows. Materialising whole rows (toJSON)
 * cost ~10 us a row, most of a 40k-sample report's time, for a column or two that it uses.
 */
function pickRows(t: Table, columns: string[], limit = t.numRows): Row[] {
  const rows: Row[] = Array.from({ length: Math.min(limit, t.numRows) }, () => ({}));
  for (const name of columns) {
    const column = t.getChild(name);
    if (column) for (let i = 0; i < rows.length; i++) rows[i]![name] = column.get(i);
  }
  return rows;
}

/** How many final samples the report shows with their nearest training images. */
const FINALS_SHOWN = 16;

/** Vector cells (fixed-size lists) as plain arrays. */
function vec(v: unknown): number[] | null {
  if (v === null || v === undefined) return null;
  return Array.from((v as { toArray(): ArrayLike<number> }).toArray());
}

async function readTable(store: ObjectStore, key: string): Promise<Table> {
  return readIpcFile(await store.get(key), key);
}

/** Requests the report keeps in flight when it reads every shard's table (an object store answers them at once). */
const READS_IN_FLIGHT = 16;

/** `read` of every item, at most READS_IN_FLIGHT at a time; the results in the items' order. */
async function readAll<T, R>(items: T[], read: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array<R>(items.length);
  let next = 0;
  const reader = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await read(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(READS_IN_FLIGHT, items.length) }, reader));
  return out;
}

/** The method of a config (its id without the step count): configs of one method differ only in their budget. */
export function methodOf(configId: string): string {
  return configId.replace(/-s\d+(?=(-|$))/, '');
}

function figure(id: string, caption: string, body: string): string {
  return `<figure id="${id}">${body}<figcaption>${esc(caption)}</figcaption></figure>`;
}

function pngTag(bytes: Uint8Array, alt: string): string {
  return `<img alt="${esc(alt)}" src="data:image/png;base64,${Buffer.from(bytes).toString('base64')}"/>`;
}

/**
 * Builds the self-contained report (inline SVG and PNG, no script, no network) of a study from its output files alone:
 * study.json, summary.arrow, curves.arrow, and the shards' samples and states tables.
 */
export async function buildReport(store: ObjectStore, studyId: string): Promise<string> {
  const [docBytes, summaryTable, curvesTable] = await Promise.all([store.get(studyKeys.studyJson(studyId)), readTable(store, studyKeys.summary(studyId)), readTable(store, studyKeys.curves(studyId))]);
  const doc = JSON.parse(new TextDecoder().decode(docBytes)) as StudyDoc;
  const summary = tableRows(summaryTable);
  const curves = tableRows(curvesTable);
  const configs = doc.plan.configs;
  const dim = doc.data.dataset.dim;
  const curveOf = (id: string) => curves.filter((r) => r.config_id === id);
  const band = (rows: Row[], m: string): [number, number, number][] => rows.map((r) => [num(r.sigma), num(r[`${m}_p05`]), num(r[`${m}_p95`])]);
  const meanSeries = (m: string, withBand: boolean): Series[] =>
    configs.map((c) => {
      const rows = curveOf(c.configId);
      return { name: c.configId, points: rows.map((r) => [num(r.sigma), num(r[`${m}_mean`])] as [number, number]), band: withBand ? band(rows, m) : undefined };
    });
  const has = (m: string) => curves.some((r) => Number.isFinite(num(r[`${m}_mean`])));
  const sigmaAxis = { xLog: true, xReverse: true, xLabel: 'sigma (t)' };
  const sections: string[] = [];

  // 1. deviation and distances to the final sample
  sections.push(
    figure(
      'fig-deviation',
      'Quasi-linear sampling and the denoising trajectory converging first: mean over trajectories (line) and p05-p95 (band) of the distance of x_t from the chord x_0 -> x_S (dev_x), of x_t and of D(x_t) from the final sample.',
      [
        linePlot(meanSeries('dev_x', true), { title: 'dev_x: distance from the chord', yLabel: 'dev_x', ...sigmaAxis, yLog: true }),
        linePlot(meanSeries('dist_x_final', true), { title: '||x_t - x_S||', yLabel: 'dist_x_final', ...sigmaAxis, yLog: true }),
        linePlot(meanSeries('dist_d_final', true), { title: '||D(x_t) - x_S||', yLabel: 'dist_d_final', ...sigmaAxis, yLog: true }),
      ].join(''),
    ),
  );

  // 2. magnitudes with the sigma sqrt(dim) reference
  const sigmas = [...new Set(curves.map((r) => num(r.sigma)).filter((s) => s > 0))].sort((a, b) => a - b);
  const reference: Series = { name: 'sigma * sqrt(dim)', points: sigmas.map((s) => [s, s * Math.sqrt(dim)]), color: '#000000', dash: '4 3' };
  sections.push(
    figure(
      'fig-magnitudes',
      `Magnitudes: ||x_t|| follows sigma * sqrt(dim) (dim ${dim}) while ||D(x_t)|| stays at the data's scale.`,
      [
        linePlot([...meanSeries('x_norm', false), reference], { title: '||x_t||', yLabel: 'x_norm', ...sigmaAxis, yLog: true }),
        linePlot(meanSeries('d_norm', false), { title: '||D(x_t)||', yLabel: 'd_norm', ...sigmaAxis, yLog: true }),
      ].join(''),
    ),
  );

  // 3. 2-D projections of kept trajectories
  const keep = Math.max(0, Number(doc.spec.keepStates ?? 0));
  const projections: string[] = [];
  const statesByConfig = new Map<string, Row[]>();
  if (keep > 0) {
    for (const c of configs) {
      const perShard = await readAll(c.shards, async (shard) => {
        const key = studyKeys.shard(studyId, c.configId, shard, 'states');
        return (await store.exists(key)) ? tableRows(await readTable(store, key)) : [];
      });
      const rows = perShard.flat();
      statesByConfig.set(c.configId, rows);
      const bySample = new Map<number, Row[]>();
      for (const r of rows) bySample.set(r.sample as number, [...(bySample.get(r.sample as number) ?? []), r]);
      const series: Series[] = [];
      [...bySample.keys()].sort((a, b) => a - b).forEach((sample, k) => {
        const pts = bySample.get(sample)!.sort((a, b) => (a.step as number) - (b.step as number));
        const xs = pts.map((p) => vec(p.x)!);
        const ds = pts.map((p) => vec(p.denoised));
        const proj = projectTrajectory(xs, ds);
        const st = seriesStyle(k);
        series.push({ name: `sample ${sample}: x_t`, points: proj.x, color: st.color, markers: true });
        series.push({ name: `sample ${sample}: D(x_t)`, points: proj.d, color: st.color, dash: '3 3' });
      });
      if (series.length) projections.push(linePlot(series, { title: c.configId, xLabel: 'along the chord x_0 -> x_S', yLabel: 'top deviation direction', legend: false, width: 360, height: 300 }));
    }
  }
  if (projections.length) {
    sections.push(
      figure(
        'fig-projections',
        'Kept trajectories projected on the plane of their chord (x axis, from x_0 to x_S) and the top principal direction of their deviation from it (y axis): sampling trajectory x_t (solid, dots) and denoising trajectory D(x_t) (dashed).',
        projections.join(''),
      ),
    );
  }

  // 4. global error and ODE-Jump error against NFE
  if (summary.some((r) => Number.isFinite(num(r.final_err_ref_mean)))) {
    const methods = [...new Set(configs.filter((c) => c.role !== 'reference').map((c) => methodOf(c.configId)))];
    const full: Series[] = methods.map((m) => ({
      name: `${m}: full solve`,
      points: summary
        .filter((r) => r.role !== 'reference' && methodOf(r.config_id as string) === m)
        .map((r) => [num(r.nfe), num(r.final_err_ref_mean)] as [number, number])
        .sort((a, b) => a[0] - b[0]),
      markers: true,
    }));
    const jump: Series[] = methods.map((m, k) => {
      const members = configs.filter((c) => c.role !== 'reference' && methodOf(c.configId) === m).sort((a, b) => b.nfe - a.nfe);
      const rows = curveOf(members[0]!.configId);
      return { name: `${m}: ODE-Jump (${members[0]!.configId})`, points: rows.map((r) => [num(r.nfe), num(r.jump_err_ref_mean)] as [number, number]).filter(([n]) => n > 0), color: seriesStyle(k).color, dash: '5 3' };
    });
    sections.push(
      figure(
        'fig-error-nfe',
        'Error against the reference solve by NFE: the full solve of each config (solid, dots) and ODE-Jump, stopping after n evaluations and outputting D(x_t) (dashed, along the largest budget of each method).',
        linePlot([...full, ...jump], { title: 'error vs NFE', xLabel: 'NFE', yLabel: '||. - x_S^ref|| (mean)', xLog: true, yLog: true, width: 760, height: 380 }),
      ),
    );
  }

  // 5. score deviation, KDE gain
  if (has('score_dev')) {
    const kindOf = (k: 'denoiser' | 'compare') => String((doc.spec[k] as { kind?: string } | undefined)?.kind ?? 'optimal');
    const [den, cmp] = [kindOf('denoiser'), kindOf('compare')];
    const along = den === 'tfjs' ? 'the learned denoiser\'s trajectories' : den === 'optimal' ? 'the optimal denoiser\'s trajectories' : `the ${den} denoiser's trajectories`;
    sections.push(
      figure(
        'fig-score-dev',
        `Score deviation ||D(x_t) - D'(x_t)|| along ${along} (D: ${den}, D': compare = ${cmp}), mean per step against sigma. With one learned and one optimal denoiser this is the paper's empirical score deviation; swap denoiser and compare to measure it along the other trajectory.`,
        linePlot(meanSeries('score_dev', true), { title: 'score deviation', yLabel: 'score_dev', ...sigmaAxis, yLog: true }),
      ),
    );
  }
  if (has('kde_gain')) {
    sections.push(
      figure(
        'fig-kde-gain',
        'KDE gain per step: log p_t(x_{i+1}) - log p_t(x_i) for the kernel density of the training set at bandwidth t_i (annealed mean shift never decreases it for Euler with the optimal denoiser).',
        linePlot(meanSeries('kde_gain', true), { title: 'KDE gain per step', yLabel: 'kde_gain', ...sigmaAxis, yLog: false }),
      ),
    );
  }

  // 6. memorisation: nearest-neighbour ratio
  // of the samples tables only nn_ratio is used, and the first config's first final samples (section 7)
  const first = configs.find((c) => c.role !== 'reference');
  const samplesByConfig = new Map<string, Row[]>();
  let finals: Row[] = [];
  for (const c of configs) {
    const tables = await readAll(c.shards, (shard) => readTable(store, studyKeys.shard(studyId, c.configId, shard, 'samples')));
    samplesByConfig.set(c.configId, tables.flatMap((t) => pickRows(t, ['nn_ratio'])));
    if (c === first) for (const t of tables) if (finals.length < FINALS_SHOWN) finals = finals.concat(pickRows(t, ['final', 'nn_point'], FINALS_SHOWN - finals.length));
  }
  const nnGroups = configs.map((c) => ({ name: c.configId, values: samplesByConfig.get(c.configId)!.map((r) => num(r.nn_ratio)).filter(Number.isFinite) })).filter((g) => g.values.length);
  if (nnGroups.length) {
    sections.push(
      figure(
        'fig-nn-ratio',
        'Memorisation: distance of each final sample to its nearest training point divided by the distance to the second nearest (near 0: a copy of a training point).',
        histogram(nnGroups, { title: 'nn_dist / nn2_dist', xLabel: 'nn_ratio', yLabel: 'fraction of samples', lo: 0, hi: 1, bins: 20, width: 760, height: 300 }),
      ),
    );
  }

  // 7. image grids
  const img = doc.data.dataset.image;
  if (img && img.height * img.width * img.channels === dim) {
    const grids: string[] = [];
    for (const c of configs.filter((c) => c.role !== 'reference').slice(0, 4)) {
      const rows = statesByConfig.get(c.configId) ?? [];
      const samplesKept = [...new Set(rows.map((r) => r.sample as number))].sort((a, b) => a - b).slice(0, 4);
      if (!samplesKept.length) continue;
      const steps = [...new Set(rows.map((r) => r.step as number))].sort((a, b) => a - b);
      const chosen = steps.length <= 8 ? steps : Array.from({ length: 8 }, (_, k) => steps[Math.round((k * (steps.length - 1)) / 7)]!);
      const cells: (number[] | null)[][] = [];
      for (const s of samplesKept) {
        const at = (step: number) => rows.find((r) => r.sample === s && r.step === step);
        cells.push(chosen.map((st) => vec(at(st)?.x)));
        cells.push(chosen.map((st) => vec(at(st)?.denoised)));
      }
      grids.push(`<div class="grid"><div class="gridtitle">${esc(c.configId)}: steps ${chosen.join(', ')}</div>${pngTag(imageGrid(cells, img.height, img.width, img.channels, 2), `x_t and D(x_t) of ${c.configId}`)}</div>`);
    }
    if (grids.length) sections.push(figure('fig-image-steps', 'For each kept sample: a row of x_t (clipped to [-1, 1]) and, under it, a row of D(x_t), at evenly spaced steps from sigmaMax (left) to sigmaMin (right).', grids.join('')));
    if (finals.length && finals.some((r) => r.nn_point !== null)) {
      const cells = [finals.map((r) => vec(r.final)), finals.map((r) => vec(r.nn_point))];
      sections.push(figure('fig-image-nn', `Final samples of ${first!.configId} (top) and their nearest training images (bottom).`, pngTag(imageGrid(cells, img.height, img.width, img.channels, 2), 'final samples and nearest training images')));
    }
  }

  // 8. summary table, spec, provenance
  const head = ['config', 'role', 'NFE', 'n', 'max_dev_ratio p50', 'pca_var_1', 'x_reach_sigma p50', 'd_reach_sigma p50', 'nn_dist p50', 'nn_ratio p50', 'final_err_ref mean'];
  const body = summary.map((r) =>
    [r.config_id, r.role, r.nfe, r.samples, fmt(r.max_dev_ratio_p50), fmt(r.pca_var_1_mean, 6), fmt(r.x_reach_sigma_p50), fmt(r.d_reach_sigma_p50), fmt(r.nn_dist_p50), fmt(r.nn_ratio_p50), fmt(r.final_err_ref_mean)]
      .map((v) => `<td>${esc(String(v))}</td>`)
      .join(''),
  );
  sections.push(`<section id="table-summary"><h2>Summary per config</h2><table><thead><tr>${head.map((h) => `<th>${esc(h)}</th>`).join('')}</tr></thead><tbody>${body.map((r) => `<tr>${r}</tr>`).join('')}</tbody></table></section>`);
  const d = doc.data.dataset;
  const provenance = [
    ['study', doc.studyId],
    ['status', doc.status ?? '-'],
    ['dataset', `${d.source}: n = ${d.n}, dim = ${d.dim}, sha256 ${d.contentHash}`],
    ['backend', doc.backend ? `${doc.backend.name} (${doc.backend.package})${doc.backend.matMul ? `; matrix products: ${doc.backend.matMul}` : ''}` : '-'],
    ['versions', Object.entries(doc.versions ?? {}).map(([k, v]) => `${k} ${v}`).join(', ')],
    ['timing', doc.elapsedMs !== undefined ? `${(doc.elapsedMs / 1000).toFixed(1)} s from ${doc.startedAt}` : doc.completedAt ? `completed ${doc.completedAt}` : '-'],
  ];
  sections.push(
    `<section id="provenance"><h2>Provenance</h2><table>${provenance.map(([k, v]) => `<tr><th>${esc(k!)}</th><td>${esc(v!)}</td></tr>`).join('')}</table><h3>Resolved spec</h3><pre>${esc(JSON.stringify(doc.spec, null, 2))}</pre></section>`,
  );
  const css =
    'body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222}h1{font-size:22px}figure{margin:24px 0;padding:8px;border:1px solid #ddd}figcaption{color:#555;font-size:13px;margin-top:6px}svg.plot{margin:4px;background:#fff}svg text{font:11px sans-serif;fill:#333}svg .title{font-size:13px;font-weight:600}svg .frame{fill:none;stroke:#999}svg .grid{stroke:#eee}svg .legend{font-size:10px}table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ddd;padding:3px 6px;text-align:left}pre{background:#f6f6f6;padding:8px;font-size:12px;overflow:auto}.grid{display:inline-block;margin:6px}.gridtitle{font-size:12px;color:#555}img{image-rendering:pixelated}';
  return `<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'"><title>trajlab report: ${esc(doc.studyId)}</title><style>${css}</style></head><body><h1>trajlab report: ${esc(doc.studyId)}</h1><p>${configs.length} config(s), ${esc(String(doc.spec.name ?? ''))}; every figure is built from the study's Arrow files and study.json.</p>${sections.join('\n')}</body></html>\n`;
}

/** Builds the report and writes it to <studyId>/summary/report.html; returns where. */
export async function writeReport(store: ObjectStore, studyId: string): Promise<string> {
  const html = await buildReport(store, studyId);
  await store.put(studyKeys.report(studyId), new TextEncoder().encode(html));
  return store.locate(studyKeys.report(studyId));
}
