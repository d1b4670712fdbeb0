// Runs a CommonJS bundle (scripts/build-js.mjs) with V8's code cache, as `node --experimental-compile-cache` does in
// later Node versions: the first run compiles the bundle and, once its top level has run, saves the bytecode next to
// it; later runs start from that (a 5 MB bundle loads in ~70 ms instead of ~135 ms here). The cache is keyed by the bundle's
// size and modification time and by the Node version (V8 itself refuses a cache made by another V8 or other flags);
// rebuilding removes it with the rest of dist/. The bundle must not use import() (build-js.mjs turns it into require()):
// vm scripts have no module loader on Node 20. TRAJLAB_CODE_CACHE=off: the bundle is simply required. Plain CommonJS:
// it runs before any loader.
'use strict';
const { isAscii } = require('node:buffer');
const { readFileSync, renameSync, statSync, writeFileSync } = require('node:fs');
const Module = require('node:module');
const { basename, dirname, join } = require('node:path');
const vm = require('node:vm');

/** Where the code cache of `file` lives, for this build of it and this Node. */
function cachePath(file) {
  const { size, mtimeMs } = statSync(file);
  return join(dirname(file), `.${basename(file)}.${process.version}.${size}.${Math.round(mtimeMs)}.v8-cache`);
}

/**
 * The text of `file`. esbuild writes bundles in ASCII (it escapes other characters), and ASCII decoded as latin1 is the
 * same string without UTF-8's validation: ~1-2 ms instead of ~20-35 ms for a 4 MB bundle on a 2-core VM, in every
 * process that starts. A file with other bytes is decoded as UTF-8.
 */
function readSource(file) {
  const bytes = readFileSync(file);
  return bytes.toString(isAscii(bytes) ? 'latin1' : 'utf8');
}

/** How the latest runCached of this process went: 'off' (plain require), 'used' the cache, or 'written' it. */
let lastRun = null;

/** The exports of the CommonJS bundle `file`, run from its code cache when there is a valid one. */
function runCached(file) {
  if ((process.env.TRAJLAB_CODE_CACHE || '').trim().toLowerCase() === 'off') {
    lastRun = 'off';
    return require(file);
  }
  const cache = cachePath(file);
  let cachedData;
  try {
    cachedData = readFileSync(cache);
  } catch {
    cachedData = undefined;
  }
  const script = new vm.Script(Module.wrap(readSource(file)), { filename: file, cachedData });
  const module = new Module(file, null);
  module.filename = file;
  script.runInThisContext()(module.exports, Module.createRequire(file), module, file, dirname(file));
  module.loaded = true;
  lastRun = 'used';
  if (!cachedData || script.cachedDataRejected) {
    lastRun = 'written';
    // saved once the bundle's top level has run: the functions every run needs, not those of one run's work (a
    // cache of everything a whole run compiled loads slower than it saves); written aside and renamed, so that a
    // concurrent process never reads half of it; a read-only installation simply runs without
    try {
      const tmp = `${cache}.${process.pid}.tmp`;
      writeFileSync(tmp, script.createCachedData());
      renameSync(tmp, cache);
    } catch {
      // no cache this time
    }
  }
  return module.exports;
}

module.exports = { runCached, cachePath, readSource, lastRun: () => lastRun };
