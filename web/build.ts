// Builds the browser tool into web/dist: web/src/app.ts bundled by esbuild, the page and its
// stylesheet, and onnxruntime-web's WebAssembly build under dist/ort/ (served as it ships, see
// index.html). The annotation service builds it when it starts (`npm run build:web` does it alone);
// a build takes well under a second.
import { copyFile, mkdir } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { build } from 'esbuild';

export const WEB_DIR = import.meta.dirname;
export const WEB_DIST = join(WEB_DIR, 'dist');

/** What onnxruntime-web's wasm build loads: its module, the threaded glue and the binary. */
const ORT_FILES = ['ort.wasm.min.mjs', 'ort-wasm-simd-threaded.mjs', 'ort-wasm-simd-threaded.wasm'];

export async function buildWeb(outDir = WEB_DIST): Promise<string> {
  await mkdir(join(outDir, 'ort'), { recursive: true });
  await build({
    // bench.ts: the decoder timing page of `npm run bench:annotate`.
    entryPoints: [join(WEB_DIR, 'src/app.ts'), join(WEB_DIR, 'src/bench.ts')],
    outdir: outDir,
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    minify: true,
    sourcemap: true,
    external: ['onnxruntime-web/wasm'],
    logLevel: 'warning',
  });
  await Promise.all(
    ['index.html', 'app.css', 'bench.html'].map((f) => copyFile(join(WEB_DIR, f), join(outDir, f))),
  );
  const ortDist = dirname(createRequire(import.meta.url).resolve('onnxruntime-web/wasm')); // .../dist/
  await Promise.all(ORT_FILES.map((f) => copyFile(join(ortDist, f), join(outDir, 'ort', f))));
  return outDir;
}

if (process.argv[1] === import.meta.filename) {
  console.log(`built ${await buildWeb()}`);
}
