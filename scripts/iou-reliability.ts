// Draws how well a SAM model's IoU head predicts: for each tenth of predicted IoU, the mean true
// IoU of the first-click masks in it (a reliability plot), one line per evaluation set, and the
// diagonal a perfect head would follow. It reads the trainer's evaluation figures (`iou_head`,
// trainer/sae_trainer/evaluate.py), as `python -m sae_trainer evaluate --out` writes them or as a
// version's lineage keeps them, and draws with the engine report's chart.
//
//   npx tsx scripts/iou-reliability.ts --out models/sae-ref/iou_reliability.svg \
//     "held-out synthetic=/tmp/v4.json#heldout_synthetic" "GrabCut=/tmp/v4.json#grabcut"
//
// Each argument is LABEL=FILE, or LABEL=FILE#KEY for figures under KEY of a JSON object.
import { readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { lineChartSvg, type LineSeries } from '../lib/report/engine-report-html.ts';
import { EvaluateSamResultSchema } from '../lib/training/contract.ts';

const COLOURS = ['#1f6feb', '#d4380d', '#389e0d', '#722ed1'];

function main(): void {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { out: { type: 'string' } },
  });
  if (!values.out || positionals.length === 0) {
    throw new Error('usage: iou-reliability.ts --out FILE.svg LABEL=FILE[#KEY] ...');
  }
  const centres = Array.from({ length: 10 }, (_, b) => (b + 0.5) / 10);
  const series: LineSeries[] = positionals.map((arg, i) => {
    const [label, source] = splitOnce(arg, '=');
    const [file, key] = splitOnce(source, '#');
    const json = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
    const figures = EvaluateSamResultSchema.parse(key ? json[key] : json);
    if (!figures.iou_head)
      throw new Error(`${source} has no iou_head figures (evaluated before they existed?)`);
    const { pearson, bins } = figures.iou_head;
    const r = pearson === null ? 'r n/a' : `r ${pearson.toFixed(2)}`;
    return {
      label: `${label} (${r})`,
      colour: COLOURS[i % COLOURS.length]!,
      marker: i % 2 === 0 ? 'circle' : 'square',
      points: bins.map((b) => ({ x: Math.round(b.from * 10), y: round2(b.true) })),
    };
  });
  const ideal: LineSeries = {
    label: 'perfect head',
    colour: '#98a2b3',
    marker: 'circle',
    points: centres.map((c, tenth) => ({ x: tenth, y: round2(c) })),
  };
  const svg = lineChartSvg([...series, ideal], {
    xLabel: 'predicted IoU (tenths; each point the mean true IoU of the masks in it)',
    yLabel: 'true IoU',
    // x is the tenth (0-9), labelled by its centre.
    xTicks: centres.map((_, tenth) => tenth),
    xTickLabel: (tenth) => centres[tenth]!.toFixed(2),
    width: 720,
    height: 320,
  });
  writeFileSync(values.out, svg + '\n');
  console.log(`wrote ${values.out}`);
}

function splitOnce(text: string, separator: string): [string, string] {
  const at = text.indexOf(separator);
  return at < 0 ? [text, ''] : [text.slice(0, at), text.slice(at + 1)];
}

function round2(x: number): number {
  return Math.round(x * 100) / 100;
}

main();
