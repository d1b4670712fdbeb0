import { randomBytes } from 'node:crypto';
import { closeSync, mkdirSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';

/**
 * Writes `parts`, one after the other, as the whole of `file` in a cache (decoded dataset copies, certified pruning's
 * tables): into a temporary file of its own, renamed into place, so a reader (or a mapping made by another process)
 * never sees part of one, and two writers never mix theirs. The parts go to the file as they are, never copied into
 * one buffer (a decoded copy's points are 31 MB for Fashion-MNIST 10k). Best effort: a cache that cannot be written (a
 * read-only or full disk) only means the next process computes the file too, so a failure leaves no temporary file and
 * returns false.
 */
export function writeCacheFile(file: string, parts: Uint8Array[]): boolean {
  const tmp = `${file}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    mkdirSync(dirname(file), { recursive: true });
    const fd = openSync(tmp, 'w');
    try {
      for (const part of parts) for (let done = 0; done < part.length; ) done += writeSync(fd, part, done, part.length - done);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, file);
    return true;
  } catch {
    try {
      rmSync(tmp, { force: true });
    } catch {
      // nothing was written there
    }
    return false;
  }
}
