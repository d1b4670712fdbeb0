/**
 * Certified pruning's host tables, kept on disk between processes. Building them (principal axes by subspace
 * iteration, every training point projected on them, the bound tables) takes ~0.25 s for Fashion-MNIST 10k in every
 * process that prunes: each `trajlab run`, each of its shard processes and each worker. They are a function of the
 * training set's points, the rank and the recipe alone, so a process that finds them on disk reads them (~2 ms)
 * instead.
 *
 * A file holds a JSON header line (format, shape, the training set's content hash, the recipe, the two radii, the
 * sha256 of the payload) and the float32 payload: mean [dim], axes [dim, rank], bound table [rank + 2, n]. It is read
 * only when every header field matches and the payload's sha256 checks out: a damaged or foreign file is never used,
 * the tables are computed again and the file replaced. Files are written whole to a temporary name and renamed into
 * place, so a reader never sees part of one.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { endianness } from 'node:os';
import { join } from 'node:path';
import { TRAJLAB_VERSION } from '@trajlab/core';
import { writeCacheFile } from '@trajlab/datasets';

/** Bumped when the file layout changes. */
const FORMAT = 1;

/** The tables certified pruning needs on the host (see TrainingSet). */
export interface PruningTables {
  /** Mean of the training set, [dim]. */
  mean: Float32Array;
  /** Orthonormal axes, row-major [dim, rank]. */
  basis: Float32Array;
  /** Bound table, row-major [rank + 2, n]: the columns (-2 p_j, 1, (1 - margin) ||p_j||^2). */
  table: Float32Array;
  /** Largest ||P^T (y_j - mean)||. */
  maxProjected: number;
  /** Largest ||(I - P P^T) (y_j - mean)|| (with its rounding margin). */
  maxResidual: number;
}

/** Where a training set's pruning tables may be kept: a directory, and the set's content hash (Dataset.contentHash). */
export interface PruningTablesCache {
  dir: string;
  /** sha256 of the training set's dimensions and float32 points (datasetContentHash). */
  contentHash: string;
}

interface Header {
  format: number;
  version: string;
  endianness: string;
  n: number;
  dim: number;
  rank: number;
  contentHash: string;
  recipe: string;
  maxProjected: number;
  maxResidual: number;
  /** sha256 of the payload. */
  sha256: string;
}

/**
 * The file for the tables of training set `cache.contentHash` ([n, dim]) at `rank`, computed by `recipe` (a
 * description of the computation and its parameters: another recipe is another file).
 */
export function pruningTablesPath(cache: PruningTablesCache, n: number, dim: number, rank: number, recipe: string): string {
  const key = JSON.stringify([FORMAT, TRAJLAB_VERSION, endianness(), cache.contentHash, n, dim, rank, recipe]);
  return join(cache.dir, `pruning-${createHash('sha256').update(key).digest('hex').slice(0, 32)}.f32`);
}

const sizes = (n: number, dim: number, rank: number) => ({ mean: dim, basis: dim * rank, table: (rank + 2) * n });

/** The tables in their file (pruningTablesPath) when it holds exactly those asked for, intact; else null (missing, damaged, another set's). */
export function readPruningTables(cache: PruningTablesCache, n: number, dim: number, rank: number, recipe: string): PruningTables | null {
  let bytes: Buffer;
  try {
    bytes = readFileSync(pruningTablesPath(cache, n, dim, rank, recipe));
  } catch {
    return null;
  }
  const newline = bytes.indexOf(0x0a);
  if (newline < 0) return null;
  let header: Header;
  try {
    header = JSON.parse(bytes.subarray(0, newline).toString('utf8')) as Header;
  } catch {
    return null;
  }
  const expected = { format: FORMAT, version: TRAJLAB_VERSION, endianness: endianness(), n, dim, rank, contentHash: cache.contentHash, recipe };
  for (const [key, value] of Object.entries(expected)) if (header[key as keyof Header] !== value) return null;
  if (typeof header.maxProjected !== 'number' || typeof header.maxResidual !== 'number') return null;
  const size = sizes(n, dim, rank);
  const payload = bytes.subarray(newline + 1);
  if (payload.length !== 4 * (size.mean + size.basis + size.table)) return null;
  if (createHash('sha256').update(payload).digest('hex') !== header.sha256) return null;
  // a copy: the file's bytes need not start at a multiple of 4 within their buffer
  const values = new Float32Array(payload.buffer.slice(payload.byteOffset, payload.byteOffset + payload.length));
  return {
    mean: values.subarray(0, size.mean),
    basis: values.subarray(size.mean, size.mean + size.basis),
    table: values.subarray(size.mean + size.basis),
    maxProjected: header.maxProjected,
    maxResidual: header.maxResidual,
  };
}

/**
 * Writes `tables` to their file (pruningTablesPath) by writeCacheFile: whole, through a temporary file renamed into
 * place; a cache that cannot be written only means the next process computes the tables too.
 */
export function writePruningTables(cache: PruningTablesCache, n: number, dim: number, rank: number, recipe: string, tables: PruningTables): void {
  const size = sizes(n, dim, rank);
  if (tables.mean.length !== size.mean || tables.basis.length !== size.basis || tables.table.length !== size.table) {
    throw new Error(`pruning tables of the wrong size for n = ${n}, dim = ${dim}, rank = ${rank}`);
  }
  const payload = new Uint8Array(4 * (size.mean + size.basis + size.table));
  const values = new Float32Array(payload.buffer);
  values.set(tables.mean, 0);
  values.set(tables.basis, size.mean);
  values.set(tables.table, size.mean + size.basis);
  const header: Header = {
    format: FORMAT,
    version: TRAJLAB_VERSION,
    endianness: endianness(),
    n,
    dim,
    rank,
    contentHash: cache.contentHash,
    recipe,
    maxProjected: tables.maxProjected,
    maxResidual: tables.maxResidual,
    sha256: createHash('sha256').update(payload).digest('hex'),
  };
  writeCacheFile(pruningTablesPath(cache, n, dim, rank, recipe), [Buffer.from(`${JSON.stringify(header)}\n`, 'utf8'), payload]);
}
