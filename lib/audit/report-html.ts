// report.html: the audit for a person, in one self-contained file that opens offline. CSS is
// inline, charts are inline SVG, gallery pictures are data: URIs; nothing is fetched from
// anywhere. Every piece of text from the inputs (file names, URIs) goes through `esc`.
import {
  SIZE_CLASSES,
  type CountSummary,
  type HistogramBin,
  type IouFigures,
  type PrecisionFigures,
} from './figures.ts';
import { AUTO_COLOUR, HUMAN_COLOUR } from './overlay.ts';
import type { AuditReport, AuditRow, GalleryEntry, Heatmap } from './report.ts';
import { uriFileName } from './sample.ts';

/** The whole page; `jpegs` holds the gallery pictures by key. */
export function renderReportHtml(report: AuditReport, jpegs: ReadonlyMap<string, Buffer>): string {
  const sections = [
    header(report),
    gateBanner(report),
    headline(report),
    section('IoU of each human mask with its best automatic mask', iouHistogram(report.figures.overall)),
    section('By human mask size (COCO classes)', sizeTable(report)),
    // The worst cases come before the run-wide context: they are what an owner acts on.
    section(`The ${report.gallery.length} worst images`, gallery(report.gallery, jpegs)),
    section('Masks per image', masksPerImage(report)),
    report.heatmap ? section('Where mask centres fall (whole run)', heatmap(report.heatmap)) : '',
    section('Worst images (rows.jsonl has them all)', worstTable(report.worst)),
    section('Sample and reference', sampleFacts(report)),
  ];
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Mask quality audit: ${esc(report.run)}</title>
<style>${STYLE}</style>
</head>
<body>
<main>
${sections.filter((s) => s !== '').join('\n')}
</main>
</body>
</html>
`;
}

/** The page's CSS; the engine report (lib/report/) shares it so the two pages look alike. */
export const STYLE = `
:root { --ink: #1d2330; --muted: #667085; --line: #d9dee7; --bg: #f6f7f9; --good: #0f7b3f; --bad: #b42318; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink); font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
main { max-width: 1180px; margin: 0 auto; padding: 24px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 0 0 12px; }
section, header { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 18px 20px; margin-bottom: 16px; }
.muted { color: var(--muted); }
.mono { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 13px; word-break: break-all; }
.banner { border-radius: 8px; padding: 12px 16px; margin-bottom: 16px; font-weight: 600; }
.banner.pass { background: #e6f4ea; color: var(--good); border: 1px solid #a6d8b5; }
.banner.fail { background: #fdecea; color: var(--bad); border: 1px solid #f2b8b5; }
.banner.none { background: #eef1f5; color: var(--muted); border: 1px solid var(--line); }
.banner ul { margin: 6px 0 0; font-weight: 400; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(200px, 1fr)); gap: 12px; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 14px 16px; }
.card .label { color: var(--muted); font-size: 13px; }
.card .value { font-size: 30px; font-weight: 700; margin: 2px 0; }
.card .cmp { font-size: 13px; }
.card .cmp.good { color: var(--good); } .card .cmp.bad { color: var(--bad); }
.card.dim .value { color: var(--muted); }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { text-align: right; padding: 6px 10px; border-bottom: 1px solid var(--line); }
th:first-child, td:first-child { text-align: left; }
td.left, th.left { text-align: left; }
thead th { color: var(--muted); font-weight: 600; font-size: 13px; }
.charts { display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; }
.gallery { display: grid; grid-template-columns: repeat(auto-fill, minmax(340px, 1fr)); gap: 14px; }
figure { margin: 0; border: 1px solid var(--line); border-radius: 8px; overflow: hidden; background: #fff; }
figure img { display: block; width: 100%; height: 340px; object-fit: contain; background: #1d2330; }
figcaption { padding: 8px 10px; font-size: 13px; }
.swatch { display: inline-block; width: 12px; height: 12px; border-radius: 2px; vertical-align: -1px; margin: 0 4px 0 10px; }
svg text { font: 11px system-ui, sans-serif; fill: #475467; }
`;

// ---------------------------------------------------------------------------------------------
// Sections
// ---------------------------------------------------------------------------------------------

function header(r: AuditReport): string {
  return `<header>
<h1>Mask quality audit — run ${esc(r.run)}</h1>
<div class="muted">Automatic masks of stage 3 against human masks, as in the SAM paper's audit (§5).
${r.sample.audited} images, ${r.masks.human} human masks, ${r.masks.automatic} automatic masks.</div>
</header>`;
}

function gateBanner(r: AuditReport): string {
  if (!r.gate.configured)
    return `<div class="banner none">No quality gate is configured: this report is for reading only.</div>`;
  if (r.gate.passed) return `<div class="banner pass">Quality gate passed.</div>`;
  const items = r.gate.failures.map((f) => `<li>${esc(f)}</li>`).join('');
  return `<div class="banner fail">Quality gate failed<ul>${items}</ul></div>`;
}

function headline(r: AuditReport): string {
  const o = r.figures.overall;
  const p = r.figures.precision;
  const cards = [
    card('IoU &gt; 0.90', pct(o.shareAbove090), versusPaper(o.shareAbove090, r.paper.shareAbove090)),
    card('IoU &gt; 0.75', pct(o.shareAbove075), versusPaper(o.shareAbove075, r.paper.shareAbove075)),
    card('Mean IoU', num(o.meanIou), `median ${num(o.medianIou)}`),
    card(
      'Recall @ 0.50 / 0.75 / 0.90',
      pct(o.recall.at050),
      `${pct(o.recall.at075)} / ${pct(o.recall.at090)} (one-to-one)`,
    ),
    card(
      'Precision @ 0.50',
      pct(p.precisionAt050),
      p.meaningful
        ? `${p.matchedAt050} of ${p.automaticMasks} automatic masks matched`
        : 'reference not exhaustive: unmatched masks may be objects nobody drew',
      !p.meaningful,
    ),
  ];
  return `<div class="cards">${cards.join('\n')}</div><div style="height:16px"></div>`;
}

function card(label: string, value: string, comparison: string, dim = false): string {
  return `<div class="card${dim ? ' dim' : ''}"><div class="label">${label}</div><div class="value">${value}</div>${comparison}</div>`;
}

function versusPaper(value: number | null, paper: number): string {
  if (value === null) return `<div class="cmp">paper: ${pct(paper)}</div>`;
  const diff = (value - paper) * 100;
  const cls = diff >= 0 ? 'good' : 'bad';
  return `<div class="cmp ${cls}">paper: ${pct(paper)} (${diff >= 0 ? '+' : '−'}${Math.abs(diff).toFixed(1)} points)</div>`;
}

function section(title: string, body: string): string {
  return `<section><h2>${esc(title)}</h2>\n${body}\n</section>`;
}

function iouHistogram(f: IouFigures): string {
  if (f.humanMasks === 0) return '<p class="muted">No human masks were audited.</p>';
  return `${histogramSvg(f.histogram)}
<p class="muted">Each bar counts human masks whose best automatic mask has an IoU in [from, to); the last bar includes 1.0.
Dashed lines: 0.75 and 0.90.</p>`;
}

function sizeTable(r: AuditReport): string {
  const rows = [
    ...SIZE_CLASSES.map((cls) =>
      sizeRow(sizeLabel(cls), r.figures.bySize[cls], r.figures.precision.bySize[cls]),
    ),
    sizeRow('all', r.figures.overall, r.figures.precision, true),
  ];
  return `<table>
<thead><tr><th>size</th><th>human masks</th><th>mean IoU</th><th>&gt; 0.90</th><th>&gt; 0.75</th>
<th>recall@0.50</th><th>recall@0.75</th><th>recall@0.90</th><th>automatic masks</th><th>precision@0.50</th></tr></thead>
<tbody>${rows.join('\n')}</tbody>
</table>
<p class="muted">Size classes use the human mask's area for IoU and recall, the automatic mask's area for precision.${
    r.figures.precision.meaningful
      ? ''
      : ' Precision is a lower bound: the reference is not marked exhaustive.'
  }</p>`;
}

function sizeLabel(cls: (typeof SIZE_CLASSES)[number]): string {
  return { small: 'small (&lt; 32² px)', medium: 'medium (&lt; 96² px)', large: 'large' }[cls];
}

function sizeRow(label: string, f: IouFigures, p: PrecisionFigures, bold = false): string {
  const cells = [
    label,
    String(f.humanMasks),
    num(f.meanIou),
    pct(f.shareAbove090),
    pct(f.shareAbove075),
    pct(f.recall.at050),
    pct(f.recall.at075),
    pct(f.recall.at090),
    String(p.automaticMasks),
    pct(p.precisionAt050),
  ];
  const style = bold ? ' style="font-weight:600"' : '';
  return `<tr${style}>${cells.map((c) => `<td>${c}</td>`).join('')}</tr>`;
}

function masksPerImage(r: AuditReport): string {
  const { human, automatic, run } = r.masksPerImage;
  const summaryRow = (label: string, s: CountSummary) =>
    `<tr><td>${label}</td><td>${num(s.mean, 1)}</td><td>${num(s.median, 1)}</td><td>${s.min ?? '–'}</td><td>${s.max ?? '–'}</td></tr>`;
  const table = `<table style="max-width:560px">
<thead><tr><th>audited images</th><th>mean</th><th>median</th><th>min</th><th>max</th></tr></thead>
<tbody>${summaryRow('human masks', human)}${summaryRow('automatic masks', automatic)}</tbody></table>`;
  const charts = [countChart('Automatic masks per audited image', automatic.histogram)];
  if (run) charts.push(countChart(`Whole run (mean ${num(run.mean, 1)})`, run.histogram));
  return `${table}<div style="height:12px"></div><div class="charts">${charts.join('')}</div>`;
}

function countChart(title: string, bins: ReadonlyArray<{ label: string; count: number }>): string {
  return `<div><div class="muted" style="font-size:13px">${esc(title)}</div>${barsSvg(
    bins.map((b) => ({ label: b.label, count: b.count })),
    360,
    160,
  )}</div>`;
}

function heatmap(h: Heatmap): string {
  return `${heatmapSvg(h.counts)}
<p class="muted">Mask centres over the whole run, image-normalised (top of the image at the top); darker = more. From <span class="mono">${esc(
    h.source,
  )}</span>.</p>`;
}

function gallery(entries: readonly GalleryEntry[], jpegs: ReadonlyMap<string, Buffer>): string {
  if (entries.length === 0) return '<p class="muted">No audited image has a human mask.</p>';
  const legend = `<p class="muted">Each picture shows the image's worst human mask
<span class="swatch" style="background:${rgb(HUMAN_COLOUR)}"></span>human
<span class="swatch" style="background:${rgb(AUTO_COLOUR)}"></span>its best automatic mask; the ignore region, if any, is tinted yellow.</p>`;
  const figures = entries.map((e) => {
    const jpeg = jpegs.get(e.key);
    const img = jpeg
      ? `<img alt="image ${e.imageId}" src="data:image/jpeg;base64,${jpeg.toString('base64')}">`
      : '<p class="muted">(picture missing)</p>';
    const auto = e.autoIndex === null ? 'no automatic mask overlaps' : `automatic mask #${e.autoIndex}`;
    return `<figure>${img}<figcaption><b>#${e.rank + 1}</b> image ${e.imageId} · <span class="mono">${esc(
      uriFileName(e.image),
    )}</span><br>mean best IoU ${num(e.meanBestIou)} · worst ${num(e.iou)} (${esc(e.humanMask ?? '')} vs ${auto})</figcaption></figure>`;
  });
  return `${legend}<div class="gallery">${figures.join('\n')}</div>`;
}

function worstTable(rows: readonly AuditRow[]): string {
  if (rows.length === 0) return '<p class="muted">No rows.</p>';
  const body = rows
    .map(
      (r) =>
        `<tr><td>${r.imageId}</td><td class="left mono">${esc(r.image)}</td><td>${r.humanMasks}</td><td>${r.automaticMasks}</td>` +
        `<td>${num(r.meanBestIou)}</td><td>${num(r.worstIou)}</td><td class="left mono">${esc(uriFileName(r.reference))}</td></tr>`,
    )
    .join('\n');
  return `<table><thead><tr><th>image id</th><th class="left">file</th><th>human</th><th>automatic</th><th>mean best IoU</th><th>worst IoU</th><th class="left">reference</th></tr></thead>
<tbody>${body}</tbody></table>`;
}

function sampleFacts(r: AuditReport): string {
  const facts: Array<[string, string]> = [
    [
      'reference',
      `<span class="mono">${esc(r.reference.uri)}</span> (${esc(r.reference.format)}${
        r.reference.ignoreValue === null ? '' : `, ignore value ${r.reference.ignoreValue}`
      }${r.reference.exhaustive ? ', exhaustive' : ''})`,
    ],
    [
      'reference images',
      `${r.reference.images}, of which ${r.reference.unmatchedImages} match no segmented image of the run`,
    ],
    [
      'run images',
      `${r.runImages.segmented} segmented, ${r.runImages.failed} failed, ${r.runImages.withoutReference} without human masks`,
    ],
    [
      'sample',
      `${r.sample.audited} of ${r.sample.candidates} candidates (asked for ${r.sample.requested}, seed ${r.sample.seed})`,
    ],
    ['left out', `${r.masks.skippedCrowd} crowd annotations, ${r.masks.skippedEmpty} empty human masks`],
  ];
  const rows = facts.map(([k, v]) => `<tr><td>${k}</td><td class="left">${v}</td></tr>`).join('');
  const notes = r.notes.length === 0 ? '' : `<ul>${r.notes.map((n) => `<li>${esc(n)}</li>`).join('')}</ul>`;
  return `<table>${rows}</table>${notes}`;
}

// ---------------------------------------------------------------------------------------------
// Charts (inline SVG)
// ---------------------------------------------------------------------------------------------

/** The 20-bin IoU histogram, with an x axis from 0 to 1 and markers at 0.75 and 0.90. */
export function histogramSvg(bins: readonly HistogramBin[]): string {
  const width = 760;
  const height = 260;
  const pad = { left: 44, right: 12, top: 12, bottom: 30 };
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  const max = Math.max(1, ...bins.map((b) => b.count));
  const x = (v: number) => pad.left + v * plotW;
  const y = (count: number) => pad.top + plotH - (count / max) * plotH;
  const bars = bins.map((b) => {
    const colour = b.from >= 0.9 ? '#2e7d32' : b.from >= 0.75 ? '#7cb342' : '#ef6c00';
    const top = y(b.count);
    return `<rect x="${fx(x(b.from) + 1)}" y="${fx(top)}" width="${fx(x(b.to) - x(b.from) - 2)}" height="${fx(
      pad.top + plotH - top,
    )}" fill="${colour}"><title>${b.from.toFixed(2)}–${b.to.toFixed(2)}: ${b.count}</title></rect>`;
  });
  const ticks = Array.from({ length: 11 }, (_, i) => i / 10).map(
    (v) => `<text x="${fx(x(v))}" y="${height - 10}" text-anchor="middle">${v.toFixed(1)}</text>`,
  );
  const yTicks = niceTicks(max).map(
    (c) =>
      `<line x1="${pad.left}" x2="${width - pad.right}" y1="${fx(y(c))}" y2="${fx(y(c))}" stroke="#eceff3"/>` +
      `<text x="${pad.left - 6}" y="${fx(y(c) + 4)}" text-anchor="end">${c}</text>`,
  );
  const marker = (v: number) =>
    `<line x1="${fx(x(v))}" x2="${fx(x(v))}" y1="${pad.top}" y2="${pad.top + plotH}" stroke="#1d2330" stroke-dasharray="4 3"/>`;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-label="IoU histogram">
${yTicks.join('')}${bars.join('')}${marker(0.75)}${marker(0.9)}
<line x1="${pad.left}" x2="${width - pad.right}" y1="${pad.top + plotH}" y2="${pad.top + plotH}" stroke="#98a2b3"/>
${ticks.join('')}
</svg>`;
}

/** A small labelled bar chart (masks per image). */
export function barsSvg(
  bins: ReadonlyArray<{ label: string; count: number }>,
  width: number,
  height: number,
): string {
  const pad = { left: 8, right: 8, top: 16, bottom: 22 };
  const plotH = height - pad.top - pad.bottom;
  const slot = (width - pad.left - pad.right) / Math.max(1, bins.length);
  const max = Math.max(1, ...bins.map((b) => b.count));
  const bars = bins.map((b, i) => {
    const h = (b.count / max) * plotH;
    const x = pad.left + i * slot;
    return (
      `<rect x="${fx(x + 4)}" y="${fx(pad.top + plotH - h)}" width="${fx(slot - 8)}" height="${fx(h)}" fill="#5b6cd6"/>` +
      `<text x="${fx(x + slot / 2)}" y="${fx(pad.top + plotH - h - 3)}" text-anchor="middle">${b.count}</text>` +
      `<text x="${fx(x + slot / 2)}" y="${height - 6}" text-anchor="middle">${esc(b.label)}</text>`
    );
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}">${bars.join('')}</svg>`;
}

/** counts[row][column] as a grid of squares, white (none) to dark blue (most); sqrt-scaled. */
export function heatmapSvg(counts: readonly (readonly number[])[]): string {
  const rows = counts.length;
  const columns = Math.max(1, ...counts.map((r) => r.length));
  const cell = Math.max(4, Math.floor(320 / Math.max(rows, columns)));
  const max = Math.max(1, ...counts.flat());
  const cells = counts.flatMap((row, r) =>
    row.map((count, c) => {
      const t = Math.sqrt(count / max);
      const shade = (from: number, to: number) => Math.round(from + (to - from) * t);
      const fill = `rgb(${shade(255, 13)},${shade(255, 45)},${shade(255, 120)})`;
      return `<rect x="${c * cell}" y="${r * cell}" width="${cell}" height="${cell}" fill="${fill}"><title>${count}</title></rect>`;
    }),
  );
  const w = columns * cell;
  const h = rows * cell;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}" style="border:1px solid #d9dee7">${cells.join('')}</svg>`;
}

/** About five round gridline values up to `max`. */
function niceTicks(max: number): number[] {
  const raw = max / 5;
  const magnitude = 10 ** Math.floor(Math.log10(Math.max(1, raw)));
  const step = Math.max(1, [1, 2, 5, 10].map((m) => m * magnitude).find((s) => s >= raw) ?? raw);
  const ticks: number[] = [];
  for (let v = step; v <= max; v += step) ticks.push(v);
  return ticks;
}

// ---------------------------------------------------------------------------------------------
// Formatting
// ---------------------------------------------------------------------------------------------

/** Escapes text for HTML content and attribute values. */
export function esc(text: string): string {
  return text.replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!,
  );
}

export function pct(value: number | null): string {
  return value === null ? '–' : `${(value * 100).toFixed(1)}%`;
}

export function num(value: number | null, digits = 3): string {
  return value === null ? '–' : value.toFixed(digits);
}

/** SVG coordinates with at most two decimals: shorter files, same picture. */
export function fx(value: number): string {
  return String(Math.round(value * 100) / 100);
}

function rgb(colour: readonly number[]): string {
  return `rgb(${colour.join(',')})`;
}
