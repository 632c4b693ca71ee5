// The seed's first-run story, as a new user lives it: `cargo run` (the plain `lambent` command: migrate, serve)
// on an empty database prints the admin's password; with it, in a real Chromium, the user logs in to the
// dashboard, creates a default agent and a tool, links them, and in the playground gets a streamed answer with a
// tool call, answers the call, and reads the continuation. A fake Responses API on 127.0.0.1 stands in for
// OpenAI; nothing else is prepared.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { fake, replies, received, textReply, callReply } from "./fake-openai.mjs";
import { freePort } from "./helpers.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "../..");
const shots = path.join(here, "screenshots");
const lambent = path.join(process.env.CARGO_TARGET_DIR || path.join(root, "target"), "debug/lambent");
const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";

let server, browser, work, output = "";

before(async () => {
  fs.mkdirSync(shots, { recursive: true });
  work = fs.mkdtempSync(path.join(os.tmpdir(), "lambent-first-run-"));
  await new Promise((resolve) => fake.listen(0, "127.0.0.1", resolve));
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox", "--disable-gpu", "--disable-quic",
    "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"] });
});

after(async () => {
  await browser?.close();
  server?.kill();
  fake.close();
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

/** `lambent` with no command, as `cargo run` starts it, in an empty folder: resolves with the URL it says to open. */
async function cargoRun(port) {
  const env = { PATH: process.env.PATH, HOME: work, DATABASE_URL: `file:${work}/lambent.db`, BIND: `127.0.0.1:${port}`,
    OPENAI_API_KEY: "sk-first-run", OPENAI_BASE_URL: `http://127.0.0.1:${fake.address().port}/v1`, RUST_LOG: "warn" };
  server = spawn(lambent, [], { cwd: work, env, stdio: ["ignore", "pipe", "pipe"] });
  server.stdout.on("data", (chunk) => { output += chunk; });
  server.stderr.on("data", (chunk) => { output += chunk; });
  for (let i = 0; i < 300 && !/Log in at (\S+)/.test(output); i++) await new Promise((r) => setTimeout(r, 100));
  const login = output.match(/Log in at (\S+)/);
  assert.ok(login, `the first run says where to log in:\n${output}`);
  return login[1];
}

test("from an empty database, cargo run's printed password leads to a streamed answer with a tool call", async () => {
  const dashboard = await cargoRun(await freePort());
  const password = output.match(/created the staff user "admin" with password (\S+)/)?.[1];
  assert.ok(password, `the first run prints the admin's password:\n${output}`);

  const page = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
  const errors = [];
  page.on("pageerror", (error) => errors.push(error.message));
  await page.goto(dashboard);
  await page.getByLabel("Username").fill("admin");
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Log in" }).click();
  await page.locator("#whoami").filter({ hasText: "admin" }).waitFor();
  // A fresh database: every list is empty and offers its first item.
  await page.getByRole("button", { name: "Create your first agent" }).click();
  const editor = page.locator("#editor");
  await editor.getByLabel("Name", { exact: true }).fill("Default Agent");
  await editor.getByLabel("System prompt").fill("You are a helpful assistant.");
  await editor.getByLabel("Default agent").check();
  await editor.getByRole("button", { name: "Save" }).click();
  await page.locator("#items tbody tr").filter({ hasText: "Default Agent" }).waitFor();

  await page.getByRole("tab", { name: "Tools", exact: true }).click();
  await page.getByRole("button", { name: "Create your first tool" }).click();
  await editor.getByLabel("Name (letters, digits, _ and -)").fill("lookup");
  await editor.getByLabel("Parameters (JSON Schema)").fill('{"type": "object", "properties": {"city": {"type": "string"}}}');
  await editor.getByRole("button", { name: "Save" }).click();
  await page.locator("#items tbody tr").filter({ hasText: "lookup" }).waitFor();

  await page.getByRole("tab", { name: "Agent tools", exact: true }).click();
  await page.getByRole("button", { name: "Create your first agent-tool link" }).click();
  await editor.getByLabel("Agent", { exact: true }).selectOption({ label: "Default Agent (#1)" });
  await editor.getByLabel("Tool", { exact: true }).selectOption({ label: "lookup (#1)" });
  await editor.getByRole("button", { name: "Save" }).click();
  await page.locator("#items tbody tr").filter({ hasText: "lookup" }).waitFor();

  replies.push(callReply("resp_call", [["call_city", "lookup", '{"city":"Paris"}']]));
  replies.push(textReply("resp_answer", ["It is ", "sunny in Paris."]));
  await page.getByRole("link", { name: "Playground" }).click();
  await page.locator("#agent option:checked").filter({ hasText: "Default Agent (default)" }).waitFor({ state: "attached" });
  await page.getByLabel("Message").fill("What's the weather in Paris?");
  await page.getByLabel("Message").press("Enter");
  const card = page.locator('[data-call-id="call_city"]');
  await card.waitFor();
  await card.getByLabel("Output for lookup").fill('{"sky": "sunny"}');
  await card.getByRole("button", { name: "Submit output" }).click();
  await page.locator(".message.assistant").filter({ hasText: "It is sunny in Paris." }).waitFor();
  await page.screenshot({ path: path.join(shots, "first-run.png"), fullPage: true });

  // What went upstream: the agent's instructions and tool, then the call's output on the same response chain.
  assert.equal(received[0].instructions, "You are a helpful assistant.");
  assert.deepEqual(received[0].tools.map((t) => t.name), ["lookup"]);
  assert.deepEqual(received[1].input, [{ type: "function_call_output", call_id: "call_city", output: '{"sky": "sunny"}' }]);
  assert.equal(received[1].previous_response_id, "resp_call");
  // A message's words, without the controls it carries once its turn is done ("Fork from here").
  const order = await page.locator("#history").evaluate((history) => [...history.children].map((node) =>
    node.classList.contains("tool-card") ? `tool ${node.dataset.callId}`
      : `${node.dataset.role}: ${[...node.childNodes].filter((n) => !n.matches?.(".fork-from-here, form.fork")).map((n) => n.textContent).join("")}`));
  assert.deepEqual(order, ["user: What's the weather in Paris?", "tool call_city", "assistant: It is sunny in Paris."]);
  assert.deepEqual(errors, []);
  await page.context().close();
});
