// The SDK's tests, run inside headless Chromium against real citadel
// processes (test/run.mjs). Each test is a function on window.citadelTests;
// the page is same-origin with the login API (run.mjs proxies /v1/).

import {
  ChatMessage,
  connect,
  Connection,
  Echo,
  JoinChannel,
  Joined,
  KickedError,
  LoginAPI,
  LoginError,
  Move,
  Moved,
  PlayerInfo,
  PROTOCOL_VERSION,
  AuthOK,
  decodeFrame,
  encodeFrame,
  Say,
  SayOK,
  ServerError,
  TradeOffer,
  WireError,
  type LoginResponse,
  type Message,
  type MessageClass,
} from "../src/index.js";

const api = new LoginAPI();
const PASSWORD = "correct-horse";
let counter = 0;

function assert(cond: unknown, msg: string): asserts cond {
  if (!cond) throw new Error(`assertion failed: ${msg}`);
}

function equal<T>(got: T, want: T, what: string) {
  assert(got === want, `${what}: got ${String(got)}, want ${String(want)}`);
}

async function rejects(p: Promise<unknown>, check: (e: unknown) => boolean, what: string): Promise<unknown> {
  try {
    await p;
  } catch (e) {
    assert(check(e), `${what}: wrong error ${String(e)}`);
    return e;
  }
  throw new Error(`${what}: resolved, want an error`);
}

async function waitFor(cond: () => boolean, what: string, timeoutMs = 60000) {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** The next push of one class (register before it can arrive). */
function nextPush<T extends Message>(c: Connection, type: MessageClass<T>, timeoutMs = 30000): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${type.messageName} push within ${timeoutMs}ms`)), timeoutMs);
    const off = c.handle(type, (m) => {
      clearTimeout(timer);
      off();
      resolve(m);
    });
  });
}

async function newPlayer(): Promise<{ name: string; lr: LoginResponse }> {
  const name = `ts${Date.now().toString(36)}x${counter++}`;
  return { name, lr: await api.register(name, PASSWORD) };
}

const conns: Connection[] = [];
async function open(lr: LoginResponse, name?: string): Promise<{ c: Connection; info: Promise<PlayerInfo> }> {
  const log = (m: string) => console.log(`[player ${lr.player_id}] ${m}`);
  const c = await connect(lr, name ? { relogin: () => api.login(name, PASSWORD), log } : { log });
  const info = nextPush(c, PlayerInfo); // the game pushes it right after AuthOK
  conns.push(c);
  return { c, info };
}

const drain: { c?: Connection; moved?: Moved; gate?: string } = {};

const tests: Record<string, () => Promise<unknown>> = {
  async "codec: Go's integer widths"() {
    // 64-bit fields: small values go compact, large ones as int64/uint64
    // (a number beyond 32 bits would go as a float, which Go refuses).
    const big = encodeFrame(TradeOffer.id, 7, new TradeOffer({ With: 2n ** 40n, Give: "a", Take: "b" }).toWire(), 1 << 16);
    const i = big.indexOf(0xcf);
    assert(i > 0 && big[i + 3] === 1 && big[i + 4] === 0, `uint64 2^40 not written as 0xcf: ${Array.from(big).join(",")}`);
    const small = encodeFrame(TradeOffer.id, 7, new TradeOffer({ With: 5n }).toWire(), 1 << 16);
    assert(!small.includes(0xcf) && !small.includes(0xcb), "a small uint64 is written compact");
    const f = decodeFrame(big, 1 << 16);
    equal(f.id, TradeOffer.id, "id");
    equal(f.seq, 7, "seq");
    equal(TradeOffer.fromWire(f.body).With, 2n ** 40n, "uint64 round trip");
    // Decoding normalizes: a uint64 the server wrote compactly is bigint.
    const ok = AuthOK.fromWire({ PlayerID: 42, Resumed: true, HeartbeatMs: 10000n });
    equal(ok.PlayerID, 42n, "uint64 from a number");
    equal(ok.HeartbeatMs, 10000, "int32 from a bigint");
    await rejects(Promise.resolve().then(() => AuthOK.fromWire({ PlayerID: "42" })), (e) => e instanceof WireError && String(e).includes("AuthOK.PlayerID"), "a string for a uint64");
    await rejects(Promise.resolve().then(() => AuthOK.fromWire({ PlayerID: -1 })), (e) => e instanceof WireError, "a negative uint64");
    await rejects(Promise.resolve().then(() => decodeFrame(new Uint8Array([0, 101, 0x93, 1, 2, 3]), 1 << 16)), (e) => e instanceof WireError, "a payload of 3");
    await rejects(Promise.resolve().then(() => new TradeOffer({ With: -1n }).toWire()), (e) => e instanceof WireError, "a negative uint64 to send");
    return "ok";
  },

  async "register and login"() {
    const { name, lr } = await newPlayer();
    assert(lr.player_id > 0, "a player ID");
    assert(lr.gate.ws?.startsWith("ws://"), `a WebSocket gate URL, got ${lr.gate.ws}`);
    const again = await api.login(name, PASSWORD);
    equal(again.player_id, lr.player_id, "login's player");
    assert(again.ticket !== lr.ticket, "a new ticket");
    await rejects(api.login(name, "wrong-password"), (e) => e instanceof LoginError && e.code === "bad_credentials" && e.status === 401, "wrong password");
    await rejects(api.register(name, PASSWORD), (e) => e instanceof LoginError && e.code === "name_taken", "taken name");
    await rejects(api.register("x", PASSWORD), (e) => e instanceof LoginError && e.code === "bad_request", "short name");
    return lr.player_id;
  },

  async "call with reply"() {
    const { lr } = await newPlayer();
    const { c, info } = await open(lr);
    equal(c.playerID, BigInt(lr.player_id), "AuthOK's player");
    equal(c.resumed, false, "a new player is not resumed");
    const p = await info;
    const moved = await c.call(new Move({ X: p.X + 3, Y: p.Y + 4 }), Moved);
    equal(moved.X, p.X + 3, "Moved.X");
    equal(moved.Y, p.Y + 4, "Moved.Y");
    equal(moved.Moves, p.Moves + 1n, "Moved.Moves");
    // Replies match their requests when several are in flight.
    const many = await Promise.all([1, 2, 3, 4, 5].map((i) => c.call(new Echo({ Data: new Uint8Array([i, 255 - i]) }), Echo)));
    many.forEach((e, i) => equal(e.Data.join(","), `${i + 1},${254 - i}`, `echo ${i + 1}`));
    // An Error reply rejects the call with its code.
    await rejects(c.call(new Move({ X: moved.X + 50, Y: moved.Y }), Moved), (e) => e instanceof ServerError && e.code === "bad_move", "too long a step");
    // A reply of another type than asked fails the call.
    await rejects(c.call(new Echo({ Data: new Uint8Array([1]) }), Moved), (e) => String(e).includes("expected Moved, got Echo"), "reply type");
    c.close();
    await rejects(c.call(new Echo(), Echo), (e) => e instanceof Error && e.name === "ClosedError", "call after close");
    // A studio's generated module may carry the client protocol's classes
    // too: they must not replace the SDK's (Error replies still reject).
    class StudioError {
      static readonly id = 105;
      static readonly messageName = "Error";
      Code = "";
      toWire() {
        return { Code: this.Code };
      }
      static fromWire(): StudioError {
        return new StudioError();
      }
    }
    const studio = await connect(await api.login((await newPlayer()).name, PASSWORD), { messages: [StudioError] });
    await rejects(studio.call(new Move({ X: -5, Y: -5 }), Moved), (e) => e instanceof ServerError && e.code === "bad_move", "Error with a studio's classes");
    studio.close();
    return moved.Moves.toString();
  },

  async "push between two players"() {
    const a = await open((await newPlayer()).lr);
    const b = await open((await newPlayer()).lr);
    const channel = `t${Date.now().toString(36)}${counter++}`;
    await a.c.call(new JoinChannel({ Channel: channel }), Joined);
    await b.c.call(new JoinChannel({ Channel: channel }), Joined);
    const got = nextPush(b.c, ChatMessage);
    const any: Message[] = [];
    b.c.on("push", (m) => any.push(m));
    await a.c.call(new Say({ Channel: channel, Text: "hello from a browser ✓" }), SayOK);
    const m = await got;
    equal(m.Channel, channel, "channel");
    equal(m.From, a.c.playerID, "sender");
    equal(m.Text, "hello from a browser ✓", "text");
    assert(any.some((x) => x instanceof ChatMessage), "the push listener saw it too");
    await rejects(a.c.call(new Say({ Channel: channel, Text: "" }), SayOK), (e) => e instanceof ServerError && e.code === "bad_chat", "empty chat line");
    return m.Text;
  },

  async "resume after a dropped socket"() {
    const { name, lr } = await newPlayer();
    const { c, info } = await open(lr, name);
    const p = await info;
    const m1 = await c.call(new Move({ X: p.X + 1, Y: p.Y }), Moved);
    const events: string[] = [];
    c.on("disconnected", () => events.push("disconnected"));
    const resumed = new Promise<{ resumed: boolean }>((r) => c.on("resumed", r));
    c.dropConnection();
    // A call made while the connection is down waits for the resume.
    const during = c.call(new Move({ X: m1.X + 1, Y: m1.Y }), Moved);
    const r = await resumed;
    equal(r.resumed, true, "the player's actor was resumed");
    equal(c.resumes, 1, "resumes");
    equal(events.join(), "disconnected", "events");
    const m2 = await during;
    equal(m2.X, m1.X + 1, "position after the resume");
    equal(m2.Moves, m1.Moves + 1n, "moves counted on the same actor");
    equal(c.playerID, BigInt(lr.player_id), "same player");
    return m2.Moves.toString();
  },

  async "protocol version mismatch"() {
    const out: string[] = [];
    for (const [version, says] of [
      [PROTOCOL_VERSION + 1, "update the server"],
      [0, "update the client"],
    ] as const) {
      const { lr } = await newPlayer();
      const e = await rejects(
        connect(lr, { protocol: version }),
        (e) => e instanceof ServerError && e.code === "protocol",
        `protocol ${version}`,
      );
      const msg = (e as ServerError).serverMessage;
      assert(msg.includes(says), `protocol ${version}: "${msg}" does not say "${says}"`);
      assert(msg.includes(String(PROTOCOL_VERSION)), `protocol ${version}: "${msg}" does not name the server's version`);
      if (version > 0) assert(msg.includes(String(version)), `"${msg}" does not name the client's version`);
      // The refused Auth did not use the ticket up.
      const c = await connect(lr);
      c.close();
      out.push(msg);
    }
    return out;
  },

  async "drain: connect"() {
    const { name, lr } = await newPlayer();
    const { c, info } = await open(lr, name);
    const p = await info;
    drain.c = c;
    drain.gate = c.gate;
    drain.moved = await c.call(new Move({ X: p.X + 2, Y: p.Y }), Moved);
    return c.gate;
  },

  async "drain: follow Reconnect"() {
    const c = drain.c!;
    await waitFor(() => c.moves === 1, "the move to the other gate");
    assert(c.gate !== drain.gate, `still on ${drain.gate}`);
    const m = await c.call(new Move({ X: drain.moved!.X + 1, Y: drain.moved!.Y }), Moved);
    equal(m.Moves, drain.moved!.Moves + 1n, "moves on the same actor after the move");
    equal(c.resumes, 0, "moved, not resumed after a drop");
    equal(c.state, "open", "state");
    return c.gate;
  },
};

async function run(name: string): Promise<unknown> {
  const t = tests[name];
  if (!t) throw new Error(`no test ${name}`);
  try {
    return await t();
  } catch (e) {
    const err = e as Error;
    const kind = e instanceof KickedError ? ` (kicked ${e.code})` : "";
    throw new Error(`${err.name}${kind}: ${err.message}`);
  }
}

(window as unknown as { citadelTests: unknown }).citadelTests = { run, names: Object.keys(tests) };
