// Shared by the docs and accessibility tests: the real local server (`target/debug/lambent`) on a fresh
// database, an admin with a known password, and Debian's headless Chromium driven by playwright-core.
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import net from "node:net";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "../..");
export const shots = path.join(here, "screenshots");
const lambent = path.join(process.env.CARGO_TARGET_DIR || path.join(root, "target"), "debug/lambent");
const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
export const PASSWORD = "first-run-password";
export const DESKTOP = { width: 1280, height: 900 };
export const PHONE = { width: 390, height: 844 };

export const freePort = () => new Promise((resolve) => {
  const server = net.createServer().listen(0, "127.0.0.1", () => { const { port } = server.address(); server.close(() => resolve(port)); });
});

export async function waitForPort(port) {
  for (let i = 0; i < 300; i++) {
    const ok = await new Promise((resolve) => {
      const socket = net.connect(port, "127.0.0.1", () => { socket.end(); resolve(true); }).on("error", () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`nothing listens on ${port}`);
}

/** Starts the server and the browser; `stop()` ends both. No model upstream unless `env` names one (the
 * variables in `env` override the defaults; one set to undefined is left unset). */
export async function start(overrides = {}) {
  fs.mkdirSync(shots, { recursive: true });
  const work = fs.mkdtempSync(path.join(os.tmpdir(), "lambent-docs-"));
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const env = { ...process.env, DATABASE_URL: `file:${work}/lambent.db`, BIND: `127.0.0.1:${port}`,
    OPENAI_API_KEY: "sk-unused", OPENAI_BASE_URL: "http://127.0.0.1:9/v1",
    RUST_LOG: "warn", ...overrides };
  for (const [key, value] of Object.entries(env)) if (value === undefined) delete env[key];
  execFileSync(lambent, ["migrate"], { env });
  execFileSync(lambent, ["createsuperuser", "--username", "admin"], { env, input: `${PASSWORD}\n` });
  const server = spawn(lambent, ["serve"], { env, stdio: ["ignore", "ignore", "inherit"] });
  await waitForPort(port);
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox", "--disable-gpu", "--disable-quic",
    "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"] });
  const stop = async () => {
    await browser.close();
    server.kill();
    fs.rmSync(work, { recursive: true, force: true });
  };
  return { base, browser, stop };
}

/** A new page in its own context; every console warning and error lands in `page.messages`. */
export async function newPage(browser, viewport = DESKTOP) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  page.messages = [];
  page.on("console", (message) => {
    if (["error", "warning"].includes(message.type())) page.messages.push(`${message.type()}: ${message.text()}`);
  });
  page.on("pageerror", (error) => page.messages.push(`pageerror: ${error.message}`));
  return page;
}

/** Logs in through the site's own form, as a user would. */
export async function logIn(page, base, to = "/dashboard/") {
  await page.goto(`${base}${to}`);
  await page.getByLabel("Username").fill("admin");
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Log in" }).click();
  await page.locator("#whoami").filter({ hasText: "admin" }).waitFor();
}

export async function apiToken(base) {
  const res = await fetch(`${base}/api/auth/login/`, { method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ username: "admin", password: PASSWORD }) });
  assert.equal(res.status, 200);
  return (await res.json()).token;
}

export const shot = (page, name, fullPage = false) => page.screenshot({ path: path.join(shots, `${name}.png`), fullPage });
