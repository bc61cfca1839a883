// `npm run gen:contract`: writes the training activities' contract (lib/training/contract.ts) as
// JSON Schema for the Python worker, trainer/sae_trainer/contract.schema.json.
import { writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { trainingContractJsonSchema } from '../lib/training/contract.ts';

export const CONTRACT_JSON = resolve(import.meta.dirname, '../trainer/sae_trainer/contract.schema.json');

export function contractJsonText(): string {
  return JSON.stringify(trainingContractJsonSchema(), null, 2) + '\n';
}

if (process.argv[1] && resolve(process.argv[1]) === resolve(import.meta.filename)) {
  writeFileSync(CONTRACT_JSON, contractJsonText());
  console.log(`wrote ${CONTRACT_JSON}`);
}
