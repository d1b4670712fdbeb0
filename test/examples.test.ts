import { planStudy, resolveStudyFile } from '@trajlab/study';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO } from './helpers.js';

const FMNIST = '/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz';

describe('every shipped example spec validates and plans', () => {
  for (const file of readdirSync(join(REPO, 'examples')).filter((f) => f.endsWith('.yaml'))) {
    const needsData = file.startsWith('fashion-mnist');
    it.skipIf(needsData && !existsSync(FMNIST))(file, () => {
      const { study } = resolveStudyFile(join(REPO, 'examples', file));
      const plan = planStudy(study);
      expect(plan.configs.length).toBeGreaterThan(0);
      expect(study.studyId.startsWith(study.spec.name)).toBe(true);
    });
  }
});
