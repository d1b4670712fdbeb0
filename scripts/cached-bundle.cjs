// Runs a CommonJS bundle (scripts/build-js.mjs) with V8's code cache, as `node --experimental-compile-cache` does in
// later Node versions: the first run compiles the bundle and, once its top level has run, saves the bytecode next to
// it; later runs start from that (a 5 MB bundle loads in ~70 ms instead of ~135 ms here). The cache is keyed by the bundle's
// size and modification time and by the Node version (V8 itself refuses a cache made by another V8 or other flags);
// rebuilding removes it with the rest of dist/. The bundle must not use import() (build-js.mjs turns it into require()):
// vm scripts have no module loader on Node 20. build-js.mjs writes bundles already wrapped in the CommonJS module
// function (WRAPPER), so that their text is compiled as it lies in the file: with the file-mapping binding
// (packages/datasets/native/map_file.c) the source is a string over the file's mapped pages and the cache is read from
// its mapping, where reading them copied ~5 MB into fresh memory in every process (~2500 page faults, ~40 ms on a VM
// where a fault costs ~15 us). A bundle without the wrapper is wrapped here. TRAJLAB_CODE_CACHE=off: the bundle is
// compiled without the cache. Plain CommonJS: it runs before any loader.
'use strict';
const { isAscii } = require('node:buffer');
const { readFileSync, renameSync, statSync, writeFileSync } = require('node:fs');
const Module = require('node:module');
const { basename, dirname, join } = require('node:path');
const vm = require('node:vm');

/** The CommonJS module function around a bundle's code (Node's own Module.wrap), as build-js.mjs writes bundles. */
const WRAPPER = ['(function (exports, require, module, __filename, __dirname) { ', '\n});'];

/** Where the code cache of `file` lives, for this build of it and this Node. */
function cachePath(file) {
  const { size, mtimeMs } = statSync(file);
  return join(dirname(file), `.${basename(file)}.${process.version}.${size}.${Math.round(mtimeMs)}.v8-cache`);
}

/** Where the datasets package builds its file-mapping binding (scripts/build-native.mjs there). */
const MAP_BINDING = join(__dirname, '..', 'packages', 'datasets', 'native', 'build', 'trajlab_map_file.node');

/** The binding's mapAscii and mapFile, or null: not built, too old, or TRAJLAB_MAP_FILES=off. Loaded once. */
let mapping;
function fileMapping() {
  if (mapping !== undefined) return mapping;
  mapping = null;
  if ((process.env.TRAJLAB_MAP_FILES || '').trim().toLowerCase() === 'off') return mapping;
  try {
    const binding = require(MAP_BINDING);
    if (typeof binding.mapAscii === 'function' && typeof binding.mapFile === 'function') mapping = binding;
  } catch {
    // no binding: the files are read
  }
  return mapping;
}

/** How the latest readSource got its text: 'mapped' (a string over the file's pages) or 'read'. */
let lastSource = null;

/**
 * The text of `file`. esbuild writes bundles in ASCII (it escapes other characters): with the file-mapping binding
 * that text is the mapped file itself; without it, ASCII decoded as latin1 is the same string without UTF-8's
 * validation (~1-2 ms instead of ~20-35 ms for a 4 MB bundle on a 2-core VM). A file with other bytes is decoded as
 * UTF-8.
 */
function readSource(file) {
  const binding = fileMapping();
  const text = binding ? binding.mapAscii(file) : null;
  if (text !== null) {
    lastSource = 'mapped';
    return text;
  }
  lastSource = 'read';
  const bytes = readFileSync(file);
  return bytes.toString(isAscii(bytes) ? 'latin1' : 'utf8');
}

/** The bytes of the code cache `file`, from its mapping where the binding is there; undefined when there is none. */
function readCache(file) {
  try {
    const binding = fileMapping();
    return binding ? Buffer.from(binding.mapFile(file)) : readFileSync(file);
  } catch {
    return undefined;
  }
}

/** How the latest runCached of this process went: 'off' (compiled without the cache), 'used' the cache, or 'written' it. */
let lastRun = null;

/** The exports of the CommonJS bundle `file`, run from its code cache when there is a valid one. */
function runCached(file) {
  const off = (process.env.TRAJLAB_CODE_CACHE || '').trim().toLowerCase() === 'off';
  const cache = off ? null : cachePath(file);
  const cachedData = cache ? readCache(cache) : undefined;
  const source = readSource(file);
  const wrapped = source.startsWith(WRAPPER[0]) && source.endsWith(WRAPPER[1]) ? source : WRAPPER[0] + source + WRAPPER[1];
  const script = new vm.Script(wrapped, { filename: file, cachedData });
  const module = new Module(file, null);
  module.filename = file;
  script.runInThisContext()(module.exports, Module.createRequire(file), module, file, dirname(file));
  module.loaded = true;
  lastRun = off ? 'off' : 'used';
  if (cache && (!cachedData || script.cachedDataRejected)) {
    lastRun = 'written';
    // saved once the bundle's top level has run: the functions every run needs, not those of one run's work (a
    // cache of everything a whole run compiled loads slower than it saves); written aside and renamed, so that a
    // concurrent process never reads half of it (nor one that maps the old file); a read-only installation simply
    // runs without
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

module.exports = { runCached, cachePath, readSource, WRAPPER, lastRun: () => lastRun, lastSource: () => lastSource };
