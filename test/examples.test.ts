import { parseSpec, planStudy, resolveStudyFile, resolveTrainFile } from '@trajlab/study';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO } from './helpers.js';

const FMNIST = '/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz';
const EXAMPLES = join(REPO, 'examples');

function yamlFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? yamlFiles(join(dir, e.name)) : e.name.endsWith('.yaml') ? [join(dir, e.name)] : []));
}

const files = yamlFiles(EXAMPLES);
const needsData = (path: string) => readFileSync(path, 'utf8').includes('fashion-mnist');
const isTrainSpec = (path: string) => /^train-/.test(path.split('/').pop()!);
/** Where `pnpm trajlab train <spec>` run from the repository root writes each training spec's model. */
const trainedModels = new Map(files.filter(isTrainSpec).map((f) => [resolve(REPO, 'trajlab-out', 'models', /^name:\s*(\S+)/m.exec(readFileSync(f, 'utf8'))![1]!), f]));

describe('every shipped example spec validates', () => {
  for (const path of files) {
    const name = relative(EXAMPLES, path);
    it.skipIf(needsData(path) && !existsSync(FMNIST))(name, () => {
      if (isTrainSpec(path)) {
        const t = resolveTrainFile(path);
        expect(t.options.steps).toBeGreaterThan(0);
        return;
      }
      const text = readFileSync(path, 'utf8');
      const spec = parseSpec(text, path);
      const models = [spec.denoiser, spec.compare].filter((d) => d?.kind === 'tfjs') as { uri: string }[];
      if (models.length > 0) {
        // models are trained by a shipped training spec (too slow for the suite): check the uri names its output
        for (const m of models) expect(trainedModels.has(resolve(join(path, '..'), m.uri)), `${name}: ${m.uri} is not written by any examples/**/train-*.yaml`).toBe(true);
        return;
      }
      const { study } = resolveStudyFile(path);
      const plan = planStudy(study);
      expect(plan.configs.length).toBeGreaterThan(0);
      expect(study.studyId.startsWith(study.spec.name)).toBe(true);
    });
  }
});
