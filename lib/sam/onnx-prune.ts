// An ONNX model cut down to the outputs we read. onnxruntime runs every node of a graph whatever
// outputs a caller fetches, and SAM's exported decoder also computes `masks`: two bilinear resizes
// of all four masks to 1024×1024 and then to the image's size, which we never read (we upsample the
// chosen low-res logits exactly ourselves, lib/amg/mask-upsample.ts). On the reference decoder that
// was 14–19% of each prompt in onnxruntime-node and about 4% in Chromium's WebAssembly (2 cores,
// 2026-12-07); for an official export without a batched decoder, every AMG point pays it.
//
// Works on the protobuf wire format (onnx.proto field numbers below) and copies every field it does
// not need to understand byte for byte, so a model with fields newer than this code loads as before.
import protobuf from 'protobufjs/minimal.js';

const WIRE_LEN = 2;
const MODEL_GRAPH = 7;
const GRAPH = { node: 1, initializer: 5, output: 12, valueInfo: 13 } as const;
const NODE = { input: 1, output: 2, attribute: 5 } as const;
const ATTRIBUTE = { graph: 6, graphs: 11 } as const;
const VALUE_INFO_NAME = 1;
const TENSOR = { name: 8, externalData: 13 } as const;
const ENTRY = { key: 1, value: 2 } as const;

interface Field {
  number: number;
  /** The whole field, tag included, in the message's bytes. */
  raw: Uint8Array;
  /** Length-delimited fields only: the payload. */
  body?: Uint8Array;
}

interface Node {
  field: Field;
  inputs: string[];
  outputs: string[];
  /** An If/Loop/Scan body reads outer names that its inputs do not list. */
  hasSubgraph: boolean;
}

/**
 * The model with only the nodes (and initializers) that the given graph outputs depend on, and
 * only those outputs. Returns the input unchanged when nothing can be dropped, or when a node has
 * a subgraph (its outer-scope reads are not listed, so what it needs cannot be told safely).
 */
export function pruneOnnxOutputs(model: Uint8Array, keep: readonly string[]): Uint8Array {
  const modelFields = readFields(model);
  const graphField = modelFields.find((f) => f.number === MODEL_GRAPH && f.body);
  if (!graphField) throw new Error('not an ONNX model: it has no graph');
  const graphFields = readFields(graphField.body!);
  const outputs = graphFields.filter((f) => f.number === GRAPH.output).map((f) => nameOf(f, VALUE_INFO_NAME));
  for (const name of keep) {
    if (!outputs.includes(name)) {
      throw new Error(`the model has no output "${name}" (its outputs: ${outputs.join(', ')})`);
    }
  }
  const nodes = graphFields.filter((f) => f.number === GRAPH.node).map(readNode);
  if (nodes.some((n) => n.hasSubgraph)) return model;

  // Nodes are stored in topological order (an ONNX rule), so one backward pass finds what is needed.
  const needed = new Set(keep);
  const keptNodes = new Set<Field>();
  for (const node of nodes.toReversed()) {
    if (!node.outputs.some((o) => needed.has(o))) continue;
    keptNodes.add(node.field);
    for (const input of node.inputs) if (input) needed.add(input);
  }
  if (keptNodes.size === nodes.length && outputs.length === keep.length) return model;

  const graph = graphFields.filter((f) => {
    switch (f.number) {
      case GRAPH.node:
        return keptNodes.has(f);
      case GRAPH.output:
        return keep.includes(nameOf(f, VALUE_INFO_NAME));
      case GRAPH.initializer:
        return needed.has(nameOf(f, TENSOR.name));
      case GRAPH.valueInfo:
        return needed.has(nameOf(f, VALUE_INFO_NAME));
      default:
        return true;
    }
  });
  const graphBytes = concat(graph.map((f) => f.raw));
  return concat(
    modelFields.map((f) => (f === graphField ? lengthDelimited(MODEL_GRAPH, graphBytes) : f.raw)),
  );
}

/**
 * The files the model's initializers keep their weights in (ONNX external data, e.g.
 * decoder_weights.bin), as the `location`s written in the model, relative to its directory.
 */
export function externalDataLocations(model: Uint8Array): string[] {
  const graph = readFields(model).find((f) => f.number === MODEL_GRAPH && f.body);
  if (!graph) throw new Error('not an ONNX model: it has no graph');
  const locations = new Set<string>();
  for (const initializer of readFields(graph.body!).filter((f) => f.number === GRAPH.initializer)) {
    for (const entry of readFields(initializer.body!).filter((f) => f.number === TENSOR.externalData)) {
      const fields = readFields(entry.body!);
      const key = fields.find((f) => f.number === ENTRY.key);
      const value = fields.find((f) => f.number === ENTRY.value);
      if (key && value && text(key) === 'location') locations.add(text(value));
    }
  }
  return [...locations].sort();
}

function readFields(bytes: Uint8Array): Field[] {
  const reader = protobuf.Reader.create(bytes);
  const fields: Field[] = [];
  while (reader.pos < reader.len) {
    const start = reader.pos;
    const tag = reader.uint32();
    const number = tag >>> 3;
    if ((tag & 7) === WIRE_LEN) {
      const length = reader.uint32();
      const bodyStart = reader.pos;
      reader.skip(length);
      fields.push({
        number,
        raw: bytes.subarray(start, reader.pos),
        body: bytes.subarray(bodyStart, reader.pos),
      });
    } else {
      reader.skipType(tag & 7);
      fields.push({ number, raw: bytes.subarray(start, reader.pos) });
    }
  }
  return fields;
}

function readNode(field: Field): Node {
  const node: Node = { field, inputs: [], outputs: [], hasSubgraph: false };
  for (const f of readFields(field.body!)) {
    if (f.number === NODE.input) node.inputs.push(text(f));
    else if (f.number === NODE.output) node.outputs.push(text(f));
    else if (f.number === NODE.attribute) {
      node.hasSubgraph ||= readFields(f.body!).some(
        (a) => a.number === ATTRIBUTE.graph || a.number === ATTRIBUTE.graphs,
      );
    }
  }
  return node;
}

/** The string field `number` of a message field (a ValueInfoProto's or TensorProto's name). */
function nameOf(field: Field, number: number): string {
  const name = readFields(field.body!).find((f) => f.number === number);
  return name ? text(name) : '';
}

function text(field: Field): string {
  return new TextDecoder().decode(field.body);
}

function lengthDelimited(number: number, body: Uint8Array): Uint8Array {
  const header = protobuf.Writer.create()
    .uint32((number << 3) | WIRE_LEN)
    .uint32(body.length)
    .finish();
  return concat([header, body]);
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}
