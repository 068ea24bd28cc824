// Offers requests at a constant rate, whatever the server's speed, and reports latency from
// each request's scheduled start (so a stall is counted for every request it delays, not
// hidden by a client that waited: no coordinated omission).
//
//   node constant_rate.mjs <url> <requests file: token TAB body per line> <rate/s> <seconds>
import { readFileSync } from 'node:fs';

const [url, file, rateArg, secondsArg] = process.argv.slice(2);
const rate = Number(rateArg);
const seconds = Number(secondsArg);
const lines = readFileSync(file, 'utf8').trim().split('\n').map((line) => line.split('\t'));
// The first second opens the client's connections and is not counted.
const warmup = rate;
const total = rate * seconds + warmup;
const latencies = [];
let errors = 0;
const start = performance.now();
const pending = [];
for (let i = 0; i < total; i += 1) {
  const scheduled = start + (i * 1000) / rate;
  // A timer may fire a millisecond late; that lateness is counted against the server, so
  // the figures are an upper bound. (Spinning instead would take a core from the server.)
  const wait = scheduled - performance.now();
  if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
  const [token, body] = lines[Math.floor(Math.random() * lines.length)];
  pending.push(fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body,
  }).then(async (response) => {
    await response.arrayBuffer();
    if (i < warmup) return;
    if (!response.ok) errors += 1;
    latencies.push(performance.now() - scheduled);
  }, () => { errors += 1; }));
}
await Promise.all(pending);
latencies.sort((a, b) => a - b);
const pct = (p) => latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))];
console.log(JSON.stringify({ rate, seconds, requests: latencies.length, errors, p50_ms: pct(0.5), p99_ms: pct(0.99) }));
