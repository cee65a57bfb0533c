// Runs the SDK's browser tests: builds and starts real citadel processes,
// serves the test page, and drives headless Chromium (playwright-core with
// the system's Chromium: CHROMIUM or /usr/bin/chromium).
//
// Cluster: "core" runs login and a game node with the embedded NSQ; two
// gate-only processes join it (a drain sends clients from one to the
// other); "web" is an all-in-one server with -web for the sample page.

import { fileURLToPath } from "node:url";
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createServer, request } from "node:http";
import { readFileSync, mkdtempSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { chromium } from "playwright-core";
import { buildServer, startCitadel, waitReady, freePort, cleanup } from "./cluster.mjs";

const here = fileURLToPath(new URL(".", import.meta.url));
const T = 120_000; // generous: a loaded 2-core machine
let core, gates, web, page, browser, pageServer, pageOrigin;

function servePage(target, port) {
  // The test page and bundle; /v1/ goes to the login service, so the
  // page's login requests are same-origin as in production (-web).
  const files = { "/": ["page.html", "text/html"], "/tests.js": ["dist/tests.js", "text/javascript"] };
  const srv = createServer((req, res) => {
    if (req.url.startsWith("/v1/")) {
      const up = request(target + req.url, { method: req.method, headers: { ...req.headers, host: new URL(target).host } }, (r) => {
        res.writeHead(r.statusCode, r.headers);
        r.pipe(res);
      });
      up.on("error", (e) => {
        res.writeHead(502);
        res.end(String(e));
      });
      req.pipe(up);
      return;
    }
    const f = files[req.url];
    if (!f) {
      res.writeHead(404);
      return res.end();
    }
    res.writeHead(200, { "Content-Type": f[1] });
    res.end(readFileSync(join(here, f[0])));
  });
  return new Promise((res, rej) => {
    srv.on("error", rej);
    srv.listen(port, "127.0.0.1", () => res(srv));
  });
}

before(async () => {
  const bin = buildServer();
  // The page's origin must be known before the gates start (-ws-origin).
  const pagePort = await freePort();
  pageOrigin = `http://127.0.0.1:${pagePort}`;
  core = await startCitadel(bin, "core", ["-role", "login,game"]);
  const gateArgs = (id) => ["-role", "gate", "-id", String(id), "-ws-origin", pageOrigin,
    "-cluster-key-file", join(core.dataDir, "cluster.key"), "-ticket-key-file", join(core.dataDir, "ticket.key"),
    "-nsqd", core.nsqd, "-nsqd-http", core.nsqdHTTP, "-drain-timeout", "30s"];
  gates = await Promise.all([startCitadel(bin, "gate1", gateArgs(1)), startCitadel(bin, "gate2", gateArgs(2))]);
  const webPort = await freePort();
  web = await startCitadel(bin, "web", ["-web", "-login", `127.0.0.1:${webPort}`]);
  await Promise.all([core, ...gates, web].map((p) => waitReady(p)));

  pageServer = await servePage(core.loginURL, pagePort);

  const userDataDir = mkdtempSync(join(tmpdir(), "citadel-chromium-"));
  // A fresh profile; without the background-networking flags Chromium's
  // own connections are refused on a closed network and slow it down.
  browser = await chromium.launchPersistentContext(userDataDir, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync"],
    timeout: T,
  });
  page = await browser.newPage();
  page.setDefaultTimeout(T);
  page.on("pageerror", (e) => console.error("page error:", e));
  if (process.env.CITADEL_TEST_LOG) page.on("console", (m) => console.error("page:", m.text()));
  await page.goto(pageOrigin + "/");
  await page.waitForFunction(() => window.citadelTests !== undefined);
}, { timeout: 300_000 });

after(async () => {
  await browser?.close();
  pageServer?.close();
  cleanup();
});

const inPage = (name) => page.evaluate((n) => window.citadelTests.run(n), name);

test("codec: Go's integer widths", { timeout: T }, async () => {
  assert.equal(await inPage("codec: Go's integer widths"), "ok");
});

test("register and login", { timeout: T }, async () => {
  assert.ok((await inPage("register and login")) > 0);
});

test("call with reply", { timeout: T }, async () => {
  assert.equal(await inPage("call with reply"), "1");
});

test("push between two players", { timeout: T }, async () => {
  assert.equal(await inPage("push between two players"), "hello from a browser ✓");
});

test("resume after a dropped socket", { timeout: T }, async () => {
  assert.equal(await inPage("resume after a dropped socket"), "2");
});

test("protocol version mismatch gets a clear error", { timeout: T }, async () => {
  const msgs = await inPage("protocol version mismatch");
  assert.equal(msgs.length, 2);
});

test("a draining gate's Reconnect moves the connection", { timeout: 2 * T }, async () => {
  const gate = await inPage("drain: connect");
  const target = gates.find((g) => g.child && gateName(g) === gate);
  assert.ok(target, `no gate process named ${gate}`);
  const r = await fetch(target.admin + "/drain", { method: "POST", headers: { Authorization: `Bearer ${target.token}` } });
  assert.ok(r.status < 300, `POST /drain: ${r.status} ${await r.text()}`);
  const now = await inPage("drain: follow Reconnect");
  assert.notEqual(now, gate);
});

function gateName(g) {
  return g.name === "gate1" ? "gate-1" : "gate-2";
}

test("the sample page plays: move, chat, inventory", { timeout: 2 * T }, async () => {
  const p = await browser.newPage();
  p.setDefaultTimeout(T);
  const errors = [];
  p.on("pageerror", (e) => errors.push(e));
  await p.goto(web.loginURL + "/");
  const name = `web${Date.now().toString(36)}`;
  await p.fill("#name", name);
  await p.fill("#password", "sample-password");
  await p.click("#register");
  await p.waitForFunction(() => document.getElementById("status").textContent.startsWith("connected as"));
  await p.waitForFunction(() => document.getElementById("pos").textContent.includes("0 moves"));
  await p.click("#right");
  await p.waitForFunction(() => document.getElementById("pos").textContent.includes("1 moves"));
  await p.focus("#map");
  await p.keyboard.press("ArrowDown");
  await p.waitForFunction(() => document.getElementById("pos").textContent.includes("2 moves"));
  await p.fill("#chat-text", "hi from the sample page");
  await p.click("#chat-send");
  await p.waitForFunction(() => document.getElementById("chat-log").textContent.includes("me: hi from the sample page"));
  // New players start with some items (the tables' StartItems).
  const potions = () => p.evaluate(() => Number((document.getElementById("inventory").textContent.match(/potion × (\d+)/) ?? [0, 0])[1]));
  const before = await potions();
  await p.selectOption("#pickup-item", "potion");
  await p.click("#pickup");
  await p.waitForFunction((n) => document.getElementById("inventory").textContent.includes(`potion × ${n}`), before + 1);
  assert.equal(await p.textContent("#game-error"), "");
  assert.deepEqual(errors, []);
  await p.close();
});
