/**
 * A shard process of `trajlab run --workers N`: resolves the study itself, builds its device state once, then runs the
 * shards its parent sends over IPC with the same executeShard as everything else.
 */
import { backendFromEnv, initBackend } from '@trajlab/backend';
import { openStore } from '@trajlab/storage';
import { planStudy, prefetchSpecFile, resolveStudyFile } from '@trajlab/study';
import { createContext, type StudyContext } from './context.js';
import { executeShard } from './execute.js';
import type { ChildMessage, ParentMessage } from './pool.js';

let ctx: StudyContext | null = null;
let out = '';
const send = (m: ChildMessage) => process.send?.(m);

process.on('disconnect', () => process.exit(1));
process.on('message', (raw: ParentMessage) => {
  void (async () => {
    try {
      if (raw.type === 'init') {
        await initBackend(backendFromEnv());
        await prefetchSpecFile(raw.specPath);
        const { study, data } = resolveStudyFile(raw.specPath);
        const plan = planStudy(study);
        ctx = await createContext(study, data, plan);
        out = raw.out;
        send({ type: 'ready' });
      } else if (raw.type === 'shard') {
        const config = ctx!.plan.configs.find((c) => c.configId === raw.configId)!;
        const shard = config.shards.find((s) => s.name === raw.shard)!;
        if (raw.sigmas) config.sigmas = raw.sigmas; // GITS: computed once by the parent
        let last = 0;
        const res = await executeShard(ctx!, openStore(out), config, shard, (done, total) => {
          const now = Date.now();
          if (now - last > 100 || done === total) {
            last = now;
            send({ type: 'progress', configId: raw.configId, shard: raw.shard, fraction: done / total });
          }
        });
        send({ type: 'done', configId: raw.configId, shard: raw.shard, reused: res.reused });
      } else if (raw.type === 'exit') {
        ctx?.dispose();
        process.exit(0);
      }
    } catch (err) {
      send({ type: 'error', message: err instanceof Error ? err.message : String(err), name: err instanceof Error ? err.name : 'Error' });
    }
  })();
});
