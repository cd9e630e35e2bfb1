// centrifuge-js against one herald-node whose connect and rpc are answered by a real
// HTTP backend (node:http, started here on a free port) through the backend proxy:
// the browser-style session cookie reaches the backend, no token is involved.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import WebSocket from 'ws';
import { Clients, T, startServers } from '../lib/herald.mjs';

const COOKIE = 'session=js-cookie-value';

/** A backend recording each request (path, JSON body, headers) and answering it. */
function startBackend() {
  const seen = [];
  const server = http.createServer((req, res) => {
    let raw = '';
    req.on('data', (c) => (raw += c));
    req.on('end', () => {
      const body = JSON.parse(raw);
      seen.push({ path: req.url, body, headers: req.headers });
      let answer;
      if (req.url === '/connect') {
        answer = req.headers.cookie === COOKIE
          ? { result: { user: 'cookie-user', data: { greeting: 'hi' } } }
          : { disconnect: { code: 4501, reason: 'no session' } };
      } else if (req.url === '/rpc') {
        answer = body.method === 'fail'
          ? { error: { code: 4040, message: 'no such thing' } }
          : { result: { data: { method: body.method, got: body.data, user: body.user } } };
      }
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify(answer));
    });
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => resolve({ server, seen, base: `http://127.0.0.1:${server.address().port}` }));
  });
}

/** `ws` with a Cookie header on the upgrade, as a browser sends its session cookie. */
function withCookie(cookie) {
  return class extends WebSocket {
    constructor(url, protocols) {
      super(url, protocols, { headers: { Cookie: cookie } });
    }
  };
}

let backend;
let s;
let clients;
before(async () => {
  backend = await startBackend();
  s = await startServers(
    'single',
    `HERALD_PROXY_CONNECT_ENDPOINT=${backend.base}/connect`,
    `HERALD_PROXY_RPC_ENDPOINT=${backend.base}/rpc`,
    'HERALD_PROXY_HTTP_HEADERS=Cookie',
  );
  clients = new Clients(s);
});
after(async () => {
  clients?.closeAll();
  await s?.stop();
  backend?.server.close();
});

test('a session cookie connects through the connect proxy, and rpc reaches the backend', async () => {
  const c = clients.client({ websocket: withCookie(COOKIE), data: { app: 'js' } });
  c.connect();
  await c.ready(T);
  const [ctx] = c.log.of('connected');
  assert.deepEqual(ctx.data, { greeting: 'hi' });
  const connect = backend.seen.find((r) => r.path === '/connect');
  assert.equal(connect.headers.cookie, COOKIE);
  assert.equal(connect.body.client, ctx.client);
  assert.deepEqual(connect.body.data, { app: 'js' });
  assert.equal(connect.body.transport, 'websocket');

  const res = await c.rpc('sum', { a: 2 });
  assert.deepEqual(res.data, { method: 'sum', got: { a: 2 }, user: 'cookie-user' });
  const rpc = backend.seen.find((r) => r.path === '/rpc');
  assert.equal(rpc.headers.cookie, COOKIE, 'the cookie stays with the connection for later proxies');
  await assert.rejects(c.rpc('fail', {}), (e) => e.code === 4040 && e.message === 'no such thing');
  assert.equal(c.state, 'connected');
});

test('without the cookie the backend answers a disconnect and the SDK stops', async () => {
  const c = clients.client({ websocket: withCookie('session=wrong') });
  c.connect();
  await c.log.wait(() => c.log.of('disconnected').length === 1, 'the disconnect');
  const [d] = c.log.of('disconnected');
  assert.equal(d.code, 4501);
  assert.equal(d.reason, 'no session');
  assert.equal(c.state, 'disconnected');
});
