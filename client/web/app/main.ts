// Citadel's browser sample client: log in, walk the sample game's map,
// chat nearby or on a channel, pick up items. Built on the TypeScript SDK
// (client/ts); bundled into ../static/app.js by `npm run build` there.

import {
  ChatMessage,
  connect,
  Connection,
  GetInventory,
  Inventory,
  JoinChannel,
  Joined,
  LoginAPI,
  LoginError,
  Move,
  Moved,
  PickUp,
  PlayerInfo,
  PlayerMoved,
  Say,
  WorldBonus,
  SayOK,
  ServerError,
  KickedError,
  type LoginResponse,
} from "../../ts/src/index.js";

const MAP_SIZE = 1000; // services.MapSize
const STEP = 10; // services.MaxStep
const VIEW = 100; // map units across the canvas

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const api = new LoginAPI(); // same origin: citadel -web serves this page on the login listener

let conn: Connection | undefined;
let me = { x: 0, y: 0, moves: 0n };
const others = new Map<string, { x: number; y: number; seen: number }>();
const joined = new Set<string>();

function status(text: string) {
  $("status").textContent = text;
}

function showError(id: string, err: unknown) {
  let text = String(err);
  if (err instanceof LoginError) text = `${err.code}: ${err.message}`;
  else if (err instanceof ServerError) text = `${err.code}: ${err.serverMessage}`;
  else if (err instanceof KickedError) text = `disconnected (${err.code}): ${err.reason}`;
  $(id).textContent = text;
}

async function start(how: "login" | "register") {
  const name = $<HTMLInputElement>("name").value.trim();
  const password = $<HTMLInputElement>("password").value;
  $("login-error").textContent = "";
  status("logging in…");
  let lr: LoginResponse;
  try {
    lr = how === "register" ? await api.register(name, password) : await api.login(name, password);
  } catch (err) {
    status("not connected");
    showError("login-error", err);
    return;
  }
  try {
    conn = await connect(lr, { relogin: () => api.login(name, password) });
  } catch (err) {
    status("not connected");
    showError("login-error", err);
    return;
  }
  wire(conn);
  $("login-panel").hidden = true;
  $("game").hidden = false;
  status(`connected as ${name} (player ${conn.playerID}) on ${conn.gate}`);
  $("map").focus();
  await refreshInventory();
}

function wire(c: Connection) {
  c.handle(PlayerInfo, (m) => {
    me = { x: m.X, y: m.Y, moves: m.Moves };
    renderInventory(m.Items);
    draw();
  });
  c.handle(PlayerMoved, (m) => {
    if (m.PlayerID === c.playerID) return;
    others.set(String(m.PlayerID), { x: m.X, y: m.Y, seen: Date.now() });
    draw();
  });
  c.handle(ChatMessage, (m) => addChat(m));
  // The world rewards hunters at each world event, by player ID.
  c.handle(WorldBonus, (m) => status(`world event: ${m.Event} (+${m.XPGain} XP, level ${m.Level})`));
  c.on("disconnected", () => status("connection lost: resuming…"));
  c.on("resumed", ({ resumed, gate }) => status(`back on ${gate}${resumed ? " (state kept)" : ""}`));
  c.on("moved", ({ gate }) => status(`moved to ${gate}`));
  c.on("closed", (err) => {
    status("not connected");
    showError("game-error", err);
  });
}

function addChat(m: ChatMessage) {
  const li = document.createElement("li");
  const from = conn && m.From === conn.playerID ? "me" : `player ${m.From}`;
  li.className = from === "me" ? "me" : "";
  li.textContent = `${m.Channel ? "#" + m.Channel + " " : ""}${from}: ${m.Text}`;
  const log = $("chat-log");
  log.append(li);
  log.scrollTop = log.scrollHeight;
}

async function step(dx: number, dy: number) {
  if (!conn) return;
  const x = Math.min(MAP_SIZE - 1, Math.max(0, me.x + dx));
  const y = Math.min(MAP_SIZE - 1, Math.max(0, me.y + dy));
  try {
    const m = await conn.call(new Move({ X: x, Y: y }), Moved);
    me = { x: m.X, y: m.Y, moves: m.Moves };
    $("game-error").textContent = "";
    draw();
  } catch (err) {
    showError("game-error", err);
  }
}

async function say(channel: string, text: string) {
  if (!conn) return;
  try {
    if (channel && !joined.has(channel)) {
      await conn.call(new JoinChannel({ Channel: channel }), Joined);
      joined.add(channel);
    }
    await conn.call(new Say({ Channel: channel, Text: text }), SayOK);
    $("game-error").textContent = "";
  } catch (err) {
    showError("game-error", err);
  }
}

async function refreshInventory() {
  if (!conn) return;
  try {
    renderInventory((await conn.call(new GetInventory(), Inventory)).Items);
  } catch (err) {
    showError("game-error", err);
  }
}

function renderInventory(items: Record<string, number>) {
  const ul = $("inventory");
  ul.replaceChildren(
    ...Object.entries(items)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([item, n]) => {
        const li = document.createElement("li");
        li.textContent = `${item} × ${n}`;
        return li;
      }),
  );
}

function draw() {
  $("pos").textContent = `(${me.x}, ${me.y}) · ${me.moves} moves`;
  const cv = $<HTMLCanvasElement>("map");
  const g = cv.getContext("2d");
  if (!g) return;
  const scale = cv.width / VIEW;
  const ox = me.x - VIEW / 2;
  const oy = me.y - VIEW / 2;
  g.clearRect(0, 0, cv.width, cv.height);
  g.strokeStyle = "#c5d3b4";
  for (let u = Math.ceil(ox / 10) * 10; u < ox + VIEW; u += 10) {
    g.beginPath();
    g.moveTo((u - ox) * scale, 0);
    g.lineTo((u - ox) * scale, cv.height);
    g.stroke();
  }
  for (let v = Math.ceil(oy / 10) * 10; v < oy + VIEW; v += 10) {
    g.beginPath();
    g.moveTo(0, (v - oy) * scale);
    g.lineTo(cv.width, (v - oy) * scale);
    g.stroke();
  }
  g.fillStyle = "#7a5c3a"; // the map's edge
  if (ox < 0) g.fillRect(0, 0, -ox * scale, cv.height);
  if (oy < 0) g.fillRect(0, 0, cv.width, -oy * scale);
  if (ox + VIEW > MAP_SIZE) g.fillRect((MAP_SIZE - ox) * scale, 0, cv.width, cv.height);
  if (oy + VIEW > MAP_SIZE) g.fillRect(0, (MAP_SIZE - oy) * scale, cv.width, cv.height);
  const dot = (x: number, y: number, color: string) => {
    g.fillStyle = color;
    g.beginPath();
    g.arc((x - ox) * scale, (y - oy) * scale, 6, 0, 2 * Math.PI);
    g.fill();
  };
  for (const [id, o] of others) {
    if (Date.now() - o.seen > 60000) others.delete(id);
    else dot(o.x, o.y, "#5b7db1");
  }
  dot(me.x, me.y, "#d1495b");
}

$("login-form").addEventListener("submit", (e) => {
  e.preventDefault();
  void start("login");
});
$("register").addEventListener("click", () => void start("register"));
$("chat-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = $<HTMLInputElement>("chat-text");
  void say($<HTMLInputElement>("chat-channel").value.trim(), text.value);
  text.value = "";
});
$("pickup-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  if (!conn) return;
  try {
    const inv = await conn.call(new PickUp({ Item: $<HTMLSelectElement>("pickup-item").value, Count: 1 }), Inventory);
    renderInventory(inv.Items);
  } catch (err) {
    showError("game-error", err);
  }
});
const moves: Record<string, [number, number]> = {
  ArrowLeft: [-STEP, 0], ArrowRight: [STEP, 0], ArrowUp: [0, -STEP], ArrowDown: [0, STEP],
  left: [-STEP, 0], right: [STEP, 0], up: [0, -STEP], down: [0, STEP],
};
$("map").addEventListener("keydown", (e) => {
  const d = moves[e.key];
  if (d) {
    e.preventDefault();
    void step(d[0], d[1]);
  }
});
for (const id of ["left", "right", "up", "down"]) $(id).addEventListener("click", () => void step(...moves[id]));
