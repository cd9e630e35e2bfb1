// What the centrifuge-js suites share: real Herald servers (started by the Python
// harness's node/tests/py/sdkcluster.py, so ports, settings and clean-up are the pytest
// suite's), HS256 tokens, the server API, the official SDK pointed at a server, and
// bounded waits. Nothing here changes the SDK: it is imported as published.

import { spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import WebSocket from 'ws';
import { Centrifuge } from 'centrifuge';
import { Centrifuge as ProtobufCentrifuge } from 'centrifuge/build/protobuf';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../..');
/** Default timeout of one wait, ms (HERALD_TEST_TIMEOUT is seconds, as in pytest). */
export const T = 1000 * Number(process.env.HERALD_TEST_TIMEOUT || 10);

const PYTHON = process.env.HERALD_PY || path.join(REPO_ROOT, 'target/py-venv/bin/python');
const LAUNCHER = path.join(REPO_ROOT, 'node/tests/py/sdkcluster.py');

/**
 * Starts `single` (one node, embedded broker) or `cluster` (NATS + 3 nodes + router).
 * Resolves to the launcher's description plus `command(obj)` and `stop()`. The servers
 * stop when stop() is called or when this process exits (the launcher's stdin closes).
 */
export async function startServers(mode, ...settings) {
  const env = {
    HERALD_NODE_BIN: path.join(REPO_ROOT, 'target/debug/herald-node'),
    HERALD_ROUTER_BIN: path.join(REPO_ROOT, 'target/debug/herald-router'),
    ...process.env,
  };
  const child = spawn(PYTHON, [LAUNCHER, mode, ...settings], { env, stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout });
  const waiting = [];
  const queued = [];
  lines.on('line', (line) => {
    const msg = JSON.parse(line);
    const w = waiting.shift();
    if (w) w(msg);
    else queued.push(msg);
  });
  let exited = null;
  child.on('exit', (code) => {
    exited = code;
    for (const w of waiting.splice(0)) w({ ok: false, error: `launcher exited with ${code}` });
  });
  const next = (timeout) =>
    new Promise((resolve, reject) => {
      if (queued.length) return resolve(queued.shift());
      if (exited !== null) return reject(new Error(`launcher exited with ${exited}`));
      const timer = setTimeout(() => reject(new Error(`launcher silent for ${timeout} ms`)), timeout);
      waiting.push((msg) => {
        clearTimeout(timer);
        resolve(msg);
      });
    });
  let info;
  try {
    info = await next(6 * T);
  } catch (e) {
    child.kill('SIGTERM');
    throw e;
  }
  if (info.ok === false) throw new Error(info.error);
  return {
    ...info,
    async command(cmd, timeout = 6 * T) {
      child.stdin.write(JSON.stringify(cmd) + '\n');
      const answer = await next(timeout);
      if (!answer.ok) throw new Error(`${JSON.stringify(cmd)}: ${answer.error}`);
      return answer;
    },
    async stop() {
      if (exited !== null) return;
      const gone = new Promise((resolve) => child.on('exit', resolve));
      child.stdin.end();
      const timer = setTimeout(() => child.kill('SIGKILL'), 3 * T);
      await gone;
      clearTimeout(timer);
    },
  };
}

// -- tokens ---------------------------------------------------------------------------

const b64 = (obj) => Buffer.from(JSON.stringify(obj)).toString('base64url');

/** An HS256 JWT with `claims`; `expIn` seconds from now (null: no `exp`). */
export function jwt(secret, claims, expIn = 3600) {
  const body = { ...claims };
  if (expIn !== null) body.exp = Math.floor(Date.now() / 1000) + expIn;
  const unsigned = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(body)}`;
  return `${unsigned}.${createHmac('sha256', secret).update(unsigned).digest('base64url')}`;
}

export const connToken = (s, user, expIn = 3600, extra = {}) => jwt(s.secret, { sub: user, ...extra }, expIn);
export const subToken = (s, user, channel, expIn = 3600) => jwt(s.secret, { sub: user, channel }, expIn);

// -- server API -----------------------------------------------------------------------

/** POST <api>/<method>; resolves to `result`, throws on an error reply. */
export async function api(s, method, body, base = s.api) {
  const r = await fetch(`${base}/${method}`, {
    method: 'POST',
    headers: { 'X-API-Key': s.api_key, 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(T),
  });
  const out = await r.json();
  if (r.status !== 200 || out.error) throw new Error(`api ${method}: ${r.status} ${JSON.stringify(out)}`);
  return out.result;
}

// -- the SDK --------------------------------------------------------------------------

/** Records every event an SDK emitter emits, in order. */
export class Recorder {
  constructor(emitter, kinds) {
    this.events = [];
    for (const kind of kinds) emitter.on(kind, (ctx) => this.events.push({ kind, ctx }));
  }
  of(kind) {
    return this.events.filter((e) => e.kind === kind).map((e) => e.ctx);
  }
  wait(pred, what, timeout = T) {
    return waitFor(pred, what, timeout, () => JSON.stringify(this.events.slice(-8)));
  }
}

const CLIENT_EVENTS = ['connecting', 'connected', 'disconnected', 'error', 'subscribed', 'subscribing',
  'unsubscribed', 'publication', 'join', 'leave', 'message'];
const SUB_EVENTS = ['subscribing', 'subscribed', 'unsubscribed', 'publication', 'join', 'leave', 'error'];

/** Opens official SDK clients and disconnects every one of them in `closeAll()`. */
export class Clients {
  /** Clients of `encoding`: 'json' (the SDK's default build) or 'protobuf' (its
   * `centrifuge/build/protobuf` build, which asks for the `centrifuge-protobuf`
   * subprotocol and sends binary frames). */
  constructor(s, encoding = 'json') {
    this.s = s;
    this.open = [];
    this.protobuf = encoding === 'protobuf';
  }

  /** What to hand the SDK's publish() for the JSON value `value`: itself in JSON, its
   * JSON text as bytes in Protobuf (what a JSON publisher's data reaches a Protobuf
   * client as, too). */
  enc(value) {
    return this.protobuf ? new TextEncoder().encode(JSON.stringify(value)) : value;
  }

  /** The JSON value of a payload the SDK handed us (data, connInfo, ...). */
  dec(data) {
    if (this.protobuf && data instanceof Uint8Array) {
      return data.length ? JSON.parse(new TextDecoder().decode(data)) : undefined;
    }
    return data;
  }

  /** A Centrifuge client with `log` (a Recorder); `opts` go to the SDK unchanged. */
  client(opts = {}, url = this.s.ws) {
    const Sdk = this.protobuf ? ProtobufCentrifuge : Centrifuge;
    const c = new Sdk(url, { websocket: WebSocket, timeout: T, ...opts });
    c.log = new Recorder(c, CLIENT_EVENTS);
    this.open.push(c);
    return c;
  }

  /** A client connected as `user` (token unless opts say otherwise), ready. */
  async connected(user, opts = {}, url) {
    const c = this.client({ token: connToken(this.s, user), ...opts }, url);
    c.connect();
    await c.ready(T);
    return c;
  }

  closeAll() {
    for (const c of this.open.splice(0)) c.disconnect();
  }
}

/** A subscription with `log`, subscribed and ready. */
export async function subscribed(client, channel, opts = {}) {
  const sub = client.newSubscription(channel, opts);
  sub.log = new Recorder(sub, SUB_EVENTS);
  sub.subscribe();
  await sub.ready(T);
  return sub;
}

/** Polls `pred` every 10 ms until it holds; fails after `timeout` ms naming `what`. */
export async function waitFor(pred, what, timeout = T, detail = () => '') {
  const deadline = Date.now() + timeout;
  for (;;) {
    if (pred()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what}; ${detail()}`);
    await sleep(10);
  }
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A channel name no other test uses. */
let seq = 0;
export const unique = (prefix) => `${prefix}-${process.pid}-${++seq}`;
