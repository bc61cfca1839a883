// The stage-2 "object" box detector (trainer/sae_trainer/detector.py) in onnxruntime-node. Its
// input is a SAM image embedding, so a detector belongs to one SAM encoder: its model.json names
// it (./detector-package.ts), and a session refuses to run on another encoder's embeddings rather
// than return boxes that mean nothing.
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import type { ImageEmbedding, SessionSettings } from '../sam/session.ts';
import { sessionOptions } from '../sam/session.ts';
import { decodeDetections, frameScale, type DecodeSettings, type Detection } from './decode.ts';
import { DetectorPackageError, readDetectorPackage, type DetectorPackage } from './detector-package.ts';

export class DetectorSession {
  private constructor(
    readonly pkg: DetectorPackage,
    private readonly session: ort.InferenceSession,
  ) {}

  /**
   * Opens the package's graph and checks it against model.json; with `samEncoderSha256` (the
   * digest of the SAM encoder whose embeddings it will read) also that it was trained on that one.
   */
  static async load(
    dir: string,
    options: { settings?: SessionSettings; samEncoderSha256?: string } = {},
  ): Promise<DetectorSession> {
    const pkg = await readDetectorPackage(dir);
    const expected = pkg.sam.encoderOnnxSha256;
    if (options.samEncoderSha256 && expected && options.samEncoderSha256 !== expected) {
      throw new DetectorPackageError(
        `${join(dir, 'model.json')}: detector ${pkg.name} ${pkg.version} was trained on the embeddings of ` +
          `${pkg.sam.model ?? 'another SAM model'} (encoder ${expected.slice(0, 12)}…), not on this ` +
          `SAM encoder's (${options.samEncoderSha256.slice(0, 12)}…); retrain it on this model's embeddings`,
      );
    }
    const path = join(dir, pkg.file);
    let session: ort.InferenceSession;
    try {
      session = await ort.InferenceSession.create(path, sessionOptions(options.settings ?? {}));
    } catch (err) {
      throw new DetectorPackageError(`${path}: not a loadable ONNX model (${(err as Error).message})`);
    }
    const io = (names: readonly string[]) => JSON.stringify([...names]);
    if (io(session.inputNames) !== io([pkg.input]) || io(session.outputNames) !== io(pkg.outputs)) {
      throw new DetectorPackageError(
        `${path} does not match its model.json: the graph reads ${io(session.inputNames)} and ` +
          `writes ${io(session.outputNames)}, model.json says ${io([pkg.input])} → ${io(pkg.outputs)}`,
      );
    }
    return new DetectorSession(pkg, session);
  }

  get modelId(): string {
    return `${this.pkg.name}@${this.pkg.version}`;
  }

  /** Boxes on the embedded image, best first (the package's decode settings unless given). */
  async detect(embedding: ImageEmbedding, settings: Partial<DecodeSettings> = {}): Promise<Detection[]> {
    const { grid, imageSize, input, outputs } = this.pkg;
    const dims = embedding.tensor.dims;
    if (dims.length !== 4 || dims[2] !== grid || dims[3] !== grid) {
      throw new DetectorPackageError(
        `detector ${this.modelId} reads (1, C, ${grid}, ${grid}) embeddings, got (${dims.join(', ')})`,
      );
    }
    const out = await this.session.run({ [input]: embedding.tensor });
    const maps = {
      scores: out[outputs[0]]!.data as Float32Array,
      boxes: out[outputs[1]]!.data as Float32Array,
      grid,
    };
    const scale = frameScale(imageSize, embedding.originalSize);
    return decodeDetections(maps, scale, embedding.originalSize, { ...this.pkg.decode, ...settings });
  }
}
