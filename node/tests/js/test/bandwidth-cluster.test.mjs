// Delta compression, tags filters and cache recovery against 3 herald-nodes on NATS
// JetStream behind herald-router; then deltas of publications that arrive from the
// other nodes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { defineBandwidthSuite, inStreamOrder, state } from '../lib/bandwidth.mjs';
import { T, api, connToken, subscribed, unique } from '../lib/herald.mjs';

const suite = defineBandwidthSuite('cluster');

test('deltas stay right when the publications come from the other nodes, in turn', async () => {
  const s = suite.servers;
  const key = unique('dcl');
  const { node: held } = await s.command({ cmd: 'route', key });
  const c = suite.clients.client({ token: connToken(s, key) }, `${s.ws}?client=${key}`);
  c.connect();
  await c.ready(T);
  const channel = unique('delta:cluster');
  const sub = await subscribed(c, channel, { delta: 'fossil' });
  const others = [1, 2].map((k) => s.nodes[(held + k) % 3]);
  const N = 30;
  for (let n = 1; n <= N; n++) {
    await api(s, 'publish', { channel, data: state(n), delta: true }, others[n % 2].api);
  }
  await sub.log.wait(() => sub.log.of('publication').length === N, `${N} publications`);
  assert.deepEqual(inStreamOrder(sub.log.of('publication')).map((p) => p.data), Array.from({ length: N }, (_, i) => state(i + 1)));
  const stats = sub.deltaStats();
  assert.equal(stats.numFullPayloads, 1, JSON.stringify(stats));
  assert.equal(stats.numDeltaPayloads, N - 1, JSON.stringify(stats));
});
