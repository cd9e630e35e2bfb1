// The demo chat's whole client: one Centrifuge client, one subscription with recovery,
// publish from the page. Every state the SDK reports is shown on the page, so a person
// (or the browser test) sees what happens when a node goes away.
/* global Centrifuge */
'use strict';

const params = new URLSearchParams(location.search);
const wsUrl = params.get('ws') || 'ws://127.0.0.1:8000/connection/websocket';
const room = params.get('room') || 'lobby';
const token = params.get('token') || '';

const $ = (id) => document.getElementById(id);
$('room').textContent = room;

function setPill(id, state) {
  $(id).textContent = state;
  $(id).className = `pill ${state}`;
}

function notice(text) {
  const li = document.createElement('li');
  li.className = 'notice';
  li.textContent = text;
  $('messages').append(li);
}

function show(pub) {
  const li = document.createElement('li');
  li.className = 'msg';
  li.dataset.id = pub.data.id;
  li.dataset.offset = pub.offset;
  const who = document.createElement('span');
  who.className = 'who';
  who.textContent = pub.data.user || pub.info?.user || '?';
  const off = document.createElement('span');
  off.className = 'off';
  off.textContent = `#${pub.offset}`;
  li.append(off, who, document.createTextNode(pub.data.text));
  $('messages').append(li);
}

const client = new Centrifuge(wsUrl, {
  token,
  minReconnectDelay: Number(params.get('reconnect_ms') || 500),
  maxReconnectDelay: Math.max(5000, Number(params.get('reconnect_ms') || 0) + 1000),
});
let user = '';
client.on('state', (ctx) => setPill('state', ctx.newState));
client.on('connected', (ctx) => {
  $('me').textContent = `client ${ctx.client.slice(0, 8)}`;
});
client.on('disconnected', (ctx) => notice(`disconnected: ${ctx.code} ${ctx.reason}`));
client.on('connecting', (ctx) => {
  if (ctx.code !== 0) notice(`connection lost (${ctx.reason}), reconnecting…`);
});

// recoverable: after a reconnect the SDK asks for everything after its last offset.
const sub = client.newSubscription(room, { recoverable: true, joinLeave: true });
sub.on('state', (ctx) => setPill('sub-state', ctx.newState));
sub.on('subscribed', (ctx) => {
  if (ctx.wasRecovering) {
    notice(ctx.recovered ? 'reconnected: recovered every missed message' : 'reconnected: history lost, reload');
  }
  document.body.dataset.subscribes = Number(document.body.dataset.subscribes || 0) + 1;
  document.body.dataset.recovered = String(ctx.recovered);
});
sub.on('publication', show);
sub.on('join', (ctx) => notice(`${ctx.info.user} joined`));
sub.on('leave', (ctx) => notice(`${ctx.info.user} left`));
sub.on('error', (ctx) => notice(`subscription error: ${ctx.error.message}`));

let sent = 0;
$('send').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const text = $('text').value;
  $('text').value = '';
  sent += 1;
  // The id lets every page (and the test) tell each message apart.
  const id = `${user}-${Date.now().toString(36)}-${sent}`;
  try {
    await sub.publish({ id, user, text });
  } catch (e) {
    notice(`not sent (${e.message}): ${text}`);
  }
});

try {
  user = JSON.parse(atob(token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/'))).sub || '';
} catch {
  user = '';
}
sub.subscribe();
client.connect();
