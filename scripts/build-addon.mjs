// Builds one of trajlab's optional Node-API addons from C sources with the system's C compiler and Node's own headers
// (no node-gyp, no library). Used by the packages' install scripts (packages/*/scripts/build-native.mjs). Where a
// compiler or the headers are missing it says why and returns: the addon is optional and trajlab has a fallback.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';

/**
 * Compiles `sources` into the addon `target` (written to `target.tmp` first, then renamed, so a failed build never
 * leaves a broken addon). `what` names the addon in messages ("native matrix products"), `fallback` what trajlab does
 * without it, `offSwitch` the environment variable that skips the build when set to `off`. Returns whether it built.
 */
export function buildAddon({ sources, target, what, fallback, offSwitch }) {
  const skip = (reason) => {
    console.log(`trajlab: ${what} not built (${reason}); ${fallback}`);
    return false;
  };
  if ((process.env[offSwitch] ?? '').toLowerCase() === 'off') return skip(`${offSwitch}=off`);
  if (process.platform === 'win32') return skip('not supported on Windows');

  // Node's headers: the prefix npm builds addons against (npm_config_nodedir), else the running Node's own prefix.
  const prefixes = [process.env.npm_config_nodedir, join(dirname(process.execPath), '..')].filter(Boolean);
  const include = prefixes.map((p) => join(p, 'include', 'node')).find((d) => existsSync(join(d, 'node_api.h')));
  if (!include) return skip(`node_api.h not found under ${prefixes.map((p) => join(p, 'include', 'node')).join(' or ')}`);

  const cc = process.env.CC ?? 'cc';
  if (spawnSync(cc, ['--version'], { stdio: 'ignore' }).status !== 0) return skip(`no C compiler ('${cc}')`);

  mkdirSync(dirname(target), { recursive: true });
  const tmp = `${target}.tmp`;
  // -std=c11 (not gnu11) keeps the compiler from contracting a * b + c into fma on its own: the kernels' fma are explicit
  const args = ['-O2', '-std=c11', '-shared', '-fPIC', '-fvisibility=hidden', '-pthread', `-I${include}`, ...sources, '-o', tmp, '-lm'];
  const built = spawnSync(cc, args, { encoding: 'utf8' });
  if (built.status !== 0) {
    rmSync(tmp, { force: true });
    const firstError = (built.stderr || built.error?.message || '').split('\n').find((l) => /error|cannot find/i.test(l)) ?? 'compiler failed';
    return skip(firstError.trim());
  }
  renameSync(tmp, target);
  console.log(`trajlab: ${what} built (${target.slice(process.cwd().length + 1) || target})`);
  return true;
}
