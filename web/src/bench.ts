// Decoder timing in the browser for `npm run bench:annotate`: loads the decoder and one embedding
// from plain URLs, runs `clicks` single-click prompts with `threads` WebAssembly threads, and
// leaves the per-click milliseconds in window.benchResult. Not part of the annotation tool.
import { BrowserDecoder } from './decoder.ts';

interface BenchResult {
  threads: number;
  crossOriginIsolated: boolean;
  ms: number[];
  error?: string;
}

declare global {
  interface Window {
    benchResult?: BenchResult;
  }
}

const WARM_UP_MS = 8000;

async function run(): Promise<BenchResult> {
  const params = new URLSearchParams(location.search);
  const threads = Number(params.get('threads') ?? '1');
  const clicks = Number(params.get('clicks') ?? '30');
  const get = async (url: string) => (await fetch(url)).arrayBuffer();
  const files = (params.get('data') ?? '').split(',').filter(Boolean);
  const externalData = Object.fromEntries(
    await Promise.all(files.map(async (f) => [f, await get(`/model/${f}`)] as const)),
  );
  const decoder = await BrowserDecoder.load(
    await get(`/model/${params.get('decoder')}`),
    externalData,
    threads,
  );
  const embedding = BrowserDecoder.embedding(await get('/embedding.bin'), 'embedding.bin');
  const [h, w] = embedding.size;
  const click = async (i: number) => {
    // Points spread over the image, so each click is a new prompt.
    const x = (((i * 37) % 97) / 97) * (w - 1);
    const y = (((i * 53) % 89) / 89) * (h - 1);
    const t0 = performance.now();
    const candidates = await decoder.predict(embedding, { points: [[x, y]], labels: [1] }, true);
    // Through the mask the tool shows (the best by predicted IoU) at the image's size.
    candidates.reduce((best, c) => (c.iou > best.iou ? c : best)).mask();
    return performance.now() - t0;
  };
  // Chromium first runs WebAssembly from a quick baseline compile and swaps in optimised code for
  // the hot functions a few seconds later: clicks before that measure the compiler, not the tool.
  const warmUntil = performance.now() + WARM_UP_MS;
  for (let i = 0; i < 3 || performance.now() < warmUntil; i++) await click(i);
  const ms: number[] = [];
  for (let i = 0; i < clicks; i++) ms.push(await click(i));
  return { threads, crossOriginIsolated: globalThis.crossOriginIsolated, ms };
}

run()
  .then((result) => (window.benchResult = result))
  .catch(
    (err: unknown) =>
      (window.benchResult = { threads: 0, crossOriginIsolated: false, ms: [], error: String(err) }),
  );
