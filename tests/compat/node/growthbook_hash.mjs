// Reference buckets from GrowthBook's own JS SDK: reads [{seed, value, weights}] as JSON on stdin,
// prints [{bucket, variation}] — the SDK's `hash(seed, value, 2)` and chosen variation — on stdout.
import { GrowthBook } from "@growthbook/growthbook";

let input = "";
for await (const chunk of process.stdin) input += chunk;
const out = JSON.parse(input).map(({ seed, value, weights }) => {
  const gb = new GrowthBook({ attributes: { id: value } });
  const r = gb.run({ key: seed, seed, variations: weights.map((_, i) => i), weights, hashVersion: 2 });
  return { bucket: r.inExperiment ? r.bucket : null, variation: r.inExperiment ? r.variationId : -1 };
});
process.stdout.write(JSON.stringify(out));
