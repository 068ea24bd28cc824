// Throwaway databases on the machine's PostgreSQL (TEST_DATABASE_URL, default
// postgres://postgres@127.0.0.1:5432), one per run, dropped afterwards.
import pg from 'pg';

export const serverUrl = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432';

async function admin(statement) {
  const client = new pg.Client({ connectionString: `${serverUrl}/postgres` });
  await client.connect();
  try {
    await client.query(statement);
  } finally {
    await client.end();
  }
}

export async function createDatabase(prefix) {
  const name = `${prefix}_${process.pid}_${Date.now()}`;
  await admin(`create database ${name}`);
  return { name, url: `${serverUrl}/${name}` };
}

export async function dropDatabase(name) {
  await admin(`drop database if exists ${name} with (force)`);
}
