import type { RunProgress } from '@trajlab/runner';
import { formatDuration } from './format.js';

/**
 * A progress bar on stderr: redrawn in place on a terminal, one line per finished config otherwise (logs, CI).
 */
export function progressPrinter(stream: NodeJS.WriteStream = process.stderr): { update: (p: RunProgress) => void; done: () => void } {
  const tty = Boolean(stream.isTTY);
  let lastConfig = -1;
  let lastDraw = 0;
  let lastLine = '';
  const line = (p: RunProgress) => {
    const frac = (p.trajectoriesDone + 0) / Math.max(1, p.trajectoriesTotal);
    const width = 24;
    const filled = Math.round(frac * width);
    const rate = p.trajectoriesDone / Math.max(1e-3, p.elapsedMs / 1000);
    const eta = rate > 0 ? ((p.trajectoriesTotal - p.trajectoriesDone) / rate) * 1000 : Number.NaN;
    return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${(100 * frac).toFixed(0).padStart(3)}%  config ${p.configIndex + 1}/${p.configs} ${p.configId}  shard ${p.shard} ${(100 * p.shardFraction).toFixed(0)}%  ${rate.toFixed(1)} traj/s  ETA ${Number.isFinite(eta) ? formatDuration(eta) : '?'}`;
  };
  return {
    update(p) {
      if (tty) {
        const now = Date.now();
        if (now - lastDraw < 100 && p.shardFraction < 1) return;
        lastDraw = now;
        lastLine = line(p);
        stream.write(`\r${lastLine.slice(0, (stream.columns ?? 120) - 1).padEnd(Math.min(lastLine.length, (stream.columns ?? 120) - 1))}`);
      } else if (p.configIndex !== lastConfig && p.shardFraction === 1 && p.trajectoriesDone > 0) {
        // Print when a config's first shard completes, and at the end.
        lastConfig = p.configIndex;
        stream.write(`${line(p)}\n`);
      } else if (p.trajectoriesDone === p.trajectoriesTotal && p.shardFraction === 1) {
        stream.write(`${line(p)}\n`);
      }
    },
    done() {
      if (tty && lastLine) stream.write('\n');
    },
  };
}
