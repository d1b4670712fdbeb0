import {
  Field,
  FixedSizeList,
  Float32,
  Float64,
  Int32,
  makeData,
  RecordBatch,
  Schema,
  Struct,
  Table,
  tableFromIPC,
  tableToIPC,
  Utf8,
  type Data,
  type DataType,
} from 'apache-arrow';

/**
 * Explicitly typed Arrow tables. One schema object per file (the IPC file writer drops batches whose schema differs),
 * plain Utf8 strings, IPC *file* format (Feather v2), uncompressed.
 */

/** Column kinds used in trajlab files. `vec32` is fixed_size_list<float32>[dim]. */
export type ColumnKind = 'utf8' | 'int32' | 'float32' | 'float64' | 'vec32';

/** One column of a file schema. */
export interface ColumnDef {
  name: string;
  kind: ColumnKind;
  nullable: boolean;
  /** What the column means (README and tests use it). */
  doc: string;
}

/**
 * Values of one column. Floats: NaN is written as null when the column is nullable. int32 and vec32: `valid` marks
 * non-null rows (all valid when absent). vec32: `values` holds rows * dim floats.
 */
export type ColumnData =
  | { values: string[] }
  | { values: Int32Array; valid?: Uint8Array }
  | { values: Float32Array | Float64Array; valid?: Uint8Array };

/** Schema metadata keys required by the contract. */
export interface FileMetadata {
  version: string;
  studyId: string;
  /** Canonical resolved spec (JSON). */
  spec: string;
  /** Further keys, e.g. trajlab.config_id. */
  extra?: Record<string, string>;
}

function arrowType(kind: ColumnKind, dim: number): DataType {
  switch (kind) {
    case 'utf8':
      return new Utf8();
    case 'int32':
      return new Int32();
    case 'float32':
      return new Float32();
    case 'float64':
      return new Float64();
    case 'vec32':
      return new FixedSizeList(dim, new Field('item', new Float32(), false));
  }
}

/** The Arrow schema of a file: `dim` sizes the vec32 columns. */
export function makeSchema(defs: readonly ColumnDef[], dim: number, meta: FileMetadata): Schema {
  const metadata = new Map<string, string>([
    ['trajlab.version', meta.version],
    ['trajlab.study_id', meta.studyId],
    ['trajlab.spec', meta.spec],
    ...Object.entries(meta.extra ?? {}),
  ]);
  return new Schema(
    defs.map((d) => new Field(d.name, arrowType(d.kind, dim), d.nullable)),
    metadata,
  );
}

/** A validity bitmap (bit i set: row i holds a value) and its null count. */
interface Validity {
  nullBitmap: Uint8Array;
  nullCount: number;
}

/**
 * The validity bitmap of `rows` rows: where `valid` is given, rows whose flag is not 0 hold values; else rows whose
 * value is not NaN. One loop with both tests rather than a predicate made per column, which V8 would compile again
 * for every column of every file once the previous one is garbage.
 */
function bitmapOf(rows: number, valid: Uint8Array | undefined, values: ArrayLike<number>): Validity {
  const nullBitmap = new Uint8Array(Math.ceil(rows / 8) || 1);
  let nullCount = 0;
  for (let i = 0; i < rows; i++) {
    if (valid ? valid[i] !== 0 : !Number.isNaN(values[i]!)) nullBitmap[i >> 3] = nullBitmap[i >> 3]! | (1 << (i & 7));
    else nullCount++;
  }
  return { nullBitmap, nullCount };
}

function columnData(def: ColumnDef, type: DataType, rows: number, dim: number, col: ColumnData | undefined): Data {
  if (!col) throw new Error(`column '${def.name}' has no data`);
  if (def.kind === 'utf8') {
    const values = col.values as string[];
    if (values.length !== rows) throw new Error(`column '${def.name}' has ${values.length} values, expected ${rows}`);
    // each distinct string encoded once (a shard's config, solver and schedule columns repeat one value on every row)
    const enc = new TextEncoder();
    const encoded = new Map<string, Uint8Array>();
    const parts: Uint8Array[] = new Array<Uint8Array>(rows);
    const valueOffsets = new Int32Array(rows + 1);
    for (let i = 0; i < rows; i++) {
      let bytes = encoded.get(values[i]!);
      if (!bytes) encoded.set(values[i]!, (bytes = enc.encode(values[i]!)));
      parts[i] = bytes;
      valueOffsets[i + 1] = valueOffsets[i]! + bytes.length;
    }
    const data = new Uint8Array(valueOffsets[rows]!);
    for (let i = 0; i < rows; i++) data.set(parts[i]!, valueOffsets[i]!);
    return makeData({ type: type as Utf8, length: rows, valueOffsets, data });
  }
  const valid = 'valid' in col ? col.valid : undefined;
  const values = col.values as Int32Array | Float32Array | Float64Array;
  const width = def.kind === 'vec32' ? dim : 1;
  if (values.length !== rows * width) throw new Error(`column '${def.name}' has ${values.length} values, expected ${rows * width}`);
  const validity = valid || def.kind === 'float32' || def.kind === 'float64' ? bitmapOf(rows, valid, values) : null;
  const nullCount = validity?.nullCount ?? 0;
  if (nullCount > 0 && !def.nullable) throw new Error(`column '${def.name}' is not nullable but has ${nullCount} null value(s)`);
  const nulls = validity && nullCount > 0 ? { nullBitmap: validity.nullBitmap, nullCount } : { nullCount: 0 };
  if (def.kind === 'vec32') {
    const child = makeData({ type: new Float32(), length: rows * dim, data: values as Float32Array });
    return makeData({ type: type as FixedSizeList<Float32>, length: rows, child, ...nulls });
  }
  if (def.kind === 'int32') return makeData({ type: type as Int32, length: rows, data: values as Int32Array, ...nulls });
  if (def.kind === 'float32') return makeData({ type: type as Float32, length: rows, data: new Float32Array(values), ...nulls });
  return makeData({ type: type as Float64, length: rows, data: values instanceof Float64Array ? values : new Float64Array(values), ...nulls });
}

/** Builds a single-batch table with exactly the given schema. */
export function buildTable(defs: readonly ColumnDef[], schema: Schema, rows: number, dim: number, columns: Record<string, ColumnData>): Table {
  const children = defs.map((d, i) => columnData(d, schema.fields[i]!.type, rows, dim, columns[d.name]));
  const data = makeData({ type: new Struct(schema.fields), length: rows, nullCount: 0, children });
  return new Table(schema, [new RecordBatch(schema, data)]);
}

/** Serialises a table as an Arrow IPC file (Feather v2). */
export function toIpcFile(table: Table): Uint8Array {
  return tableToIPC(table, 'file');
}

/** Magic bytes of the Arrow IPC file format, at both ends of a file. */
const ARROW_MAGIC = 'ARROW1';

/** An Arrow file that cannot be read; the message names the file. */
export class ArrowFileError extends Error {
  constructor(
    readonly file: string,
    message: string,
  ) {
    super(`${file}: ${message}`);
    this.name = 'ArrowFileError';
  }
}

/** Reads an Arrow IPC file, checking the file-format magic at both ends (truncated files fail clearly). */
export function readIpcFile(bytes: Uint8Array, file: string): Table {
  const dec = new TextDecoder();
  if (bytes.length < 12 || dec.decode(bytes.subarray(0, 6)) !== ARROW_MAGIC || dec.decode(bytes.subarray(bytes.length - 6)) !== ARROW_MAGIC) {
    throw new ArrowFileError(file, 'not a complete Arrow IPC file (magic bytes missing: truncated or wrong format)');
  }
  try {
    return tableFromIPC(bytes);
  } catch (err) {
    throw new ArrowFileError(file, `corrupt Arrow IPC file (${(err as Error).message})`);
  }
}
