import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import type { z } from 'zod';
import { fieldPath, SpecError } from './errors.js';

/** Reads a spec file; a missing or unreadable file is a SpecError naming it. */
export function readSpecFile(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new SpecError('', code === 'ENOENT' ? 'spec file not found' : `cannot read spec file (${code})`, path);
  }
}

/**
 * Parses YAML or JSON text and validates it against a schema; every problem is reported with its field (`what` names
 * the kind of spec in messages, e.g. 'spec' or 'training spec').
 */
export function parseSpecText<S extends z.ZodType>(text: string, file: string, schema: S, what: string): z.output<S> {
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (err) {
    throw new SpecError('', `not valid YAML/JSON (${(err as Error).message.split('\n')[0]})`, file);
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new SpecError('', `a ${what} must be a mapping (YAML) or an object (JSON)`, file);
  const res = schema.safeParse(raw);
  if (res.success) return res.data;
  const issues = res.error.issues.map((iss) => {
    const base = fieldPath(iss.path);
    if (iss.code === 'unrecognized_keys') {
      return { field: iss.keys.map((k) => (base ? `${base}.${k}` : k)).join(', '), detail: `unknown key (not part of the ${what})` };
    }
    return { field: base || '(spec)', detail: iss.message };
  });
  if (issues.length === 1) throw new SpecError(issues[0]!.field, issues[0]!.detail, file);
  throw new SpecError('', `${issues.length} problems\n  ${issues.map((i) => `${i.field}: ${i.detail}`).join('\n  ')}`, file);
}
