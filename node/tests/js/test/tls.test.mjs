// centrifuge-js over wss:// through herald-router terminating TLS, in front of one
// herald-node: the SDK connects, subscribes and receives a publication through the TLS
// tunnel; a client that does not trust the router's certificate never connects. The
// certificates come from the system's openssl (a CA of the test's own and a certificate
// for localhost it signs), and the SDK's WebSocket is `ws` given that CA, as an
// application with a private CA would do.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import WebSocket from 'ws';
import { Centrifuge } from 'centrifuge';
import { REPO_ROOT, Recorder, T, api, connToken, sleep, startServers, subscribed, unique, waitFor } from '../lib/herald.mjs';

let s;
let router;
let url;
let ca;

function makeCertificates(dir) {
  const ssl = (...args) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  ssl('req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=herald js tls test CA');
  ssl('req', ...ec, '-keyout', 'key.pem', '-out', 'srv.csr', '-subj', '/CN=localhost');
  writeFileSync(path.join(dir, 'ext.cnf'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
  ssl('x509', '-req', '-in', 'srv.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial',
    '-out', 'cert.pem', '-days', '2', '-extfile', 'ext.cnf');
  return readFileSync(path.join(dir, 'ca.pem'));
}

before(async () => {
  s = await startServers('single');
  const dir = mkdtempSync(path.join(tmpdir(), 'herald-js-tls-'));
  ca = makeCertificates(dir);
  const node = new URL(s.ws);
  router = spawn(path.join(REPO_ROOT, 'target/debug/herald-router'), [], {
    env: {
      PATH: process.env.PATH,
      RUST_LOG: 'warn',
      HERALD_ROUTER_LISTEN: '127.0.0.1:0',
      HERALD_ROUTER_NODES: node.host,
      HERALD_ROUTER_HEALTH_INTERVAL: '0.2',
      HERALD_ROUTER_TLS_CERT: path.join(dir, 'cert.pem'),
      HERALD_ROUTER_TLS_KEY: path.join(dir, 'key.pem'),
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const addr = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('herald-router printed no address')), T);
    createInterface({ input: router.stdout }).on('line', (line) => {
      const m = line.match(/listening on (\S+)/);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    router.on('exit', (code) => reject(new Error(`herald-router exited with ${code}`)));
  });
  url = `wss://localhost:${addr.split(':').pop()}/connection/websocket`;
  // The router takes upgrades once its health check has seen the node.
  await sleep(600);
});

after(async () => {
  router?.kill('SIGKILL');
  await s?.stop();
});

/** `ws` trusting `caPem` (undefined: the system's roots only). */
const wsTrusting = (caPem) => class extends WebSocket {
  constructor(address, protocols) {
    super(address, protocols, caPem ? { ca: caPem } : {});
  }
};

test('centrifuge-js over wss:// through the TLS router subscribes and receives', async () => {
  const c = new Centrifuge(url, { websocket: wsTrusting(ca), token: connToken(s, 'tls-js'), timeout: T });
  c.log = new Recorder(c, ['connected', 'error', 'disconnected']);
  try {
    c.connect();
    await c.ready(T);
    assert.equal(c.log.of('connected')[0].transport, 'websocket');
    const channel = unique('tls');
    const sub = await subscribed(c, channel);
    await api(s, 'publish', { channel, data: { over: 'tls' } });
    await sub.log.wait(() => sub.log.of('publication').length === 1, 'the publication over wss');
    assert.deepEqual(sub.log.of('publication')[0].data, { over: 'tls' });
  } finally {
    c.disconnect();
  }
});

test('a client that does not trust the certificate never connects, and the router serves on', async () => {
  const c = new Centrifuge(url, {
    websocket: wsTrusting(undefined), token: connToken(s, 'tls-stranger'), timeout: T,
    minReconnectDelay: 100, maxReconnectDelay: 200,
  });
  c.log = new Recorder(c, ['connected', 'error']);
  try {
    c.connect();
    await waitFor(() => c.log.of('error').length > 0, 'a transport error', T);
    assert.deepEqual(c.log.of('connected'), []);
  } finally {
    c.disconnect();
  }
  const ok = new Centrifuge(url, { websocket: wsTrusting(ca), token: connToken(s, 'tls-after'), timeout: T });
  try {
    ok.connect();
    await ok.ready(T);
  } finally {
    ok.disconnect();
  }
});
