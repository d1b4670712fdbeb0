/** Invalid user input in a spec; `field` is a dotted path such as solvers[1].steps. CLI exit code 2. */
export class SpecError extends Error {
  constructor(
    readonly field: string,
    /** The problem, without file and field. */
    readonly detail: string,
    readonly file?: string,
  ) {
    super(`${file ? `${file}: ` : ''}${field ? `${field}: ` : ''}${detail}`);
    this.name = 'SpecError';
  }
}

/** Formats a zod issue path as a field name: ['solvers', 1, 'steps'] -> solvers[1].steps. */
export function fieldPath(path: readonly PropertyKey[]): string {
  return path.reduce<string>((acc, p) => (typeof p === 'number' ? `${acc}[${p}]` : acc ? `${acc}.${String(p)}` : String(p)), '');
}
