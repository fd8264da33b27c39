// @ts-check
/**
 * The page: account forms, the world on a canvas (players as dots, you highlighted and
 * centred), your xp and level, movement with WASD or the arrow keys. The connection and
 * the world are client.js's; `window.hearth` exposes them to tests and curious players.
 */

import { HearthClient } from './client.js';

/** Pixels per world unit: the 50-unit area of interest fills the canvas, with a margin. */
const SCALE = 4.6;
/** The area of interest's radius (the server's default), drawn as a circle around you. */
const INTEREST_RADIUS = 50;
/** Half the side of the demo game's world. */
const WORLD_HALF_EXTENT = 1000;
/** At most one `move` per this many ms while a key is held (the server applies one a tick). */
const MOVE_INTERVAL_MS = 50;

/** Direction of each movement key: x to the right, y up. */
const KEYS = new Map([
  ['w', [0, 1]], ['arrowup', [0, 1]],
  ['s', [0, -1]], ['arrowdown', [0, -1]],
  ['a', [-1, 0]], ['arrowleft', [-1, 0]],
  ['d', [1, 0]], ['arrowright', [1, 0]],
]);

/**
 * @template {HTMLElement} T
 * @param {string} id
 * @param {new () => T} type
 * @returns {T}
 */
function element(id, type) {
  const found = document.getElementById(id);
  if (!(found instanceof type)) {
    throw new Error(`the page has no #${id}`);
  }
  return found;
}

const form = element('account-form', HTMLFormElement);
const username = element('username', HTMLInputElement);
const password = element('password', HTMLInputElement);
const canvas = element('world', HTMLCanvasElement);
const status = element('status', HTMLElement);
const notice = element('notice', HTMLElement);
const context = canvas.getContext('2d');

const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
const client = new HearthClient(`${scheme}://${location.host}/ws`, render);

form.addEventListener('submit', (event) => {
  event.preventDefault();
  client.login(username.value, password.value);
});
element('register', HTMLButtonElement).addEventListener('click', () => {
  if (form.reportValidity()) {
    client.register(username.value, password.value);
  }
});
element('logout', HTMLButtonElement).addEventListener('click', () => client.logout());

/** Movement keys held down. */
const held = new Set();
/** Keys pressed since the last step: a tap released before its step is sent still steps. */
const tapped = new Set();
let lastMove = 0;

/** Sends one step in the direction of the keys held or tapped, at most once per MOVE_INTERVAL_MS. */
function step() {
  const now = performance.now();
  const keys = new Set([...held, ...tapped]);
  if (keys.size === 0 || now - lastMove < MOVE_INTERVAL_MS) {
    return;
  }
  tapped.clear();
  let dx = 0;
  let dy = 0;
  for (const key of keys) {
    const [x, y] = KEYS.get(key) ?? [0, 0];
    dx += x;
    dy += y;
  }
  if (dx !== 0 || dy !== 0) {
    lastMove = now;
    client.move(dx, dy);
  }
}

window.addEventListener('keydown', (event) => {
  const key = event.key.toLowerCase();
  if (!KEYS.has(key) || !client.loggedIn || event.target instanceof HTMLInputElement) {
    return;
  }
  event.preventDefault(); // arrows would scroll the page
  held.add(key);
  tapped.add(key);
  step(); // at once when the last step is old enough, else at the next interval
});
window.addEventListener('keyup', (event) => held.delete(event.key.toLowerCase()));
window.addEventListener('blur', () => {
  held.clear();
  tapped.clear();
});
window.setInterval(step, MOVE_INTERVAL_MS);

/** Shows what the client knows: which panels, the numbers, the world. */
function render() {
  status.textContent = client.connected
    ? (client.loggedIn ? `playing as player ${client.playerId} on ${new URL(client.url).host}` : 'connected')
    : 'reconnecting…';
  notice.textContent = client.notice;
  const playing = client.loggedIn;
  element('account', HTMLElement).hidden = playing || (client.wantsSession && !client.connected);
  element('game', HTMLElement).hidden = !playing;
  element('stats', HTMLElement).hidden = !playing;
  element('help', HTMLElement).hidden = !playing;
  element('player-id', HTMLElement).textContent = String(client.playerId ?? '');
  element('level', HTMLElement).textContent = String(client.level);
  element('xp', HTMLElement).textContent = String(client.xp);
  const me = client.position();
  element('position', HTMLElement).textContent = me ? `${me.x.toFixed(1)}, ${me.y.toFixed(1)}` : '';
  element('nearby', HTMLElement).textContent = String(Math.max(client.world.size - 1, 0));
  if (playing && document.activeElement !== canvas && !(document.activeElement instanceof HTMLInputElement)) {
    canvas.focus({ preventScroll: true });
  }
  draw();
}

/** The world around you: a grid every 10 units, the world's edge, your area of interest, players. */
function draw() {
  if (context === null) {
    return;
  }
  const { width, height } = canvas;
  context.clearRect(0, 0, width, height);
  const centre = client.position() ?? { x: 0, y: 0 };
  /** @param {number} x @param {number} y @returns {[number, number]} */
  const toScreen = (x, y) => [width / 2 + (x - centre.x) * SCALE, height / 2 - (y - centre.y) * SCALE];

  context.strokeStyle = '#1f232b';
  context.lineWidth = 1;
  const span = width / SCALE / 2;
  for (let gx = Math.ceil((centre.x - span) / 10) * 10; gx <= centre.x + span; gx += 10) {
    const [sx] = toScreen(gx, 0);
    context.beginPath(); context.moveTo(sx, 0); context.lineTo(sx, height); context.stroke();
  }
  for (let gy = Math.ceil((centre.y - span) / 10) * 10; gy <= centre.y + span; gy += 10) {
    const [, sy] = toScreen(0, gy);
    context.beginPath(); context.moveTo(0, sy); context.lineTo(width, sy); context.stroke();
  }
  context.strokeStyle = '#8a3b3b';
  const [left, top] = toScreen(-WORLD_HALF_EXTENT, WORLD_HALF_EXTENT);
  context.strokeRect(left, top, 2 * WORLD_HALF_EXTENT * SCALE, 2 * WORLD_HALF_EXTENT * SCALE);
  context.strokeStyle = '#2f4f7a';
  context.beginPath();
  context.arc(width / 2, height / 2, INTEREST_RADIUS * SCALE, 0, 2 * Math.PI);
  context.stroke();

  context.font = '11px system-ui, sans-serif';
  context.textAlign = 'center';
  for (const player of client.world.values()) {
    if (player.position === undefined) {
      continue;
    }
    const [sx, sy] = toScreen(player.position.x, player.position.y);
    const mine = player.id === client.you;
    context.fillStyle = mine ? '#ffd166' : '#6aa9ff';
    context.beginPath();
    context.arc(sx, sy, mine ? 7 : 5, 0, 2 * Math.PI);
    context.fill();
    if (mine) {
      context.strokeStyle = '#ffffff';
      context.lineWidth = 2;
      context.stroke();
      context.lineWidth = 1;
    }
    context.fillStyle = '#c9d1d9';
    context.fillText(mine ? 'you' : `#${player.playerId ?? '?'}`, sx, sy - 11);
  }
}

/** What the page knows, for tests (`window.hearth.snapshot()`) and the console. */
Object.defineProperty(window, 'hearth', {
  value: { client, snapshot: () => client.snapshot() },
});

render();
client.connect();
