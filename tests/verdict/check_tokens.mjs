// Runs the README's Node verdict verifier (jose), exactly as written, on the cases a test sends.
//
// The verifier is the block after `<!-- verifier:node -->` in README.md. It is written next to
// this runner's `node_modules` (the directory given as the first argument, where
// `scripts/test.sh` installed `jose`) and imported from there. Cases come as a JSON list on
// stdin ({name, token, jwks_url, body_b64?, binding_b64?}); the answer is a JSON list on stdout.

import { readFileSync, writeFileSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const dir = process.argv[2];
const readme = readFileSync(join(dirname(fileURLToPath(import.meta.url)), "../../README.md"), "utf8");
const found = /<!-- verifier:node -->\s*```js\n([\s\S]*?)```/.exec(readme);
if (!found) {
  console.error("README.md has no `<!-- verifier:node -->` block");
  process.exit(2);
}
const cases = JSON.parse(readFileSync(0, "utf8"));
const results = [];
for (const c of cases) {
  // One module per JWKS URL: the block reads it from the environment when it is loaded.
  process.env.OZ_PROXY_JWKS_URL = c.jwks_url;
  const file = join(dir, `verify_verdict_${results.length}.mjs`);
  writeFileSync(file, found[1]);
  const { verifyVerdict } = await import(pathToFileURL(file).href);
  const b = (x) => (x === undefined ? undefined : Buffer.from(x, "base64"));
  try {
    const claims = await verifyVerdict(c.token, b(c.body_b64), b(c.binding_b64));
    results.push({ name: c.name, ok: true, claims });
  } catch (e) {
    results.push({ name: c.name, ok: false, error: `${e.name}: ${e.message}` });
  }
}
process.stdout.write(JSON.stringify(results));
