// The real Better Auth (email/password sign-up + the jwt plugin) as a small Node server on a
// local port: the token issuer taskql trusts in JWKS mode.
import http from 'node:http';

import pg from 'pg';
import { betterAuth } from 'better-auth';
import { getMigrations } from 'better-auth/db/migration';
import { toNodeHandler } from 'better-auth/node';
import { createJwk, jwt } from 'better-auth/plugins/jwt';

const SECRET = 'interop-better-auth-secret-0123456789abcdef';

function options(pool, baseURL, alg) {
  return {
    baseURL,
    secret: SECRET,
    database: pool,
    emailAndPassword: { enabled: true },
    // Only `alg`: a `crv` here would be copied onto keys of other types (a known quirk).
    plugins: [jwt({ jwks: { keyPairConfig: { alg } } })],
    telemetry: { enabled: false },
  };
}

/** Starts Better Auth on `port` (0 for any) signing with `alg`, on the database at `dbUrl`. */
export async function startBetterAuth({ dbUrl, alg = 'EdDSA', port = 0 }) {
  const pool = new pg.Pool({ connectionString: dbUrl, max: 4 });
  const server = http.createServer();
  await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
  const baseURL = `http://127.0.0.1:${server.address().port}`;
  const auth = betterAuth(options(pool, baseURL, alg));
  const { runMigrations } = await getMigrations(options(pool, baseURL, alg));
  await runMigrations();
  const handler = toNodeHandler(auth);
  server.on('request', handler);

  return {
    baseURL,
    jwksUrl: `${baseURL}/api/auth/jwks`,
    port: server.address().port,
    /** Mints a key of `alg` in Better Auth's store, as a key rotation would. */
    async mintKey(newAlg) {
      const context = await auth.$context;
      await createJwk({ context }, { jwks: { keyPairConfig: { alg: newAlg } } });
    },
    async close() {
      await new Promise((resolve) => server.close(resolve));
      server.closeAllConnections?.();
      await pool.end();
    },
  };
}

/** Signs a user up through Better Auth's HTTP API and returns their session cookie. */
export async function signUp(baseURL, { email, password, name }) {
  const response = await fetch(`${baseURL}/api/auth/sign-up/email`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', origin: baseURL },
    body: JSON.stringify({ email, password, name }),
  });
  if (!response.ok) {
    throw new Error(`sign-up failed: ${response.status} ${await response.text()}`);
  }
  const body = await response.json();
  const cookie = response.headers
    .getSetCookie()
    .map((c) => c.split(';')[0])
    .join('; ');
  return { userId: body.user.id, cookie };
}

/** Gets a JWT for a signed-in session from Better Auth's token endpoint. */
export async function jwtFor(baseURL, cookie) {
  const response = await fetch(`${baseURL}/api/auth/token`, { headers: { cookie, origin: baseURL } });
  if (!response.ok) {
    throw new Error(`token failed: ${response.status} ${await response.text()}`);
  }
  return (await response.json()).token;
}

/** The JOSE header of a JWT. */
export function header(token) {
  return JSON.parse(Buffer.from(token.split('.')[0], 'base64url').toString());
}
