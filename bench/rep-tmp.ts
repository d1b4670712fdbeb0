import { writeReport } from '@trajlab/report';
import { aggregateStudy, aggregationStore, warmUpAggregation } from '@trajlab/runner';
import { openStore } from '@trajlab/storage';
import { readdirSync } from 'node:fs';
const out = process.argv[2]!;
if (process.argv[3]) console.log('warm-up', await warmUpAggregation(Number(process.argv[3])));
const studyId = readdirSync(out).find((d) => d.startsWith('perf-'))!;
for (let r = 0; r < 2; r++) {
  const store = aggregationStore(openStore(out));
  let t0 = performance.now();
  await aggregateStudy(store, studyId);
  const a = performance.now() - t0;
  t0 = performance.now();
  await writeReport(store, studyId);
  console.log('aggregate', a.toFixed(0), 'report', (performance.now() - t0).toFixed(0));
}
