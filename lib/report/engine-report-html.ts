// index.html: the engine report, one self-contained page per run that opens offline, with the
// Segment Anything paper's figures stage by stage. It shares the audit report's CSS and charts
// (lib/audit/report-html.ts); charts are inline SVG, gallery pictures data: URIs, no script. Every
// piece of text from the stored files goes through `esc`. A section without data says so in words.
import { barsSvg, esc, fx, heatmapSvg, histogramSvg, num, pct, STYLE } from '../audit/report-html.ts';
import { runLayout } from '../run-layout.ts';
import type {
  AuditData,
  DetectorFigures,
  EngineReportData,
  GalleryData,
  ModelsData,
  ModelVersionRow,
  RoundRow,
  SamFigures,
} from './engine-report-data.ts';

/** The link from runs/<run>/report/index.html to the audit's own page. */
export const AUDIT_REPORT_LINK = '../audit/report.html';

/** Stage 1 and stage 2 rounds in the line plots: a colour and a marker each. */
export const STAGE_COLOURS = { stage1: '#1c7ed6', stage2: '#9c36b5' } as const;
const VERSION_COLOUR = '#0ca678';
const CHAMPION_COLOUR = '#98a2b3';

export interface ReportSection {
  name: string;
  title: string;
  /** Whether the run had data for it (false: the section says what is not there yet). */
  filled: boolean;
  body: string;
}

/** The page; `galleryJpegs` holds the gallery pictures by GalleryImage.key. */
export function renderEngineReportHtml(
  data: EngineReportData,
  galleryJpegs: ReadonlyMap<string, Buffer>,
): string {
  const sections = engineReportSections(data, galleryJpegs)
    .map((s) => `<section id="${s.name}"><h2>${esc(s.title)}</h2>\n${s.body}\n</section>`)
    .join('\n');
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Data engine report: ${esc(data.run)}</title>
<style>${STYLE}${EXTRA_STYLE}</style>
</head>
<body>
<main>
${header(data)}
${sections}
</main>
</body>
</html>
`;
}

const EXTRA_STYLE = `
.status { display: inline-block; border-radius: 999px; padding: 2px 10px; font-size: 13px; font-weight: 600; background: #eef1f5; }
.status.completed { background: #e6f4ea; color: var(--good); }
.status.failed, .status.cancelled { background: #fdecea; color: var(--bad); }
.status.running { background: #e7f0fd; color: #1c5fb8; }
.empty { color: var(--muted); font-style: italic; }
td.wrap { text-align: left; white-space: normal; max-width: 360px; }
h3 { font-size: 15px; margin: 16px 0 8px; }
`;

/** Every section in page order, with whether it had data: what writeEngineReport returns. */
export function engineReportSections(
  data: EngineReportData,
  galleryJpegs: ReadonlyMap<string, Buffer>,
): ReportSection[] {
  const anyMasks = Object.values(data.masksByStage).some((n) => n !== null);
  const anyVersions = data.models.sam.versions.length + data.models.detector.versions.length > 0;
  return [
    { name: 'overview', title: 'Overview', filled: true, body: overview(data) },
    { name: 'rounds', title: 'Annotation rounds', filled: data.rounds.rows.length > 0, body: rounds(data) },
    { name: 'models', title: 'Models', filled: anyVersions, body: models(data) },
    { name: 'masks-by-stage', title: 'Masks added per stage', filled: anyMasks, body: masksByStage(data) },
    { name: 'audit', title: 'Audit against human masks', filled: data.audit !== null, body: audit(data) },
    {
      name: 'dataset',
      title: 'Dataset statistics (paper §5)',
      filled: data.dataset !== null,
      body: dataset(data),
    },
    {
      name: 'gallery',
      title: 'Sample images with their masks',
      filled: data.gallery.images.length > 0,
      body: gallery(data.gallery, galleryJpegs),
    },
  ];
}

// ---------------------------------------------------------------------------------------------
// Sections
// ---------------------------------------------------------------------------------------------

function header(d: EngineReportData): string {
  const state = d.record.ended
    ? `ended ${esc(d.record.updatedAt)}`
    : `last updated ${esc(d.record.updatedAt)}; the run has not ended, so later sections may be empty`;
  return `<header>
<h1>Data engine report — run ${esc(d.run)}</h1>
<div><span class="status ${esc(d.record.status)}">${esc(d.record.status)}</span> <span class="muted">${state}</span></div>
</header>`;
}

const STAGE_TITLES: Record<string, string> = {
  stage1: 'Stage 1 — assisted-manual',
  stage2: 'Stage 2 — semi-automatic',
  stage3: 'Stage 3 — fully automatic',
  audit: 'Audit',
  release: 'Release copies',
};

function overview(d: EngineReportData): string {
  const rows = d.stages.map((s) => {
    const output = s.output
      ? esc(s.output)
      : `<span class="empty">${s.enabled ? 'no output yet' : '–'}</span>`;
    return `<tr><td>${STAGE_TITLES[s.stage]}</td><td class="left">${s.enabled ? 'enabled' : 'off'}</td><td class="left">${output}</td></tr>`;
  });
  const facts: Array<[string, string]> = [
    ['run', esc(d.run)],
    ['status', `${esc(d.record.status)} (${esc(d.record.key)})`],
    ['updated', esc(d.record.updatedAt)],
    ['images', `<span class="mono">${esc(imagesSource(d.config.images))}</span>`],
    ['output', `<span class="mono">${esc(d.config.output)}</span>`],
    ['SAM', `<span class="mono">${esc(d.config.models.sam)}</span>`],
    [
      'detector',
      d.config.models.detector ? `<span class="mono">${esc(d.config.models.detector)}</span>` : '–',
    ],
  ];
  const factRows = facts.map(([k, v]) => `<tr><td>${k}</td><td class="left">${v}</td></tr>`).join('');
  return `<table style="max-width:760px">${factRows}</table>
<h3>Stages</h3>
<table><thead><tr><th>stage</th><th class="left">config</th><th class="left">stored so far</th></tr></thead>
<tbody>${rows.join('\n')}</tbody></table>`;
}

function imagesSource(images: EngineReportData['config']['images']): string {
  return 'prefix' in images ? images.prefix : `${images.manifest} (${images.format} manifest)`;
}

function rounds(d: EngineReportData): string {
  const { rows, planned, open } = d.rounds;
  const openNote =
    open.length === 0
      ? ''
      : ` Round${open.length > 1 ? 's' : ''} ${open.join(', ')} still open (no summary yet).`;
  if (rows.length === 0) {
    if (planned === 0)
      return empty('The config enables neither stage 1 nor stage 2: this run has no annotation rounds.');
    return empty(`No annotation round has closed yet (0 of ${planned} planned).${openNote}`);
  }
  const byStage = (stage: 'stage1' | 'stage2', value: (r: RoundRow) => number | null): LineSeries => ({
    label: stage === 'stage1' ? 'stage 1 (assisted-manual)' : 'stage 2 (semi-automatic)',
    colour: STAGE_COLOURS[stage],
    marker: stage === 'stage1' ? 'circle' : 'square',
    points: rows
      .filter((r) => r.stage === stage)
      .flatMap((r) => {
        const y = value(r);
        return y === null ? [] : [{ x: r.round, y }];
      }),
  });
  const series = (value: (r: RoundRow) => number | null) =>
    [byStage('stage1', value), byStage('stage2', value)].filter((s) => s.points.length > 0);
  const xTicks = rows.map((r) => r.round);
  const charts = [
    lineChartSvg(
      series((r) => r.masksPerImage),
      { xLabel: 'round', yLabel: 'masks per image', xTicks },
    ),
    lineChartSvg(
      series((r) => r.secondsMedian),
      {
        xLabel: 'round',
        yLabel: 'median seconds per mask',
        xTicks,
      },
    ),
  ];
  return `<p class="muted">${rows.length} of ${planned} planned rounds closed.${openNote}
As in the paper (§4): more masks per image and fewer seconds per mask as the model improves.</p>
${roundsTable(rows)}
<div style="height:12px"></div><div class="charts">${charts.join('')}</div>`;
}

function roundsTable(rows: readonly RoundRow[]): string {
  const body = rows.map((r) => {
    const models = Object.entries(r.models)
      .map(([m, n]) => `${esc(m)} (${n})`)
      .join(', ');
    const detector = r.detector
      ? `${esc(r.detector)}${r.prefillProblem ? `<br><span class="muted">${esc(r.prefillProblem)}</span>` : ''}`
      : '–';
    const cells = [
      String(r.round),
      r.stage === 'stage1' ? 'stage&nbsp;1' : 'stage&nbsp;2',
      String(r.imagesAnnotated),
      String(r.masks),
      num(r.masksPerImage, 1),
      r.stage === 'stage2' ? `${r.prefilledKept} / ${r.prefilledDeleted}` : '–',
      String(r.added),
      num(r.secondsMedian, 1),
      num(r.secondsP90, 1),
      num(r.clicksPerMask, 1),
    ];
    return `<tr>${cells.map((c) => `<td>${c}</td>`).join('')}<td class="wrap">${models || '–'}</td><td class="wrap">${detector}</td></tr>`;
  });
  return `<table>
<thead><tr><th>round</th><th>stage</th><th>images</th><th>masks</th><th>masks/image</th><th>pre-filled kept / deleted</th>
<th>added</th><th>median s/mask</th><th>p90 s/mask</th><th>clicks/mask</th><th class="left">SAM (masks)</th><th class="left">detector</th></tr></thead>
<tbody>${body.join('\n')}</tbody></table>`;
}

function models(d: EngineReportData): string {
  return `${samModels(d.models.sam)}\n${detectorModels(d.models.detector)}`;
}

function samModels(m: ModelsData<SamFigures>): string {
  const title = `<h3>SAM: <span class="mono">${esc(m.name)}</span> in <span class="mono">${esc(m.registry)}</span></h3>`;
  if (m.versions.length === 0) return `${title}${empty(`No version of ${m.name} belongs to this run yet.`)}`;
  const rows = m.versions.map((v) => {
    const f = v.figures;
    const c = v.gate?.championFigures ?? null;
    const cells = [
      versionCell(v),
      esc(v.role),
      f ? String(f.masks) : '–',
      num(f?.miou1click ?? null),
      num(f?.noc85 ?? null, 2),
      num(f?.noc90 ?? null, 2),
      esc(atClicks(f)),
      num(f?.iouHeadPearson ?? null, 2),
      thresholdsCell(v.amgThresholds),
      num(c?.miou1click ?? null),
      num(c?.noc90 ?? null, 2),
    ];
    return `<tr>${cells.map((x) => `<td>${x}</td>`).join('')}${gateCells(v)}</tr>`;
  });
  const table = `<table>
<thead><tr><th>version</th><th>role</th><th>held-out masks</th><th>1-click mIoU</th><th>NoC@85</th><th>NoC@90</th><th>mIoU @ clicks</th>
<th title="Pearson correlation of the 3 first-click masks' predicted IoU with their true IoU: the AMG keeps masks by this prediction">IoU head r</th><th title="predicted IoU / stability thresholds calibrated for this version (model.json amg_calibration); its parent's when its held-out images kept no correct mask at any pair">AMG thresholds</th><th>champion's 1-click mIoU</th><th>champion's NoC@90</th><th class="left">gate</th><th class="left">reason</th></tr></thead>
<tbody>${rows.join('\n')}</tbody></table>`;
  return `${title}${table}${versionChart(m.versions, (f) => f.miou1click, '1-click mIoU (held out)')}`;
}

function detectorModels(m: ModelsData<DetectorFigures>): string {
  const title = `<h3>Detector: <span class="mono">${esc(m.name)}</span> in <span class="mono">${esc(m.registry)}</span></h3>`;
  if (m.versions.length === 0) return `${title}${empty(`No version of ${m.name} belongs to this run yet.`)}`;
  const rows = m.versions.map((v) => {
    const f = v.figures;
    const c = v.gate?.championFigures ?? null;
    const cells = [
      versionCell(v),
      esc(v.role),
      f ? String(f.boxes) : '–',
      num(f?.ap ?? null),
      num(f?.ap50 ?? null),
      num(f?.ar100 ?? null),
      num(c?.ap ?? null),
      num(c?.ar100 ?? null),
    ];
    return `<tr>${cells.map((x) => `<td>${x}</td>`).join('')}${gateCells(v)}</tr>`;
  });
  const table = `<table>
<thead><tr><th>version</th><th>role</th><th>held-out boxes</th><th>box AP</th><th>AP50</th><th>AR100</th>
<th>champion's AP</th><th>champion's AR100</th><th class="left">gate</th><th class="left">reason</th></tr></thead>
<tbody>${rows.join('\n')}</tbody></table>`;
  return `${title}${table}${versionChart(m.versions, (f) => f.ap, 'box AP (held out)')}`;
}

function versionCell<F>(v: ModelVersionRow<F>): string {
  return `v${v.version}${v.champion ? ' <b>(champion)</b>' : ''}`;
}

function thresholdsCell<F>(thresholds: ModelVersionRow<F>['amgThresholds']): string {
  if (!thresholds) return '–';
  const pair = `${thresholds.predIouThresh} / ${thresholds.stabilityScoreThresh}`;
  return thresholds.inheritedFrom
    ? `${pair} <span class="muted">(${esc(thresholds.inheritedFrom)}'s)</span>`
    : pair;
}

function gateCells<F>(v: ModelVersionRow<F>): string {
  if (!v.gate) return '<td class="left">–</td><td class="wrap muted">no gate ran</td>';
  const verdict = v.gate.promoted ? 'promoted' : 'not promoted';
  const against = v.gate.champion ? ` over ${esc(v.gate.champion)}` : '';
  return `<td class="left">${verdict}${against}</td><td class="wrap">${esc(v.gate.reason)}</td>`;
}

function atClicks(f: SamFigures | null): string {
  if (!f) return '–';
  const entries = Object.entries(f.miouAtClicks);
  return entries.length === 0 ? '–' : entries.map(([k, v]) => `${k}: ${v.toFixed(2)}`).join(', ');
}

/** The held-out figure per version, and the champion's figure the gate compared it with. */
function versionChart<F>(
  versions: readonly ModelVersionRow<F>[],
  figure: (f: F) => number | null,
  label: string,
): string {
  const point = (v: ModelVersionRow<F>, f: F | null | undefined) => {
    const y = f ? figure(f) : null;
    return y === null ? [] : [{ x: v.version, y }];
  };
  const own: LineSeries = {
    label: 'this version',
    colour: VERSION_COLOUR,
    marker: 'circle',
    points: versions.flatMap((v) => point(v, v.figures)),
  };
  const champion: LineSeries = {
    label: 'champion it was measured against',
    colour: CHAMPION_COLOUR,
    marker: 'square',
    points: versions.flatMap((v) => point(v, v.gate?.championFigures)),
  };
  const series = [own, champion].filter((s) => s.points.length > 0);
  if (series.length === 0)
    return `<p class="muted">No version has held-out figures yet (a seed is not measured).</p>`;
  return lineChartSvg(series, {
    xLabel: 'version',
    yLabel: label,
    xTicks: versions.map((v) => v.version),
    xTickLabel: (x) => `v${x}`,
  });
}

function masksByStage(d: EngineReportData): string {
  const m = d.masksByStage;
  const bars = [
    { label: 'stage 1 annotated', count: m.stage1Annotated },
    { label: 'stage 2 pre-filled kept', count: m.stage2PrefilledKept },
    { label: 'stage 2 added', count: m.stage2Added },
    { label: 'stage 3 automatic', count: m.stage3Automatic },
  ];
  if (bars.every((b) => b.count === null)) return empty('No stage has stored masks yet.');
  const missing = bars.filter((b) => b.count === null).map((b) => b.label);
  const note =
    missing.length === 0
      ? ''
      : `<p class="muted">Not yet (or not in this run): ${esc(missing.join(', '))}.</p>`;
  const stored = bars.flatMap((b) => (b.count === null ? [] : [{ label: b.label, count: b.count }]));
  const chart = barsSvg(stored, 180 * stored.length, 200);
  return `${chart}${note}<p class="muted">The paper's engine: 4.3M masks in stage 1, 5.9M more in stage 2, 1.1B automatic masks in stage 3 (§4).</p>`;
}

function audit(d: EngineReportData): string {
  const a = d.audit;
  if (!a) {
    return d.config.audit.enabled
      ? empty('The audit has not written its report yet.')
      : empty(
          "The audit is not enabled in this run's config (`sa-engine audit` adds one later): no audit yet.",
        );
  }
  return `${auditFacts(a)}
${a.overall.humanMasks === 0 ? empty('No human masks were audited.') : histogramSvg(a.overall.histogram)}
<p class="muted">IoU of each human mask with its best automatic mask; dashed lines at 0.75 and 0.90.
The audit's own page, with its gallery of the worst images: <a href="${AUDIT_REPORT_LINK}">${AUDIT_REPORT_LINK}</a>${
    a.htmlKey ? '' : ' (not written yet)'
  }.</p>`;
}

function auditFacts(a: AuditData): string {
  const o = a.overall;
  const gate = !a.gate.configured
    ? 'not configured'
    : a.gate.passed
      ? 'passed'
      : `failed: ${a.gate.failures.join('; ')}`;
  const facts: Array<[string, string]> = [
    ['images audited', String(a.audited)],
    ['human / automatic masks', `${a.humanMasks} / ${a.automaticMasks}`],
    ['mean / median IoU', `${num(o.meanIou)} / ${num(o.medianIou)}`],
    ['IoU &gt; 0.90 / &gt; 0.75', `${pct(o.shareAbove090)} / ${pct(o.shareAbove075)} (paper: 94% / 97%)`],
    [
      'recall @ 0.50 / 0.75 / 0.90',
      `${pct(o.recall.at050)} / ${pct(o.recall.at075)} / ${pct(o.recall.at090)}`,
    ],
    ['quality gate', esc(gate)],
    ['reference', `<span class="mono">${esc(a.reference)}</span>`],
  ];
  return `<table style="max-width:760px">${facts.map(([k, v]) => `<tr><td>${k}</td><td class="left">${v}</td></tr>`).join('')}</table>`;
}

function dataset(d: EngineReportData): string {
  const s = d.dataset;
  if (!s) {
    return d.config.stage3.enabled
      ? empty(`Stage 3 has not written its statistics yet (${runLayout.datasetStats(d.run)}).`)
      : empty("Stage 3 is not enabled in this run's config: no dataset statistics.");
  }
  const m = s.masksPerImage;
  const coco = s.maskSize.coco;
  const cocoBins = [
    { label: `small (<${Math.sqrt(coco.smallBelow)}²)`, count: coco.small },
    { label: `medium (<${Math.sqrt(coco.mediumBelow)}²)`, count: coco.medium },
    { label: 'large', count: coco.large },
  ];
  const chart = (title: string, svg: string) =>
    `<div><div class="muted" style="font-size:13px">${esc(title)}</div>${svg}</div>`;
  return `<p>${s.images} images (${s.imagesFailed} failed), ${s.masks} masks; masks per image mean ${num(m.mean, 1)},
median ${num(m.median, 1)}, min ${m.min ?? '–'}, max ${m.max ?? '–'}; mean relative size ${num(s.maskSize.meanRelativeSize)}
(${esc(s.maskSize.relativeSize)}). Models: ${esc(s.models.join(', ') || '–')}.</p>
<div class="charts">
${chart('Masks per image (images)', barsSvg(m.histogram, 420, 180))}
${chart('Mask relative size, sqrt(mask area / image area)', barsSvg(s.maskSize.histogram, 460, 180))}
${chart('COCO size classes (pixels of the original image)', barsSvg(cocoBins, 360, 180))}
${chart('Mask centres, image-normalised (darker = more)', heatmapSvg(s.centres.counts))}
</div>`;
}

function gallery(g: GalleryData, jpegs: ReadonlyMap<string, Buffer>): string {
  if (g.images.length === 0) return empty('No masks yet: neither stage 3 nor a closed round has stored any.');
  const note =
    g.source === 'rounds'
      ? '<p class="muted">Stage 3 has no masks yet: these are images people annotated in the rounds, with their masks.</p>'
      : '<p class="muted">Evenly spaced images of the dataset with their automatic masks, each mask its own colour.</p>';
  const figures = g.images.map((image) => {
    const jpeg = jpegs.get(image.key);
    const img = jpeg
      ? `<img alt="image ${image.imageId}" src="data:image/jpeg;base64,${jpeg.toString('base64')}">`
      : '<p class="muted">(picture could not be read)</p>';
    return `<figure>${img}<figcaption>image ${image.imageId} · <span class="mono">${esc(image.name)}</span><br>${
      image.masks.length
    } masks · ${esc(image.from)}</figcaption></figure>`;
  });
  return `${note}<div class="gallery">${figures.join('\n')}</div>`;
}

/** What a section says when the run has no data for it (yet). */
function empty(text: string): string {
  return `<p class="empty">${esc(text)}</p>`;
}

// ---------------------------------------------------------------------------------------------
// Line chart (inline SVG)
// ---------------------------------------------------------------------------------------------

export interface LineSeries {
  label: string;
  colour: string;
  /** A shape per series, so they stay apart in grey too. */
  marker: 'circle' | 'square';
  points: ReadonlyArray<{ x: number; y: number }>;
}

export interface LineChartOptions {
  xLabel: string;
  yLabel: string;
  /** The x values to label (default: every x of a point). */
  xTicks?: readonly number[];
  xTickLabel?: (x: number) => string;
  width?: number;
  height?: number;
}

/** Points joined by lines per series, y from 0, with a legend, axis labels and each point's value. */
export function lineChartSvg(series: readonly LineSeries[], opts: LineChartOptions): string {
  const width = opts.width ?? 520;
  const height = opts.height ?? 260;
  const pad = { left: 74, right: 16, top: 40, bottom: 44 };
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  const bottom = pad.top + plotH;
  const pointXs = series.flatMap((s) => s.points.map((p) => p.x));
  const xs = opts.xTicks ?? pointXs;
  const domain = [...xs, ...pointXs];
  const xMin = domain.length === 0 ? 0 : Math.min(...domain);
  const xMax = domain.length === 0 ? 0 : Math.max(...domain);
  // A little headroom over the highest point, so its value label stays clear of the legend.
  const yTicks = valueTicks(1.08 * Math.max(0, ...series.flatMap((s) => s.points.map((p) => p.y))));
  const yMax = yTicks.at(-1)!;
  // Half a step of room either side, so the first and last points are not on the frame.
  const x = (v: number) => pad.left + ((v - xMin + 0.5) / (xMax - xMin + 1)) * plotW;
  const y = (v: number) => bottom - (v / yMax) * plotH;
  const grid = yTicks.map(
    (t) =>
      `<line x1="${pad.left}" x2="${width - pad.right}" y1="${fx(y(t))}" y2="${fx(y(t))}" stroke="#eceff3"/>` +
      `<text x="${pad.left - 6}" y="${fx(y(t) + 4)}" text-anchor="end">${tickText(t)}</text>`,
  );
  const xLabels = [...new Set(xs)].map(
    (v) =>
      `<text x="${fx(x(v))}" y="${bottom + 16}" text-anchor="middle">${esc(opts.xTickLabel?.(v) ?? String(v))}</text>`,
  );
  // The second series labels its values below its points (above, near the axis), so two close
  // values stay readable.
  const labelY = (py: number, i: number) => (i % 2 === 0 || py + 17 > bottom - 4 ? py - 9 : py + 17);
  const lines = series.map((s, i) => seriesSvg(s, x, y, (py) => labelY(py, i)));
  const legend = series.map((s, i) => {
    const lx = pad.left + i * 230;
    return `${markerSvg(s, lx + 6, 14)}<text x="${lx + 16}" y="18">${esc(s.label)}</text>`;
  });
  const axes =
    `<line x1="${pad.left}" x2="${width - pad.right}" y1="${bottom}" y2="${bottom}" stroke="#98a2b3"/>` +
    `<line x1="${pad.left}" x2="${pad.left}" y1="${pad.top}" y2="${bottom}" stroke="#98a2b3"/>` +
    `<text x="${fx(pad.left + plotW / 2)}" y="${height - 6}" text-anchor="middle">${esc(opts.xLabel)}</text>` +
    `<text transform="translate(14 ${fx(pad.top + plotH / 2)}) rotate(-90)" text-anchor="middle">${esc(opts.yLabel)}</text>`;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-label="${esc(
    `${opts.yLabel} by ${opts.xLabel}`,
  )}">
${grid.join('')}${axes}${xLabels.join('')}
${lines.join('\n')}
${legend.join('')}
</svg>`;
}

function seriesSvg(
  s: LineSeries,
  x: (v: number) => number,
  y: (v: number) => number,
  labelY: (py: number) => number,
): string {
  const points = [...s.points].sort((a, b) => a.x - b.x);
  const path = points.map((p) => `${fx(x(p.x))},${fx(y(p.y))}`).join(' ');
  const line =
    points.length > 1
      ? `<polyline points="${path}" fill="none" stroke="${s.colour}" stroke-width="2.5"/>`
      : '';
  const marks = points.map(
    (p) =>
      `${markerSvg(s, x(p.x), y(p.y), `${s.label}: ${tickText(p.y)}`)}` +
      `<text x="${fx(x(p.x))}" y="${fx(labelY(y(p.y)))}" text-anchor="middle">${tickText(p.y)}</text>`,
  );
  return line + marks.join('');
}

function markerSvg(s: LineSeries, cx: number, cy: number, title?: string): string {
  const tip = title ? `<title>${esc(title)}</title>` : '';
  return s.marker === 'circle'
    ? `<circle cx="${fx(cx)}" cy="${fx(cy)}" r="5" fill="${s.colour}">${tip}</circle>`
    : `<rect x="${fx(cx - 5)}" y="${fx(cy - 5)}" width="10" height="10" fill="${s.colour}">${tip}</rect>`;
}

/** 0 and about five round steps up to at least `max` (1, 2, 2.5 or 5 times a power of ten). */
function valueTicks(max: number): number[] {
  if (max <= 0) return [0, 1];
  const raw = max / 5;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * magnitude).find((s) => s >= raw)!;
  const steps = Math.ceil(max / step - 1e-9);
  return Array.from({ length: steps + 1 }, (_, i) => Number((i * step).toPrecision(12)));
}

/** Up to three significant decimals, no trailing zeros: 19, 0.25, 0.004. */
function tickText(value: number): string {
  return String(Number(value.toPrecision(3)));
}
