// Starts real citadel processes for the browser tests: the binary is
// built from this repository (go build ./cmd/citadel), every listener is
// on a free port, every process has its own temporary data directory.

import { fileURLToPath } from "node:url";
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";

export const repoRoot = resolve(fileURLToPath(new URL(".", import.meta.url)), "../../..");

const tmp = mkdtempSync(join(tmpdir(), "citadel-ts-"));
const children = [];

/** Builds the server once; returns the binary's path. */
export function buildServer() {
  const bin = join(tmp, "citadel");
  execFileSync("go", ["build", "-o", bin, "./cmd/citadel"], { cwd: repoRoot, stdio: "inherit" });
  return bin;
}

/** A free TCP port on 127.0.0.1 (for a listener whose address must be known before start). */
export function freePort() {
  return new Promise((res, rej) => {
    const s = createServer();
    s.on("error", rej);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}

const ephemeral = ["-embedded-nsqd-tcp", "127.0.0.1:0", "-embedded-nsqd-http", "127.0.0.1:0",
  "-embedded-lookupd-tcp", "127.0.0.1:0", "-embedded-lookupd-http", "127.0.0.1:0",
  "-plugins", "-", "-gate-tcp", "127.0.0.1:0", "-gate-ws", "127.0.0.1:0", "-admin", "127.0.0.1:0"];

/**
 * Runs citadel with args (plus free ports for what args leave out) and
 * resolves once it printed its addresses: { loginURL, gateWS, admin,
 * token, nsqd, nsqdHTTP, dataDir, stop() }.
 */
export function startCitadel(bin, name, args) {
  const dataDir = join(tmp, name);
  const given = new Set(args.filter((a) => a.startsWith("-")));
  const extra = [];
  for (let i = 0; i < ephemeral.length; i += 2) if (!given.has(ephemeral[i])) extra.push(ephemeral[i], ephemeral[i + 1]);
  if (!given.has("-login")) extra.push("-login", "127.0.0.1:0");
  const all = ["-data", dataDir, "-log-level", "warn", "-bcrypt-cost", "4", "-grace", "1m", ...extra, ...args];
  const child = spawn(bin, all, { stdio: ["ignore", "pipe", "pipe"] });
  children.push(child);
  let stderr = "";
  child.stderr.on("data", (d) => {
    stderr += d;
    if (process.env.CITADEL_TEST_LOG) process.stderr.write(`[${name}] ${d}`);
  });
  const p = { name, dataDir, child, exited: new Promise((r) => child.on("exit", r)) };
  p.stop = () => child.kill("SIGKILL");
  return new Promise((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`${name} did not print its addresses within 60s:\n${stderr}`)), 60000);
    child.on("exit", (code) => rej(new Error(`${name} exited (${code}) before it was ready:\n${stderr}`)));
    const rl = createInterface({ input: child.stdout });
    rl.on("line", (l) => {
      let m;
      if ((m = l.match(/login HTTP\s+(\S+)/))) p.loginURL = m[1];
      if ((m = l.match(/gate WS\s+(\S+)/))) p.gateWS = m[1];
      if ((m = l.match(/embedded nsqd (\S+) \(http (\S+)\)/))) [p.nsqd, p.nsqdHTTP] = [m[1], m[2]];
      if ((m = l.match(/^\s+admin token\s+(\/\S+)/))) p.token = readFileSync(m[1], "utf8").trim();
      if ((m = l.match(/^\s+admin\s+(http\S+)/))) {
        p.admin = m[1];
        clearTimeout(timer);
        res(p);
      }
    });
  });
}

/** Waits until the process's /readyz answers 200. */
export async function waitReady(p, timeoutMs = 90000) {
  const deadline = Date.now() + timeoutMs;
  let last = "";
  while (Date.now() < deadline) {
    try {
      const r = await fetch(p.admin + "/readyz");
      if (r.ok) return;
      last = `${r.status} ${(await r.text()).trim()}`;
    } catch (err) {
      last = String(err);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${p.name} not ready within ${timeoutMs}ms: ${last}`);
}

/** Stops every process and removes the temporary files. */
export function cleanup() {
  for (const c of children) c.kill("SIGKILL");
  rmSync(tmp, { recursive: true, force: true });
}
process.on("exit", () => {
  for (const c of children) c.kill("SIGKILL");
});
