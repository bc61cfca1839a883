// The browser tool of stage 1: an annotator logs in with their token, gets a task (an image and
// its embedding), clicks objects, and the SAM decoder draws the mask in the page; they fix it with
// the brush and eraser and accept it, and the mask goes to the annotation service with the time
// from the first click to the accept.
//
// A stage-2 task arrives with pre-filled masks (the detector's boxes through SAM): they are drawn
// in amber, locked (clicks make new masks, never change them); the annotator deletes a wrong one
// with the delete tool (D, then click it) and labels what is not there yet.
import { compressRle, decodeRle, decompressRle, type Rle } from '../../lib/rle.ts';
import type { PrefillFile } from '../../lib/stage2/prefill-store.ts';
import type { TaskResponse } from '../../service/annotation-service.ts';
import { BrowserDecoder, type ImageEmbedding } from './decoder.ts';
import { MaskEditor, type Click } from './mask-editor.ts';

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const canvas = $<HTMLCanvasElement>('canvas');
const ctx = canvas.getContext('2d')!;
const statusLine = $('status');

/** The API with the annotator's token. */
class Api {
  constructor(private readonly token: string) {}

  async call(method: string, path: string, body?: unknown): Promise<Response> {
    const res = await fetch(path, {
      method,
      headers: {
        authorization: `Bearer ${this.token}`,
        ...(body ? { 'content-type': 'application/json' } : {}),
      },
      body: body ? JSON.stringify(body) : undefined,
    });
    if (!res.ok)
      throw new Error(((await res.json().catch(() => ({}))) as { error?: string }).error ?? res.statusText);
    return res;
  }
}

interface Loaded {
  task: TaskResponse;
  image: ImageBitmap;
  embedding: ImageEmbedding;
  editor: MaskEditor;
  accepted: Rle[];
  /** Stage 2: the pre-filled masks, by their index in the task's pre-fill file. */
  prefilled: { index: number; rle: Rle; pixels: Uint8Array; deleted: boolean }[];
}

type Mode = 'prompt' | 'brush' | 'eraser' | 'delete';

/** Pre-filled masks: amber, apart from the annotator's own green and the current blue. */
const PREFILL_COLOUR = [255, 170, 0, 100];

class AnnotationTool {
  private loaded: Loaded | null = null;
  private decoder: BrowserDecoder | null = null;
  /** The model id whose decoder is loaded. */
  private decoderModel = '';
  private tool: Mode = 'prompt';
  private radius = 8;
  /** The last decode's candidates' low-res logits, best first: the shown one prompts the next click. */
  private lowRes: Float32Array[] = [];
  private view = { scale: 1, x: 0, y: 0 };
  private overlays = new Map<Rle, HTMLCanvasElement>();
  private busy = Promise.resolve();

  constructor(private readonly api: Api) {}

  async start(): Promise<void> {
    await this.loadDecoder();
    this.bindInput();
    await this.nextTask();
  }

  /** The decoder of a model id (default: the run's own); a task assisted by a retrained model names it. */
  private async loadDecoder(id?: string): Promise<void> {
    const query = id === undefined ? '' : `?id=${encodeURIComponent(id)}`;
    const info = (await (await this.api.call('GET', `/api/model${query}`)).json()) as {
      id: string;
      externalData: string[];
    };
    const bytes = async (path: string) => (await this.api.call('GET', path)).arrayBuffer();
    const externalData = Object.fromEntries(
      await Promise.all(
        info.externalData.map(
          async (name) => [name, await bytes(`/api/model/data/${name}${query}`)] as const,
        ),
      ),
    );
    this.decoder = await BrowserDecoder.load(await bytes(`/api/model/decoder.onnx${query}`), externalData);
    this.decoderModel = info.id;
  }

  private async nextTask(): Promise<void> {
    this.loaded = null;
    const res = await this.api.call('POST', '/api/tasks/next');
    if (res.status === 204) {
      $('task').textContent = 'no task free now; trying again in 10 s';
      setTimeout(() => void this.nextTask(), 10_000);
      return this.draw();
    }
    const task = (await res.json()) as TaskResponse;
    if (task.model !== this.decoderModel) await this.loadDecoder(task.model);
    const [imageRes, embeddingRes] = await Promise.all([
      this.api.call('GET', `/api/tasks/${task.task}/image`),
      this.api.call('GET', `/api/tasks/${task.task}/embedding`),
    ]);
    const image = await createImageBitmap(await imageRes.blob());
    const embedding = BrowserDecoder.embedding(await embeddingRes.arrayBuffer(), `task ${task.task}`);
    const prefilled = task.prefill ? await this.loadPrefill(task) : [];
    this.loaded = {
      task,
      image,
      embedding,
      editor: new MaskEditor(task.height, task.width),
      accepted: [],
      prefilled,
    };
    this.lowRes = [];
    $('task').textContent = `task ${task.task} · ${task.imageName} · ${task.width}×${task.height}`;
    canvas.dataset.task = task.task;
    this.fit();
    this.draw();
  }

  private async loadPrefill(task: TaskResponse): Promise<Loaded['prefilled']> {
    const file = (await (
      await this.api.call('GET', `/api/tasks/${task.task}/prefill`)
    ).json()) as PrefillFile;
    const deleted = new Set(task.prefill?.rejected ?? []);
    return file.masks.map(({ segmentation }, index) => {
      const rle = decompressRle(segmentation);
      return { index, rle, pixels: decodeRle(rle), deleted: deleted.has(index) };
    });
  }

  /** Deletes the pre-filled mask under an image pixel (the last drawn on top); it is kept as rejected. */
  private async deletePrefilled(x: number, y: number): Promise<void> {
    const loaded = this.loaded!;
    const { width } = loaded.task;
    const hit = loaded.prefilled.findLast((m) => !m.deleted && m.pixels[y * width + x] === 1);
    if (!hit) return this.draw('no pre-filled mask there');
    await this.api.call('POST', `/api/tasks/${loaded.task.task}/prefill/${hit.index}/reject`, {
      reason: 'deleted in the annotation tool',
    });
    hit.deleted = true;
    this.draw(`deleted pre-filled mask ${hit.index}`);
  }

  // ----- prompts and edits ----------------------------------------------------------------------

  private async decode(change: { click?: Click; box?: [number, number, number, number] }): Promise<void> {
    const { editor, embedding } = this.loaded!;
    const prompted = editor.prompt(change);
    const points = prompted.clicks.map((c) => [c.x, c.y] as [number, number]);
    const multimask = prompted.clicks.length <= 1 && !prompted.box;
    const t0 = performance.now();
    const candidates = await this.decoder!.predict(
      embedding,
      {
        points,
        labels: prompted.clicks.map((c) => c.label),
        box: prompted.box ?? undefined,
        maskInput: multimask ? undefined : this.lowRes[editor.state.candidate],
      },
      multimask,
    );
    this.lowRes = [...candidates].sort((a, b) => b.iou - a.iou).map((c) => c.lowRes);
    editor.decoded(prompted, candidates);
    // Through the shown mask at the image's size: what the person waits for.
    const ms = performance.now() - t0;
    canvas.dataset.decodeMs = ms.toFixed(1);
    this.draw(`decoder ${ms.toFixed(0)} ms`);
  }

  private async accept(): Promise<void> {
    const loaded = this.loaded;
    const mask = loaded?.editor.state.mask;
    if (!loaded || !mask) return;
    const { editor } = loaded;
    await this.api.call('POST', `/api/tasks/${loaded.task.task}/masks`, {
      submissionId: crypto.randomUUID(),
      mask: compressRle(mask),
      seconds: editor.seconds(),
      clicks: editor.prompts,
    });
    loaded.accepted.push(mask);
    canvas.dataset.accepted = String(loaded.accepted.length);
    editor.reset();
    this.lowRes = [];
    this.draw('accepted');
  }

  private async leave(action: 'finish' | 'skip'): Promise<void> {
    if (!this.loaded) return;
    await this.api.call('POST', `/api/tasks/${this.loaded.task.task}/${action}`, {});
    await this.nextTask();
  }

  // ----- input ----------------------------------------------------------------------------------

  private bindInput(): void {
    let down: { x: number; y: number; sx: number; sy: number; button: number; shift: boolean } | null = null;
    let stroke: [number, number][] = [];
    let panning = false;
    let space = false;
    canvas.addEventListener('contextmenu', (e) => e.preventDefault());
    canvas.addEventListener('mousedown', (e) => {
      const [x, y] = this.toImage(e);
      down = { x, y, sx: e.offsetX, sy: e.offsetY, button: e.button, shift: e.shiftKey };
      panning = space || e.button === 1;
      stroke = [[x, y]];
    });
    canvas.addEventListener('mousemove', (e) => {
      if (!down) return;
      if (panning) {
        this.view.x += e.movementX;
        this.view.y += e.movementY;
        return this.draw();
      }
      if (this.tool !== 'prompt') stroke.push(this.toImage(e));
    });
    canvas.addEventListener('mouseup', (e) => {
      if (!down || !this.loaded) return (down = null);
      const start = down;
      down = null;
      if (panning) return;
      const [x, y] = this.toImage(e);
      const editor = this.loaded.editor;
      if (this.tool === 'delete') return this.queue(() => this.deletePrefilled(x, y));
      if (this.tool !== 'prompt') {
        stroke.push([x, y]);
        editor.paint(stroke, this.radius, this.tool === 'brush' ? 1 : 0);
        return this.draw();
      }
      const moved = Math.hypot(e.offsetX - start.sx, e.offsetY - start.sy) > 5;
      const change = moved
        ? {
            box: [Math.min(start.x, x), Math.min(start.y, y), Math.max(start.x, x), Math.max(start.y, y)] as [
              number,
              number,
              number,
              number,
            ],
          }
        : { click: { x, y, label: (start.button === 2 || start.shift ? 0 : 1) as 0 | 1 } };
      this.queue(() => this.decode(change));
    });
    canvas.addEventListener(
      'wheel',
      (e) => {
        e.preventDefault();
        const factor = Math.exp(-e.deltaY * 0.0015);
        this.view.x = e.offsetX - (e.offsetX - this.view.x) * factor;
        this.view.y = e.offsetY - (e.offsetY - this.view.y) * factor;
        this.view.scale *= factor;
        this.draw();
      },
      { passive: false },
    );
    window.addEventListener('keyup', (e) => {
      if (e.key === ' ') space = false;
    });
    window.addEventListener('keydown', (e) => {
      if (e.key === ' ') space = true;
      const key =
        (e.ctrlKey || e.metaKey) && e.key.toLowerCase() === 'z' && e.shiftKey ? 'y' : e.key.toLowerCase();
      if ((e.ctrlKey || e.metaKey) && key !== 'z' && key !== 'y') return;
      if (this.command(key === 'enter' ? 'a' : key)) e.preventDefault();
    });
    for (const button of document.querySelectorAll<HTMLButtonElement>('nav button')) {
      button.addEventListener('click', () => this.command(button.dataset.key!));
    }
    window.addEventListener('resize', () => this.draw());
  }

  /** A keyboard shortcut or toolbar button; true when it was one. */
  private command(key: string): boolean {
    const editor = this.loaded?.editor;
    const actions: Record<string, () => void> = {
      a: () => this.queue(() => this.accept()),
      m: () => editor?.cycleCandidate(),
      b: () => this.setTool(this.tool === 'brush' ? 'prompt' : 'brush'),
      e: () => this.setTool(this.tool === 'eraser' ? 'prompt' : 'eraser'),
      d: () => this.setTool(this.tool === 'delete' ? 'prompt' : 'delete'),
      z: () => editor?.undo() && (this.lowRes = []),
      y: () => editor?.redo(),
      escape: () => (editor?.reset(), (this.lowRes = [])),
      n: () => this.queue(() => this.leave('finish')),
      s: () => this.queue(() => this.leave('skip')),
      '[': () => (this.radius = Math.max(1, this.radius / 1.5)),
      ']': () => (this.radius = Math.min(200, this.radius * 1.5)),
    };
    const action = actions[key];
    if (!action) return false;
    action();
    this.draw();
    return true;
  }

  private setTool(tool: Mode): void {
    this.tool = tool;
    for (const button of document.querySelectorAll<HTMLButtonElement>('nav button')) {
      const key = { brush: 'b', eraser: 'e', delete: 'd', prompt: '' }[tool];
      button.classList.toggle('active', button.dataset.key === key);
    }
  }

  /** One request at a time, in order; a failure is shown, not lost. */
  private queue(work: () => Promise<void>): void {
    this.busy = this.busy.then(work).catch((err: unknown) => this.draw(`error: ${(err as Error).message}`));
  }

  // ----- drawing --------------------------------------------------------------------------------

  private toImage(e: MouseEvent): [number, number] {
    const { scale, x, y } = this.view;
    return [Math.round((e.offsetX - x) / scale), Math.round((e.offsetY - y) / scale)];
  }

  private fit(): void {
    const { width, height } = this.loaded!.task;
    const scale = Math.min(canvas.clientWidth / width, canvas.clientHeight / height);
    this.view = {
      scale,
      x: (canvas.clientWidth - width * scale) / 2,
      y: (canvas.clientHeight - height * scale) / 2,
    };
  }

  private draw(message?: string): void {
    canvas.width = canvas.clientWidth;
    canvas.height = canvas.clientHeight;
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    if (!this.loaded) return;
    const { image, editor, accepted, prefilled } = this.loaded;
    const { scale, x, y } = this.view;
    ctx.setTransform(scale, 0, 0, scale, x, y);
    ctx.imageSmoothingEnabled = scale < 1;
    ctx.drawImage(image, 0, 0);
    const kept = prefilled.filter((m) => !m.deleted);
    for (const { rle } of kept) ctx.drawImage(this.overlay(rle, PREFILL_COLOUR), 0, 0);
    for (const rle of accepted) ctx.drawImage(this.overlay(rle, [40, 200, 90, 110]), 0, 0);
    const { mask, clicks, box } = editor.state;
    if (mask) ctx.drawImage(this.overlay(mask, [30, 144, 255, 140]), 0, 0);
    ctx.lineWidth = 2 / scale;
    if (box) {
      ctx.strokeStyle = '#ffd400';
      ctx.strokeRect(box[0], box[1], box[2] - box[0], box[3] - box[1]);
    }
    for (const c of clicks) {
      ctx.fillStyle = c.label === 1 ? '#2ecc40' : '#ff4136';
      ctx.beginPath();
      ctx.arc(c.x, c.y, 5 / scale, 0, 2 * Math.PI);
      ctx.fill();
    }
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    canvas.dataset.view = `${scale},${x},${y}`; // image → canvas pixels, for tests and tools
    const pixels = mask ? mask.counts.reduce((s, n, i) => (i % 2 ? s + n : s), 0) : 0;
    canvas.dataset.maskPixels = String(pixels);
    canvas.dataset.prefilled = String(kept.length);
    canvas.dataset.prefillDeleted = String(prefilled.length - kept.length);
    statusLine.textContent = [
      `${this.tool}${this.tool === 'prompt' ? '' : ` r=${this.radius.toFixed(0)}`}`,
      `mask ${pixels} px`,
      `${editor.prompts} clicks`,
      `${editor.seconds().toFixed(1)} s`,
      `${accepted.length} accepted`,
      ...(prefilled.length > 0
        ? [`${kept.length} pre-filled (${prefilled.length - kept.length} deleted)`]
        : []),
      message ?? '',
    ].join(' · ');
  }

  /** A mask as a translucent colour layer the size of the image, made once per mask. */
  private overlay(rle: Rle, [r, g, b, a]: number[]): HTMLCanvasElement {
    let layer = this.overlays.get(rle);
    if (layer) return layer;
    const [h, w] = rle.size;
    layer = document.createElement('canvas');
    layer.width = w;
    layer.height = h;
    const data = new ImageData(w, h);
    const pixels = decodeRle(rle);
    for (let i = 0; i < pixels.length; i++) {
      if (!pixels[i]) continue;
      data.data.set([r!, g!, b!, a!], i * 4);
    }
    layer.getContext('2d')!.putImageData(data, 0, 0);
    if (this.overlays.size > 64) this.overlays.clear();
    this.overlays.set(rle, layer);
    return layer;
  }
}

async function login(token: string): Promise<void> {
  const api = new Api(token);
  await api.call('GET', '/api/me');
  sessionStorage.setItem('sae-token', token);
  $('login').hidden = true;
  $('tool').hidden = false;
  await new AnnotationTool(api).start();
}

$<HTMLFormElement>('login').addEventListener('submit', (e) => {
  e.preventDefault();
  login($<HTMLInputElement>('token').value.trim()).catch((err: unknown) => {
    $('login-error').textContent = (err as Error).message;
  });
});
const saved = sessionStorage.getItem('sae-token');
if (saved) void login(saved).catch(() => sessionStorage.removeItem('sae-token'));
