// Live-subscription load: many subscribers over graphql-transport-ws, mutations at a steady
// rate, and the delivery latency of every event to every subscriber of its owner (from the
// moment the mutation was sent until the subscriber has the event), plus the server's
// memory per subscriber. Run by scripts/bench-subscriptions, which starts the server.
//
//   node subscribers.mjs <http url> <HS256 secret> <server pid> <users> <per user> <rate/s> <seconds>
import crypto from 'node:crypto';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

// The interop suite's pinned clients: graphql-ws over the ws package.
const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, '../tests/interop/package.json'));
const WebSocket = require('ws');
const { createClient } = require('graphql-ws');

const [url, secret, pid, usersArg, perUserArg, rateArg, secondsArg] = process.argv.slice(2);
const users = Number(usersArg);
const perUser = Number(perUserArg);
const rate = Number(rateArg);
const seconds = Number(secondsArg);

const b64 = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
function token(sub) {
  const now = Math.floor(Date.now() / 1000);
  const input = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64({ sub, email: `${sub}@example.com`, iat: now, exp: now + 3600 })}`;
  return `${input}.${crypto.createHmac('sha256', secret).update(input).digest('base64url')}`;
}
const rssKiB = () => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);

const tokens = Array.from({ length: users }, (_, i) => token(`live-user-${i}`));
// Every user exists before anyone subscribes (the first request creates the user).
for (const t of tokens) {
  await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${t}` }, body: '{"query":"{ me { id } }"}' });
}
const before = rssKiB();

const sentAt = new Map();
const latencies = [];
let live = 0;
const clients = [];
await new Promise((allLive) => {
  for (let u = 0; u < users; u += 1) {
    for (let s = 0; s < perUser; s += 1) {
      // After `subscribe`, a ping: its pong means the subscription is registered.
      class Traced extends WebSocket {
        send(data, ...rest) {
          super.send(data, ...rest);
          if (JSON.parse(data).type !== 'subscribe') return;
          const onPong = (message) => {
            if (JSON.parse(String(message)).type !== 'pong') return;
            this.off('message', onPong);
            live += 1;
            if (live === users * perUser) allLive();
          };
          this.on('message', onPong);
          super.send(JSON.stringify({ type: 'ping' }));
        }
      }
      const client = createClient({ url: url.replace(/^http/, 'ws'), webSocketImpl: Traced, connectionParams: { authorization: `Bearer ${tokens[u]}` } });
      client.subscribe({ query: 'subscription { taskChanged { kind taskId at task { id title completed updatedAt } } }' }, {
        next(result) {
          const title = result.data?.taskChanged?.task?.title;
          const sent = sentAt.get(title);
          if (sent !== undefined) latencies.push(performance.now() - sent);
        },
        error(err) { console.error('subscription error', err); },
        complete() {},
      });
      clients.push(client);
    }
  }
});
const after = rssKiB();

// Mutations at a constant rate, round robin over the users.
const total = rate * seconds;
const start = performance.now();
const pending = [];
for (let i = 0; i < total; i += 1) {
  const wait = start + (i * 1000) / rate - performance.now();
  if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
  const title = `live ${i}`;
  sentAt.set(title, performance.now());
  pending.push(fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${tokens[i % users]}` },
    body: JSON.stringify({ query: 'mutation($t: String!) { createTask(input: { title: $t }) { id } }', variables: { t: title } }),
  }).then((r) => r.text()));
}
await Promise.all(pending);
const expected = total * perUser;
const deadline = performance.now() + 10000;
while (latencies.length < expected && performance.now() < deadline) {
  await new Promise((resolve) => setTimeout(resolve, 50));
}
latencies.sort((a, b) => a - b);
const pct = (p) => latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))];
console.log(JSON.stringify({
  subscribers: users * perUser,
  users,
  mutations_per_s: rate,
  seconds,
  deliveries: latencies.length,
  expected,
  p50_ms: Number(pct(50).toFixed(1)),
  p99_ms: Number(pct(99).toFixed(1)),
  max_ms: Number(latencies[latencies.length - 1].toFixed(1)),
  rss_before_mib: Number((before / 1024).toFixed(1)),
  rss_with_subscribers_mib: Number((after / 1024).toFixed(1)),
  kib_per_subscriber: Number(((after - before) / (users * perUser)).toFixed(1)),
}));
for (const client of clients) client.terminate();
process.exit(0);
