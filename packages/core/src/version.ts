/** trajlab's version, written into study.json and every Arrow file's metadata. */
export const TRAJLAB_VERSION = '0.1.0';
