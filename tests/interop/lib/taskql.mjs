// The real taskql binary (the release build), started with the given environment and
// stopped (SIGTERM) when done.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const binary = process.env.TASKQL_BIN ?? path.join(root, 'target/release/taskql');
export const schemaPath = path.join(root, 'schema.graphql');

export async function startTaskql(env) {
  const child = spawn(binary, ['serve'], {
    env: { PATH: process.env.PATH, PORT: '0', LOG_FORMAT: 'json', ...env },
    stdio: ['ignore', 'inherit', 'pipe'],
  });
  const lines = [];
  const addr = await new Promise((resolve, reject) => {
    let buffer = '';
    child.stderr.on('data', (chunk) => {
      buffer += chunk;
      let newline;
      while ((newline = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, newline);
        buffer = buffer.slice(newline + 1);
        lines.push(line);
        if (line.includes('"listening"')) {
          resolve(JSON.parse(line).fields.addr);
        }
      }
    });
    child.on('exit', (code) => reject(new Error(`taskql exited with ${code}:\n${lines.join('\n')}`)));
  });
  return {
    url: `http://${addr}/graphql`,
    origin: `http://${addr}`,
    lines,
    async stop() {
      if (child.exitCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    },
    kill() {
      if (child.exitCode === null) child.kill('SIGKILL');
    },
  };
}
