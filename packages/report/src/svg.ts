/**
 * A small, dependency-free SVG plotter for the report: line plots with optional shaded bands and log axes, 2-D
 * trajectory plots, histograms. Output is deterministic text (fixed number formatting), so reports are reproducible.
 */

export const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf', '#7f7f7f', '#bcbd22'];
const DASHES = ['', '6 3', '2 2', '8 3 2 3'];

/** Style of series k: palette color, cycling dash patterns after the palette runs out. */
export function seriesStyle(k: number): { color: string; dash: string } {
  return { color: PALETTE[k % PALETTE.length]!, dash: DASHES[Math.floor(k / PALETTE.length) % DASHES.length]! };
}

export interface Series {
  name: string;
  /** [x, y] points; non-finite values break the line. */
  points: [number, number][];
  /** Optional [x, low, high] band drawn under the line. */
  band?: [number, number, number][];
  color?: string;
  dash?: string;
  /** Draw markers at the points. */
  markers?: boolean;
}

export interface PlotOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  xLog?: boolean;
  yLog?: boolean;
  width?: number;
  height?: number;
  /** Reverse the x axis (sigma decreasing left to right, as sampling runs). */
  xReverse?: boolean;
  /** Show a legend (default when there are 2+ series). */
  legend?: boolean;
}

const f = (v: number) => (Math.abs(v) < 1e-12 ? '0' : Number(v.toPrecision(6)).toString());
const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

function niceTicks(lo: number, hi: number, count = 5): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

function logTicks(lo: number, hi: number): number[] {
  const out: number[] = [];
  for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) {
    const v = 10 ** e;
    if (v >= lo * 0.999 && v <= hi * 1.001) out.push(v);
  }
  return out.length >= 2 ? out : niceTicks(lo, hi);
}

function tickLabel(v: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1e4 || a < 1e-3) return v.toExponential(0).replace('e+', 'e');
  return Number(v.toPrecision(4)).toString();
}

/** A line plot. Non-positive values are dropped on log axes. */
export function linePlot(series: Series[], o: PlotOptions): string {
  const W = o.width ?? 520;
  const H = o.height ?? 320;
  const m = { l: 62, r: 12, t: 28, b: 44 };
  const legend = (o.legend ?? series.length > 1) && series.length > 0;
  const legendRows = legend ? Math.ceil(series.length / 2) : 0;
  const totalH = H + legendRows * 15;
  const ok = (x: number, y: number) => Number.isFinite(x) && Number.isFinite(y) && (!o.xLog || x > 0) && (!o.yLog || y > 0);
  const xs: number[] = [];
  const ys: number[] = [];
  for (const s of series) {
    for (const [x, y] of s.points) if (ok(x, y)) (xs.push(x), ys.push(y));
    for (const [x, lo, hi] of s.band ?? []) {
      if (ok(x, lo)) ys.push(lo);
      if (ok(x, hi)) ys.push(hi);
    }
  }
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" class="plot" width="${W}" height="${totalH}" viewBox="0 0 ${W} ${totalH}" role="img" aria-label="${esc(o.title)}">`);
  parts.push(`<text x="${W / 2}" y="16" text-anchor="middle" class="title">${esc(o.title)}</text>`);
  if (xs.length === 0) {
    parts.push(`<text x="${W / 2}" y="${H / 2}" text-anchor="middle" class="empty">no data</text></svg>`);
    return parts.join('');
  }
  let [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  if (x0 === x1) (x0 = o.xLog ? x0 / 2 : x0 - 1), (x1 = o.xLog ? x1 * 2 : x1 + 1);
  if (y0 === y1) (y0 = o.yLog ? y0 / 2 : y0 - 1), (y1 = o.yLog ? y1 * 2 : y1 + 1);
  if (!o.yLog) {
    const pad = (y1 - y0) * 0.05;
    y0 -= pad;
    y1 += pad;
  }
  const tx = (v: number) => (o.xLog ? Math.log10(v) : v);
  const ty = (v: number) => (o.yLog ? Math.log10(v) : v);
  const [X0, X1, Y0, Y1] = [tx(x0), tx(x1), ty(y0), ty(y1)];
  const px = (x: number) => {
    const u = (tx(x) - X0) / (X1 - X0);
    return m.l + (o.xReverse ? 1 - u : u) * (W - m.l - m.r);
  };
  const py = (y: number) => H - m.b - ((ty(y) - Y0) / (Y1 - Y0)) * (H - m.t - m.b);
  // axes and ticks
  parts.push(`<rect x="${m.l}" y="${m.t}" width="${W - m.l - m.r}" height="${H - m.t - m.b}" class="frame"/>`);
  for (const v of o.xLog ? logTicks(x0, x1) : niceTicks(x0, x1)) {
    parts.push(`<line x1="${f(px(v))}" y1="${H - m.b}" x2="${f(px(v))}" y2="${m.t}" class="grid"/><text x="${f(px(v))}" y="${H - m.b + 14}" text-anchor="middle">${tickLabel(v)}</text>`);
  }
  for (const v of o.yLog ? logTicks(y0, y1) : niceTicks(y0, y1)) {
    parts.push(`<line x1="${m.l}" y1="${f(py(v))}" x2="${W - m.r}" y2="${f(py(v))}" class="grid"/><text x="${m.l - 4}" y="${f(py(v) + 4)}" text-anchor="end">${tickLabel(v)}</text>`);
  }
  parts.push(`<text x="${(m.l + W - m.r) / 2}" y="${H - 8}" text-anchor="middle" class="label">${esc(o.xLabel)}</text>`);
  parts.push(`<text transform="translate(14 ${(m.t + H - m.b) / 2}) rotate(-90)" text-anchor="middle" class="label">${esc(o.yLabel)}</text>`);
  series.forEach((s, k) => {
    const st = seriesStyle(k);
    const color = s.color ?? st.color;
    const dash = s.dash ?? st.dash;
    const band = (s.band ?? []).filter(([x, lo, hi]) => ok(x, lo) && ok(x, hi));
    if (band.length > 1) {
      const top = band.map(([x, , hi]) => `${f(px(x))},${f(py(hi))}`);
      const bottom = band.map(([x, lo]) => `${f(px(x))},${f(py(lo))}`).reverse();
      parts.push(`<polygon points="${[...top, ...bottom].join(' ')}" fill="${color}" fill-opacity="0.15" stroke="none"/>`);
    }
    let d = '';
    let pen = false;
    for (const [x, y] of s.points) {
      if (!ok(x, y)) {
        pen = false;
        continue;
      }
      d += `${pen ? 'L' : 'M'}${f(px(x))} ${f(py(y))}`;
      pen = true;
    }
    if (d) parts.push(`<path d="${d}" fill="none" stroke="${color}" stroke-width="1.6"${dash ? ` stroke-dasharray="${dash}"` : ''}><title>${esc(s.name)}</title></path>`);
    if (s.markers) for (const [x, y] of s.points) if (ok(x, y)) parts.push(`<circle cx="${f(px(x))}" cy="${f(py(y))}" r="2.5" fill="${color}"/>`);
  });
  if (legend) {
    series.forEach((s, k) => {
      const st = seriesStyle(k);
      const lx = m.l + (k % 2) * ((W - m.l) / 2);
      const ly = H + Math.floor(k / 2) * 15 + 4;
      parts.push(
        `<line x1="${lx}" y1="${ly}" x2="${lx + 18}" y2="${ly}" stroke="${s.color ?? st.color}" stroke-width="2"${(s.dash ?? st.dash) ? ` stroke-dasharray="${s.dash ?? st.dash}"` : ''}/><text x="${lx + 22}" y="${ly + 4}" class="legend">${esc(s.name)}</text>`,
      );
    });
  }
  parts.push('</svg>');
  return parts.join('');
}

/** A histogram of values in [lo, hi] with `bins` bins; one series per group, drawn as outlined steps. */
export function histogram(groups: { name: string; values: number[] }[], o: PlotOptions & { lo: number; hi: number; bins?: number }): string {
  const bins = o.bins ?? 25;
  const width = (o.hi - o.lo) / bins;
  const series: Series[] = groups.map((g) => {
    const counts = new Array<number>(bins).fill(0);
    for (const v of g.values) if (Number.isFinite(v)) counts[Math.min(bins - 1, Math.max(0, Math.floor((v - o.lo) / width)))]! += 1;
    const total = Math.max(1, g.values.length);
    const pts: [number, number][] = [];
    counts.forEach((c, b) => {
      pts.push([o.lo + b * width, c / total]);
      pts.push([o.lo + (b + 1) * width, c / total]);
    });
    return { name: `${g.name} (n=${g.values.length})`, points: pts };
  });
  return linePlot(series, { ...o, xLog: false, yLog: false });
}
