// An image embedding as a file (runs/<run>/embeddings/<image-id>.bin): computed once on an
// inference worker, then read by the browser tool, the simulated annotators and decoder-only
// retraining, none of which runs the encoder.
//
//   bytes 0–7    "SAEEMB01"
//   bytes 8–11   header length H, uint32 little-endian
//   bytes 12–    the header, JSON in UTF-8, padded with spaces so the data starts at a multiple of 8
//   then         the tensor, little-endian float16 or float32, row-major in `shape`
//
// float16 halves the file (2 MB for SAM's 1×256×64×64); the decoder's masks stay within 0.5% IoU
// of float32's (test/unit/embedding-file.test.ts measures it on the reference model).
import { Float16Array, getFloat16 } from '@petamoriken/float16';
import { z } from 'zod';

export const EMBEDDING_MAGIC = 'SAEEMB01';

const sizeSchema = z.tuple([z.number().int().positive(), z.number().int().positive()]);

export const embeddingHeaderSchema = z.object({
  /** The model that computed it ("name@version"): an embedding serves only its own decoder. */
  model: z.string().min(1),
  dtype: z.enum(['float16', 'float32']),
  shape: z.array(z.number().int().positive()).min(1),
  /** [h, w] of the image that was embedded, after EXIF rotation. */
  originalSize: sizeSchema,
  /** [h', w'] of the resized image inside the 1024 square. */
  inputSize: sizeSchema,
  /** How original pixels map into the 1024 frame: 1024 / the original's longest side. */
  scale: z.number().positive(),
});
export type EmbeddingHeader = z.infer<typeof embeddingHeaderSchema>;

export type EmbeddingDtype = EmbeddingHeader['dtype'];

export class EmbeddingFileError extends Error {
  constructor(
    readonly file: string,
    problem: string,
  ) {
    super(`${file}: ${problem}`);
    this.name = 'EmbeddingFileError';
  }
}

export interface EmbeddingFileInput {
  model: string;
  data: Float32Array;
  shape: readonly number[];
  originalSize: readonly [number, number];
  inputSize: readonly [number, number];
}

/** The file of an embedding that `SamSession.embed` returned, computed by model `model`. */
export function embeddingFileOf(
  model: string,
  embedding: {
    tensor: { data: unknown; dims: readonly number[] };
    originalSize: readonly [number, number];
    inputSize: readonly [number, number];
  },
  dtype: EmbeddingDtype,
): Buffer {
  const { tensor, originalSize, inputSize } = embedding;
  return encodeEmbeddingFile(
    { model, data: tensor.data as Float32Array, shape: tensor.dims, originalSize, inputSize },
    dtype,
  );
}

export function encodeEmbeddingFile(input: EmbeddingFileInput, dtype: EmbeddingDtype): Buffer {
  const elements = input.shape.reduce((a, b) => a * b, 1);
  if (input.data.length !== elements) {
    throw new RangeError(
      `embedding has ${input.data.length} values, shape ${input.shape.join('×')} needs ${elements}`,
    );
  }
  const header: EmbeddingHeader = {
    model: input.model,
    dtype,
    shape: [...input.shape],
    originalSize: [input.originalSize[0], input.originalSize[1]],
    inputSize: [input.inputSize[0], input.inputSize[1]],
    scale: Math.max(...input.inputSize) / Math.max(...input.originalSize),
  };
  let json = JSON.stringify(header);
  const dataStart = (n: number) => 12 + n;
  while (dataStart(Buffer.byteLength(json)) % 8 !== 0) json += ' ';
  const headerBytes = Buffer.from(json, 'utf8');
  const prefix = Buffer.alloc(12);
  prefix.write(EMBEDDING_MAGIC, 0, 'latin1');
  prefix.writeUInt32LE(headerBytes.length, 8);
  const values = dtype === 'float16' ? new Float16Array(input.data) : input.data;
  const body = Buffer.from(values.buffer, values.byteOffset, values.byteLength);
  return Buffer.concat([prefix, headerBytes, body]);
}

/** The header alone; `file` names the file in errors. */
export function readEmbeddingHeader(
  bytes: Uint8Array,
  file: string,
): { header: EmbeddingHeader; dataStart: number } {
  // DataView and TextDecoder, not Buffer: the browser tool reads these files too.
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const text = (start: number, end: number) => new TextDecoder().decode(bytes.subarray(start, end));
  if (bytes.length < 12 || text(0, 8) !== EMBEDDING_MAGIC) {
    throw new EmbeddingFileError(file, `not an embedding file (it does not start with "${EMBEDDING_MAGIC}")`);
  }
  const length = view.getUint32(8, true);
  if (12 + length > bytes.length) {
    throw new EmbeddingFileError(
      file,
      `truncated: its header needs ${length} bytes, the file has ${bytes.length - 12}`,
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(text(12, 12 + length));
  } catch (err) {
    throw new EmbeddingFileError(file, `its header is not valid JSON: ${(err as Error).message}`);
  }
  const parsed = embeddingHeaderSchema.safeParse(json);
  if (!parsed.success) throw new EmbeddingFileError(file, `bad header: ${z.prettifyError(parsed.error)}`);
  return { header: parsed.data, dataStart: 12 + length };
}

export function decodeEmbeddingFile(
  bytes: Uint8Array,
  file: string,
): { header: EmbeddingHeader; data: Float32Array } {
  const { header, dataStart } = readEmbeddingHeader(bytes, file);
  const elements = header.shape.reduce((a, b) => a * b, 1);
  const width = header.dtype === 'float16' ? 2 : 4;
  const dataBytes = bytes.byteLength - dataStart;
  if (dataBytes !== elements * width) {
    throw new EmbeddingFileError(
      file,
      `${dataBytes} bytes of data, expected ${elements * width} (${header.shape.join('×')} ${header.dtype})`,
    );
  }
  // Copied into a fresh, aligned buffer: the bytes may sit at any offset of a larger one.
  const raw = new Uint8Array(dataBytes);
  raw.set(bytes.subarray(dataStart));
  const data =
    header.dtype === 'float32' ? new Float32Array(raw.buffer) : float16ToFloat32(new Uint16Array(raw.buffer));
  return { header, data };
}

let float16Table: Float32Array | undefined;

/** Through a 65,536-entry table: about 20 ms for SAM's embedding, 25× the polyfill's own. */
function float16ToFloat32(bits: Uint16Array): Float32Array {
  if (!float16Table) {
    float16Table = new Float32Array(65536);
    const view = new DataView(new ArrayBuffer(2));
    for (let i = 0; i < 65536; i++) {
      view.setUint16(0, i, true);
      float16Table[i] = getFloat16(view, 0, true);
    }
  }
  const table = float16Table;
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = table[bits[i]!]!;
  return out;
}
