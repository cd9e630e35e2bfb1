// Delta compression (fossil), tags filters and cache recovery mode, through the
// official centrifuge-js SDK, against one node (bandwidth-single.test.mjs) or the
// 3-node cluster (bandwidth-cluster.test.mjs). The namespaces come from a TOML file
// all nodes read (HERALD_CONFIG):
//   delta:  allowed_delta_types = ["fossil"]
//   dpub:   allowed_delta_types = ["fossil"], delta_publish = true
//   cache:  force_recovery_mode = "cache", allowed_delta_types = ["fossil"]
//   tags:   allow_tags_filter = true
// The default namespace allows none of them.

import { after, afterEach, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import WebSocket from 'ws';
import { Centrifuge } from 'centrifuge';
import {
  Clients, REPO_ROOT, T, api, connToken, sleep, startServers, subscribed, unique,
} from './herald.mjs';

const CONFIG = `
[namespaces.delta]
allowed_delta_types = ["fossil"]

[namespaces.dpub]
allowed_delta_types = ["fossil"]
delta_publish = true

[namespaces.cache]
force_recovery_mode = "cache"
allowed_delta_types = ["fossil"]

[namespaces.tags]
allow_tags_filter = true
`;

/**
 * `pubs`, after checking that they were emitted in stream order (offsets strictly
 * increasing): the node writes a channel's publications in order, and centrifuge-js
 * 5.8.0 emits them in the order they arrive. (5.7.4 could emit the publications of two
 * WebSocket messages that arrived in one read out of order, and break a delta chain:
 * the "one read" test below.)
 */
export function inStreamOrder(pubs) {
  const offsets = pubs.map((p) => p.offset);
  assert.ok(offsets.every((o, i) => i === 0 || o > offsets[i - 1]), `emitted offsets ${offsets}`);
  return pubs;
}

/**
 * Publishes each group of `groups` as one sequential API batch, in delta mode, from a
 * child process, and blocks this process until all of it has been delivered (the child
 * waits a moment after the last reply). A batch's publications tend to leave the node
 * coalesced in one WebSocket message; the next batch's in another.
 */
function publishBlocking(s, channel, groups) {
  const script = `
    const [base, key, channel, groups] = JSON.parse(process.argv[1]);
    for (const datas of groups) {
      const commands = datas.map((data) => ({ publish: { channel, data, delta: true } }));
      const r = await fetch(base + '/batch', {
        method: 'POST',
        headers: { 'X-API-Key': key, 'Content-Type': 'application/json' },
        body: JSON.stringify({ commands }),
      });
      const out = await r.json();
      if (r.status !== 200 || out.error || out.replies.some((x) => x.error)) throw new Error(JSON.stringify(out));
    }
    await new Promise((r) => setTimeout(r, 500));
  `;
  execFileSync(process.execPath, ['--input-type=module', '-e', script, JSON.stringify([s.api, s.api_key, channel, groups])], {
    stdio: ['ignore', 'inherit', 'inherit'],
    timeout: T,
  });
}

/** A 2 KiB state document in which one field changes. */
export function state(n) {
  const rows = {};
  for (let i = 0; i < 40; i++) rows[`row${String(i).padStart(2, '0')}`] = { bid: 1000 + i, ask: 1010 + i };
  return { seq: n, ...rows };
}

/** The SDK's own fossil decoder (its JSON codec), as a subscription uses it. */
function sdkDecode(sourceText, deltaText) {
  const codec = new Centrifuge('ws://127.0.0.1:1/unused', { websocket: WebSocket })._codec;
  const prev = new TextEncoder().encode(sourceText);
  return codec.applyDeltaIfNeeded({ data: deltaText, delta: true }, prev).newData;
}

export function defineBandwidthSuite(mode) {
  let s;
  let clients;
  let dir;
  const suite = {};
  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'herald-bw-'));
    const cfg = path.join(dir, 'herald.toml');
    writeFileSync(cfg, CONFIG);
    s = await startServers(mode, `HERALD_CONFIG=${cfg}`);
    clients = new Clients(s);
    suite.servers = s;
    suite.clients = clients;
  });
  afterEach(() => clients.closeAll());
  after(async () => {
    clients?.closeAll();
    await s?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('the node\'s fossil deltas decode with the SDK\'s decoder (shared vectors)', () => {
    const file = path.join(REPO_ROOT, 'shared/src/protocol/fossil_vectors.json');
    const vectors = JSON.parse(readFileSync(file, 'utf8'));
    assert.ok(vectors.length >= 4);
    for (const v of vectors) {
      assert.deepEqual(sdkDecode(v.source, v.delta), JSON.parse(v.target));
    }
  });

  test('delta: fossil, many publications: the first in full, then deltas, every one right', async () => {
    const c = await clients.connected('alice');
    const channel = unique('delta:board');
    const sub = await subscribed(c, channel, { delta: 'fossil' });
    const N = 40;
    for (let n = 1; n <= N; n++) await api(s, 'publish', { channel, data: state(n), delta: true });
    await sub.log.wait(() => sub.log.of('publication').length === N, `${N} publications`);
    assert.deepEqual(inStreamOrder(sub.log.of('publication')).map((p) => p.data), Array.from({ length: N }, (_, i) => state(i + 1)));
    const stats = sub.deltaStats();
    assert.equal(stats.numFullPayloads, 1, JSON.stringify(stats));
    assert.equal(stats.numDeltaPayloads, N - 1, JSON.stringify(stats));
    assert.ok(stats.bytesReceived * 10 < stats.bytesDecoded, JSON.stringify(stats));
    assert.deepEqual(sub.log.of('error'), []);
  });

  test('delta: publications that reach the client in one read are emitted in wire order and all decode', async () => {
    const c = await clients.connected('alice');
    const channel = unique('delta:burst');
    const sub = await subscribed(c, channel, { delta: 'fossil' });
    await api(s, 'publish', { channel, data: state(1), delta: true });
    await sub.log.wait(() => sub.log.of('publication').length === 1, 'the first');
    // The next ones are published by a child process while this one's event loop is
    // blocked in execFileSync, so their WebSocket messages (a batch's publications
    // coalesced in one, the next batch's in the next) wait in the socket buffer and
    // reach the SDK in one read, as they do behind a busy router or from a busy node.
    // centrifuge-js 5.7.4 dispatched the second message while the first was still
    // being dispatched: a delta applied to the wrong base, "bad checksum", and its
    // dispatch stopped for good.
    const N = 12;
    const rest = Array.from({ length: N - 1 }, (_, i) => state(i + 2));
    publishBlocking(s, channel, [rest.slice(0, 4), rest.slice(4, 8), rest.slice(8)]);
    await sub.log.wait(() => sub.log.of('publication').length === N, `${N} publications`);
    const pubs = inStreamOrder(sub.log.of('publication'));
    assert.deepEqual(pubs.map((p) => p.data), Array.from({ length: N }, (_, i) => state(i + 1)));
    assert.equal(sub.deltaStats().numDeltaPayloads, N - 1, JSON.stringify(sub.deltaStats()));
    assert.deepEqual(sub.log.of('error'), []);
  });

  test('delta subscribers and ordinary ones on one channel both get every publication right', async () => {
    const a = await clients.connected('alice');
    const b = await clients.connected('bob');
    const channel = unique('delta:mixed');
    const d = await subscribed(a, channel, { delta: 'fossil' });
    const p = await subscribed(b, channel);
    for (let n = 1; n <= 10; n++) await api(s, 'publish', { channel, data: state(n), delta: true });
    // Not published in delta mode: full for everyone.
    await api(s, 'publish', { channel, data: state(11) });
    await api(s, 'publish', { channel, data: state(12), delta: true });
    for (const sub of [d, p]) await sub.log.wait(() => sub.log.of('publication').length === 12, '12 publications');
    const want = Array.from({ length: 12 }, (_, i) => state(i + 1));
    assert.deepEqual(inStreamOrder(d.log.of('publication')).map((x) => x.data), want);
    assert.deepEqual(inStreamOrder(p.log.of('publication')).map((x) => x.data), want);
    assert.equal(d.deltaStats().numDeltaPayloads, 10, JSON.stringify(d.deltaStats()));
  });

  test('delta_publish in the namespace: deltas without the API flag', async () => {
    const c = await clients.connected('alice');
    const channel = unique('dpub:board');
    const sub = await subscribed(c, channel, { delta: 'fossil' });
    for (let n = 1; n <= 5; n++) await api(s, 'publish', { channel, data: state(n) });
    await sub.log.wait(() => sub.log.of('publication').length === 5, '5 publications');
    assert.deepEqual(inStreamOrder(sub.log.of('publication')).map((p) => p.data.seq), [1, 2, 3, 4, 5]);
    assert.equal(sub.deltaStats().numDeltaPayloads, 4);
  });

  test('delta with recovery: recovered in full, the first live one after it in full, then deltas', async () => {
    const user = unique('drec');
    const c = await clients.connected(user, { minReconnectDelay: 1500, maxReconnectDelay: 1600 });
    const channel = unique('delta:rec');
    const sub = await subscribed(c, channel, { delta: 'fossil', recoverable: true });
    // Back to back: the SDK resubscribes from the offset of the publication it emitted
    // last, which is the newest only if it emits them in order.
    for (let n = 1; n <= 3; n++) await api(s, 'publish', { channel, data: state(n), delta: true });
    await sub.log.wait(() => sub.log.of('publication').length === 3, 'live 3');
    await api(s, 'disconnect', { user });
    await c.log.wait(() => c.log.of('connecting').length === 2, 'connecting after the disconnect');
    for (let n = 4; n <= 6; n++) await api(s, 'publish', { channel, data: state(n), delta: true });
    await sub.log.wait(() => sub.log.of('subscribed').length === 2, 'resubscribed', 2 * T);
    assert.equal(sub.log.of('subscribed')[1].recovered, true);
    const before = sub.deltaStats();
    for (let n = 7; n <= 10; n++) await api(s, 'publish', { channel, data: state(n), delta: true });
    await sub.log.wait(() => sub.log.of('publication').length >= 10, '10 publications');
    await sleep(200);
    // Every offset once (in a cluster they are the namespace stream's sequences, so not
    // 1..10): a duplicate shows here by its offset.
    const pubs = inStreamOrder(sub.log.of('publication'));
    const offsets = pubs.map((p) => p.offset);
    assert.equal(new Set(offsets).size, offsets.length, `offsets ${offsets}`);
    assert.deepEqual(pubs.map((p) => p.data), Array.from({ length: 10 }, (_, i) => state(i + 1)));
    const after = sub.deltaStats();
    // 3 recovered + the first live one in full, the next 3 as deltas.
    assert.equal(after.numFullPayloads - before.numFullPayloads, 1, JSON.stringify([before, after]));
    assert.equal(after.numDeltaPayloads - before.numDeltaPayloads, 3);
  });

  test('cache recovery mode: a resubscribe gets only the latest publication, recovered', async () => {
    const user = unique('cache');
    const c = await clients.connected(user, { minReconnectDelay: 1500, maxReconnectDelay: 1600 });
    const channel = unique('cache:state');
    const sub = await subscribed(c, channel, { recoverable: true });
    await api(s, 'publish', { channel, data: state(1) });
    await sub.log.wait(() => sub.log.of('publication').length === 1, 'the first');
    await api(s, 'disconnect', { user });
    await c.log.wait(() => c.log.of('connecting').length === 2, 'connecting after the disconnect');
    for (let n = 2; n <= 6; n++) await api(s, 'publish', { channel, data: state(n) });
    await sub.log.wait(() => sub.log.of('subscribed').length === 2, 'resubscribed', 2 * T);
    const again = sub.log.of('subscribed')[1];
    assert.equal(again.wasRecovering, true);
    assert.equal(again.recovered, true, JSON.stringify(again));
    await sub.log.wait(() => sub.log.of('publication').length === 2, 'the latest');
    await api(s, 'publish', { channel, data: state(7) });
    await sub.log.wait(() => sub.log.of('publication').length === 3, 'live again');
    await sleep(200);
    assert.deepEqual(inStreamOrder(sub.log.of('publication')).map((p) => p.data.seq), [1, 6, 7]);
  });

  test('cache recovery with delta: the latest in full, then deltas decode', async () => {
    const user = unique('cached');
    const c = await clients.connected(user, { minReconnectDelay: 1500, maxReconnectDelay: 1600 });
    const channel = unique('cache:dstate');
    const sub = await subscribed(c, channel, { recoverable: true, delta: 'fossil' });
    for (let n = 1; n <= 2; n++) await api(s, 'publish', { channel, data: state(n), delta: true });
    await sub.log.wait(() => sub.log.of('publication').length === 2, 'two');
    await api(s, 'disconnect', { user });
    await c.log.wait(() => c.log.of('connecting').length === 2, 'connecting after the disconnect');
    for (let n = 3; n <= 5; n++) await api(s, 'publish', { channel, data: state(n), delta: true });
    await sub.log.wait(() => sub.log.of('subscribed').length === 2, 'resubscribed', 2 * T);
    for (let n = 6; n <= 8; n++) await api(s, 'publish', { channel, data: state(n), delta: true });
    await sub.log.wait(() => sub.log.of('publication').length === 6, 'six');
    assert.deepEqual(inStreamOrder(sub.log.of('publication')).map((p) => p.data), [1, 2, 5, 6, 7, 8].map(state));
    assert.ok(sub.deltaStats().numDeltaPayloads >= 3, JSON.stringify(sub.deltaStats()));
  });

  test('tags filter: only matching publications arrive; equal filters on many subscribers', async () => {
    const c = await clients.connected('alice');
    const channel = unique('tags:ticks');
    const aapl = { key: 'ticker', cmp: 'eq', val: 'AAPL' };
    const subs = [];
    for (let i = 0; i < 3; i++) {
      const other = await clients.connected(`u${i}`);
      subs.push(await subscribed(other, channel, { tagsFilter: aapl }));
    }
    const big = await subscribed(c, channel, {
      tagsFilter: { op: 'and', nodes: [
        { key: 'ticker', cmp: 'in', vals: ['AAPL', 'MSFT'] },
        { key: 'price', cmp: 'gte', val: '100.5' },
      ] },
    });
    const ticks = [['AAPL', '99'], ['MSFT', '101'], ['AAPL', '100.50'], ['GOOG', '500'], ['AAPL', '7']];
    for (const [i, [ticker, price]] of ticks.entries()) {
      await api(s, 'publish', { channel, data: { i }, tags: { ticker, price } });
    }
    for (const sub of subs) await sub.log.wait(() => sub.log.of('publication').length === 3, 'AAPL ones');
    await big.log.wait(() => big.log.of('publication').length === 2, 'in + gte');
    await sleep(200);
    for (const sub of subs) assert.deepEqual(inStreamOrder(sub.log.of('publication')).map((p) => p.data.i), [0, 2, 4]);
    assert.deepEqual(inStreamOrder(big.log.of('publication')).map((p) => p.data.i), [1, 2]);
  });

  test('tags filter where the namespace does not allow it, or malformed, or too deep: 107, the client stays', async () => {
    const c = await clients.connected('alice');
    const ok = { key: 'a', cmp: 'eq', val: 'x' };
    let deep = ok;
    for (let i = 0; i < 20; i++) deep = { op: 'not', nodes: [deep] };
    const cases = [
      [unique('plain'), ok],
      [unique('tags:bad'), { key: 'a', cmp: 'like', val: 'x' }],
      [unique('tags:deep'), deep],
    ];
    for (const [channel, tagsFilter] of cases) {
      const sub = c.newSubscription(channel, { tagsFilter });
      const unsubscribed = new Promise((resolve) => sub.on('unsubscribed', resolve));
      sub.subscribe();
      const ctx = await unsubscribed;
      assert.equal(ctx.code, 107, `${channel}: ${JSON.stringify(ctx)}`);
    }
    assert.equal(c.state, 'connected');
    const sub = await subscribed(c, unique('tags:fine'), { tagsFilter: ok });
    assert.equal(sub.state, 'subscribed');
  });

  test('an unknown delta type closes the connection with 3501 (bad request), as Centrifugo', async () => {
    // The SDK refuses unknown delta types itself: a raw WebSocket asks.
    const ws = new WebSocket(s.ws);
    await new Promise((resolve, reject) => { ws.on('open', resolve); ws.on('error', reject); });
    const closed = new Promise((resolve) => ws.on('close', (code) => resolve(code)));
    ws.send(JSON.stringify({ id: 1, connect: { token: connToken(s, 'alice') } }));
    ws.send(JSON.stringify({ id: 2, subscribe: { channel: unique('delta:z'), delta: 'zstd' } }));
    assert.equal(await closed, 3501);
  });
  return suite;
}
