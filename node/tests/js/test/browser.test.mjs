// The demo page (deploy/demo) in Debian's headless Chromium, driven by playwright-core
// (no browser download), against NATS + 3 nodes + router: two pages chat in a room, the
// node of one page is SIGKILLed, the page reconnects through the router, recovers, and
// both pages show every message once, in order. Screenshots go to target/sdk-js/.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium } from 'playwright-core';
import { REPO_ROOT, T, connToken, startServers, unique } from '../lib/herald.mjs';

const CHROMIUM = process.env.HERALD_CHROMIUM || '/usr/bin/chromium';
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'];
const PAGE = path.join(REPO_ROOT, 'deploy/demo/index.html');
const SHOTS = path.join(REPO_ROOT, 'target/sdk-js');
// The page waits this long before reconnecting: time to chat while it is away.
const RECONNECT_MS = 4000;

let s;
let browser;
before(async () => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} missing: apt-get install chromium`);
  assert.ok(existsSync(path.join(REPO_ROOT, 'deploy/demo/node_modules/centrifuge/dist/centrifuge.js')),
    'the demo page is not built: npm ci in deploy/demo');
  s = await startServers('cluster');
  browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS, timeout: 3 * T });
});
after(async () => {
  await browser?.close();
  await s?.stop();
});

/** A page in a browser context of its own (own cookies, so its own router stickiness). */
async function openPage(user, key, room) {
  const context = await browser.newContext({ viewport: { width: 760, height: 560 } });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  const q = new URLSearchParams({
    ws: `${s.ws}?client=${key}`, token: connToken(s, user), room, reconnect_ms: String(RECONNECT_MS),
  });
  await page.goto(`${pathToFileURL(PAGE)}?${q}`);
  await page.locator('#sub-state', { hasText: 'subscribed' }).waitFor({ timeout: T });
  return { page, errors, user };
}

const texts = (p) => p.page.locator('#messages li.msg').evaluateAll((els) => els.map((e) => e.lastChild.textContent));

async function say(p, text) {
  await p.page.fill('#text', text);
  await p.page.click('button[type=submit]');
}

async function expectMessages(p, want) {
  const deadline = Date.now() + 2 * T;
  let got = [];
  while (Date.now() < deadline) {
    got = await texts(p);
    if (got.length >= want.length) break;
    await p.page.waitForTimeout(50);
  }
  await p.page.waitForTimeout(300); // a late duplicate would show now
  assert.deepEqual(await texts(p), want, `${p.user}'s page`);
}

/** Sticky keys for two pages that land on different nodes (the router's hash decides). */
async function keysOnTwoNodes() {
  const first = unique('page-a');
  const { node: a } = await s.command({ cmd: 'route', key: first });
  for (let i = 0; i < 30; i++) {
    const key = unique('page-b');
    const { node: b } = await s.command({ cmd: 'route', key });
    if (b !== a) return [[first, a], [key, b]];
  }
  throw new Error('30 keys all landed on one node');
}

test('two pages chat; the node of one is killed; it reconnects through the router, '
  + 'recovers, and both see every message once', async (t) => {
  const room = unique('lobby');
  const [[keyA, nodeA], [keyB]] = await keysOnTwoNodes();
  const alice = await openPage('alice', keyA, room);
  const bob = await openPage('bob', keyB, room);

  await say(alice, 'hi bob');
  await say(bob, 'hi alice');
  await expectMessages(alice, ['hi bob', 'hi alice']);
  await expectMessages(bob, ['hi bob', 'hi alice']);

  await s.command({ cmd: 'kill', node: nodeA });
  await alice.page.locator('#state', { hasText: 'connecting' }).waitFor({ timeout: T });
  // While Alice's page waits to reconnect, Bob (on a live node) keeps talking.
  for (const text of ['are you there?', 'I will wait', 'still here']) await say(bob, text);
  await expectMessages(bob, ['hi bob', 'hi alice', 'are you there?', 'I will wait', 'still here']);

  await alice.page.locator('#messages li.notice', { hasText: 'recovered every missed message' })
    .waitFor({ timeout: RECONNECT_MS + 3 * T });
  assert.equal(await alice.page.getAttribute('body', 'data-recovered'), 'true');
  await say(alice, 'back!');
  const all = ['hi bob', 'hi alice', 'are you there?', 'I will wait', 'still here', 'back!'];
  await expectMessages(alice, all);
  await expectMessages(bob, all);
  assert.equal(await alice.page.textContent('#state'), 'connected');

  mkdirSync(SHOTS, { recursive: true });
  for (const p of [alice, bob]) {
    const file = path.join(SHOTS, `browser-chat-${p.user}.png`);
    await p.page.screenshot({ path: file, fullPage: true });
    t.diagnostic(`screenshot: ${file}`);
    console.log(`screenshot: ${file}`);
  }
  assert.deepEqual([...alice.errors, ...bob.errors], []);
});
