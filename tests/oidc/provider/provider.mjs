// A real OpenID Connect provider (panva/oidc-provider, OpenID certified) for jitgate's
// sign-in tests and `jitgate demo --oidc`. Not for production: accounts and keys come
// from a JSON file the caller writes, state lives in memory.
//
//   node provider.mjs CONFIG.json
//
// CONFIG.json: {"host": "127.0.0.1", "port": 0,
//               "accounts": {"alice": {"password": "...", "email": "...", "email_verified": true,
//                                      "groups": ["sre"], "otp": "123456"}},
//               "clients": [ ...oidc-provider client metadata... ],
//               "jwks": {"keys": [ ...private JWKs... ]},        // optional: generated when absent
//               "id_token_ttl": 3600}
//
// Prints one JSON line {"issuer": "http://127.0.0.1:PORT"} on stdout once it listens.
// SIGHUP re-reads CONFIG.json's `jwks` and serves with it (key rotation): the in-memory
// store is shared by every Provider instance, so sessions and codes survive the swap.
//
// The login form (GET/POST /interaction/UID) takes `login`, `password` and an optional
// `otp`: a right otp signs in with amr ["pwd", "otp", "mfa"], else ["pwd"]. Consent is
// given at once for what the client asked (a test client is first-party).
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { generateKeyPairSync } from 'node:crypto';
import Provider from 'oidc-provider';

const configPath = process.argv[2];
if (!configPath) {
  console.error('usage: node provider.mjs CONFIG.json');
  process.exit(2);
}
const readConfig = () => JSON.parse(readFileSync(configPath, 'utf8'));
const config = readConfig();
const accounts = config.accounts || {};

function generatedJwks() {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwk = privateKey.export({ format: 'jwk' });
  return { keys: [{ ...jwk, kid: `gen-${Date.now()}`, use: 'sig', alg: 'ES256' }] };
}

const escape = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function makeProvider(issuer, jwks) {
  const provider = new Provider(issuer, {
    clients: config.clients,
    jwks,
    cookies: { keys: ['jitgate-test-provider-cookie-key'] },
    scopes: ['openid', 'email', 'profile', 'groups', 'offline_access'],
    claims: {
      openid: ['sub', 'amr', 'acr'],  // amr in the ID token: step-up rules read it
      email: ['email', 'email_verified'],
      profile: ['preferred_username', 'name'],
      groups: ['groups'],
    },
    // Scope claims in the ID token itself: jitgate reads them from there.
    conformIdTokenClaims: false,
    features: {
      devInteractions: { enabled: false },
      deviceFlow: { enabled: true },
    },
    pkce: { required: () => true },
    ttl: { IdToken: config.id_token_ttl || 3600 },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    async findAccount(ctx, id) {
      const account = accounts[id];
      if (!account) return undefined;
      return {
        accountId: id,
        async claims() {
          return {
            sub: id,
            preferred_username: id,
            name: account.name || id,
            email: account.email,
            email_verified: account.email_verified !== false,
            groups: account.groups || [],
          };
        },
      };
    },
  });
  provider.proxy = false;
  return provider;
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    let data = '';
    req.on('data', (chunk) => {
      data += chunk;
      if (data.length > 64 * 1024) reject(new Error('body too large'));
    });
    req.on('end', () => resolve(new URLSearchParams(data)));
    req.on('error', reject);
  });
}

function loginPage(uid, error) {
  return `<!doctype html><html><body><h1>Sign in (jitgate test provider)</h1>
${error ? `<p class="error">${escape(error)}</p>` : ''}
<form method="post" action="/interaction/${escape(uid)}/login">
<input name="login" placeholder="user name"><input name="password" type="password">
<input name="otp" placeholder="one-time code (optional)"><button type="submit">Sign in</button>
</form></body></html>`;
}

let current;

async function interaction(req, res, url) {
  const provider = current;
  const parts = url.pathname.split('/').filter(Boolean); // ['interaction', uid, 'login'?]
  const details = await provider.interactionDetails(req, res);
  const { prompt, params } = details;
  if (prompt.name === 'login') {
    if (req.method === 'GET') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(loginPage(details.uid));
      return;
    }
    if (req.method === 'POST' && parts[2] === 'login') {
      const form = await readBody(req);
      const login = form.get('login') || '';
      const account = accounts[login];
      if (!account || account.password !== form.get('password')) {
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
        res.end(loginPage(details.uid, 'wrong user name or password'));
        return;
      }
      const mfa = account.otp && form.get('otp') === account.otp;
      await provider.interactionFinished(req, res, {
        login: { accountId: login, amr: mfa ? ['pwd', 'otp', 'mfa'] : ['pwd'] },
      }, { mergeWithLastSubmission: false });
      return;
    }
  }
  if (prompt.name === 'consent') {
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: details.session.accountId, clientId: params.client_id });
    if (prompt.details.missingOIDCScope) grant.addOIDCScope(prompt.details.missingOIDCScope.join(' '));
    if (prompt.details.missingOIDCClaims) grant.addOIDCClaims(prompt.details.missingOIDCClaims);
    const grantId = await grant.save();
    await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
    return;
  }
  res.writeHead(400, { 'content-type': 'text/plain' });
  res.end(`unexpected interaction prompt ${prompt.name}`);
}

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, 'http://localhost');
  try {
    if (url.pathname.startsWith('/interaction/')) {
      await interaction(req, res, url);
      return;
    }
    current.callback()(req, res);
  } catch (err) {
    if (!res.headersSent) {
      res.writeHead(500, { 'content-type': 'text/plain' });
    }
    res.end(`provider error: ${err.message}`);
  }
});

server.listen(config.port || 0, config.host || '127.0.0.1', () => {
  const { address, port } = server.address();
  const issuer = `http://${address}:${port}`;
  current = makeProvider(issuer, config.jwks || generatedJwks());
  process.on('SIGHUP', () => {
    // Rotation: serve with the keys now in the file (the first key signs).
    current = makeProvider(issuer, readConfig().jwks || generatedJwks());
    process.stdout.write(`${JSON.stringify({ rotated: true })}\n`);
  });
  process.stdout.write(`${JSON.stringify({ issuer })}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
