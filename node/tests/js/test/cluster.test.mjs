// centrifuge-js against 3 herald-nodes on NATS JetStream behind herald-router: the
// whole suite through the router, then a crash of the node that holds the client.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { defineSuite } from '../lib/suite.mjs';
import { T, api, connToken, sleep, subscribed, unique } from '../lib/herald.mjs';

const suite = defineSuite('cluster');

test('the node holding the client is SIGKILLed: the SDK reconnects through the router '
  + 'to another node and recovers every missed publication once, in order', async () => {
  const s = suite.servers;
  const key = unique('failover');
  const { node: held } = await s.command({ cmd: 'route', key });
  // The reconnect waits at least 3 s: time for the router to drop the dead node and
  // for the test to publish while the client is away.
  const c = suite.clients.client(
    { token: connToken(s, key), minReconnectDelay: 3000, maxReconnectDelay: 3500 },
    `${s.ws}?client=${key}`,
  );
  c.connect();
  await c.ready(T);
  const channel = unique('failover');
  const sub = await subscribed(c, channel, { recoverable: true });
  for (let n = 0; n < 3; n++) await api(s, 'publish', { channel, data: { n } });
  await sub.log.wait(() => sub.log.of('publication').length === 3, '3 live publications');
  try {
    await s.command({ cmd: 'kill', node: held });
    await c.log.wait(() => c.log.of('connecting').length === 2, 'connecting after the kill');
    assert.equal(c.log.of('connecting')[1].code, 1, 'transport closed: a reconnect');
    const survivor = s.nodes[(held + 1) % 3];
    for (let n = 3; n < 8; n++) await api(s, 'publish', { channel, data: { n } }, survivor.api);
    await sub.log.wait(() => sub.log.of('subscribed').length === 2, 'resubscribed elsewhere', 3 * T);
    const again = sub.log.of('subscribed')[1];
    assert.equal(again.wasRecovering, true);
    assert.equal(again.recovered, true, JSON.stringify(again));
    assert.equal(again.hasRecoveredPublications, true);
    await api(s, 'publish', { channel, data: { n: 8 } });
    await sub.log.wait(() => sub.log.of('publication').length === 9, '9 publications');
    await sleep(300); // a late duplicate would show now
    const pubs = sub.log.of('publication');
    assert.deepEqual(pubs.map((p) => p.data.n), [0, 1, 2, 3, 4, 5, 6, 7, 8]);
    const offsets = pubs.map((p) => p.offset);
    assert.deepEqual([...offsets].sort((a, b) => a - b), offsets);
    assert.equal(c.state, 'connected');
    assert.deepEqual(c.log.of('disconnected'), []);
    const { node: now } = await s.command({ cmd: 'route', key });
    assert.notEqual(now, held, 'the key moved to a live node');
  } finally {
    c.disconnect();
    await s.command({ cmd: 'restart', node: held });
  }
});
