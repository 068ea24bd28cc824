// Runs every graphql-http server audit against the URL given as the first argument and
// fails unless all of them are "ok" (MUST, SHOULD and MAY alike).
import { serverAudits } from 'graphql-http';

const url = process.argv[2];
if (!url) {
  console.error('usage: node audit.mjs <graphql url>');
  process.exit(2);
}

const results = [];
for (const audit of serverAudits({ url, fetchFn: fetch })) {
  results.push(await audit.fn());
}

let failed = 0;
for (const result of results) {
  const ok = result.status === 'ok';
  if (!ok) failed += 1;
  const detail = ok ? '' : ` -- ${result.reason}`;
  console.log(`${ok ? 'ok  ' : result.status.padEnd(4)} ${result.id} ${result.name}${detail}`);
}
console.log(`\n${results.length - failed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
