// The pages in a real headless Chromium (Debian's), driven by playwright-core, against the real local server
// (`target/debug/lambent`) on a fresh database and a fake OpenAI upstream on 127.0.0.1.
// Screenshots of every page go to site/tests/screenshots/.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import http from "node:http";
import net from "node:net";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "../..");
const shots = path.join(here, "screenshots");
// The binary scripts/test built: under CARGO_TARGET_DIR when set, as cargo puts it.
const lambent = path.join(process.env.CARGO_TARGET_DIR || path.join(root, "target"), "debug/lambent");
const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
const PASSWORD = "first-run-password";

// ---- A fake Responses API: scripted replies shaped like the recorded transcripts ----------------------------

const replies = [];
const received = [];
let seq = 0;
const frame = (event) => `event: ${event.type}\ndata: ${JSON.stringify({ ...event, sequence_number: seq++ })}\n\n`;
const response = (id, status, output = []) => ({ id, object: "response", created_at: 1764000000, status, model: "gpt-4.1",
  output, usage: status === "completed" ? { input_tokens: 5, output_tokens: 5, total_tokens: 10 } : null });

function textReply(id, deltas, gate) {
  const item = { id: `msg_${id}`, type: "message", status: "completed", role: "assistant",
    content: [{ type: "output_text", text: deltas.join(""), annotations: [] }] };
  const steps = [{ type: "response.created", response: response(id, "in_progress") }];
  deltas.forEach((delta, i) => {
    steps.push({ type: "response.output_text.delta", item_id: item.id, output_index: 0, content_index: 0, delta });
    if (i === 0 && gate) steps.push({ gate });
  });
  steps.push({ type: "response.output_item.done", output_index: 0, item });
  steps.push({ type: "response.completed", response: response(id, "completed", [item]) });
  return steps;
}

function callReply(id, calls) {
  const steps = [{ type: "response.created", response: response(id, "in_progress") }];
  const output = calls.map(([callId, name, args], i) => {
    const item = { id: `fc_${id}_${i}`, type: "function_call", status: "completed", arguments: args, call_id: callId, name };
    steps.push({ type: "response.output_item.done", output_index: i, item });
    return item;
  });
  steps.push({ type: "response.completed", response: response(id, "completed", output) });
  return steps;
}

const fake = http.createServer(async (req, res) => {
  let body = "";
  for await (const chunk of req) body += chunk;
  received.push(JSON.parse(body || "null"));
  const steps = replies.shift();
  if (!steps) { res.writeHead(500); return res.end("fake: no scripted reply"); }
  res.writeHead(200, { "content-type": "text/event-stream" });
  for (const step of steps) {
    if (step.gate) await step.gate.promise;
    else res.write(frame(step));
  }
  res.end();
});

function gate() {
  let open;
  const promise = new Promise((resolve) => { open = resolve; });
  return { promise, open };
}

// ---- The server and the browser ----------------------------------------------------------------------------

const freePort = () => new Promise((resolve) => {
  const server = net.createServer().listen(0, "127.0.0.1", () => { const { port } = server.address(); server.close(() => resolve(port)); });
});

async function waitForPort(port) {
  for (let i = 0; i < 300; i++) {
    const ok = await new Promise((resolve) => {
      const socket = net.connect(port, "127.0.0.1", () => { socket.end(); resolve(true); }).on("error", () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`nothing listens on ${port}`);
}

let server, browser, base, work;
let injected = false;
const foreign = [];
const consoleErrors = [];

before(async () => {
  fs.mkdirSync(shots, { recursive: true });
  work = fs.mkdtempSync(path.join(os.tmpdir(), "lambent-browser-"));
  await new Promise((resolve) => fake.listen(0, "127.0.0.1", resolve));
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  const env = { ...process.env, DATABASE_URL: `file:${work}/lambent.db`, BIND: `127.0.0.1:${port}`,
    OPENAI_API_KEY: "sk-browser", OPENAI_BASE_URL: `http://127.0.0.1:${fake.address().port}/v1`,
    LAMBENT_SITE_DIR: path.join(root, "site/dist"), RUST_LOG: "warn" };
  execFileSync(lambent, ["migrate"], { env });
  // The seed's first run starts from an admin account; ours is made here with a known password.
  execFileSync(lambent, ["createsuperuser", "--username", "admin"], { env, input: `${PASSWORD}\n` });
  server = spawn(lambent, ["serve"], { env, stdio: ["ignore", "ignore", "inherit"] });
  await waitForPort(port);
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox", "--disable-gpu", "--disable-quic",
    "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"] });
});

after(async () => {
  await browser?.close();
  server?.kill();
  fake.close();
});

async function newPage() {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  page.on("request", (request) => {
    const url = new URL(request.url());
    if (!["127.0.0.1", ""].includes(url.hostname) && url.protocol !== "data:" && url.protocol !== "blob:") foreign.push(request.url());
  });
  page.on("console", (message) => { if (message.type() === "error") consoleErrors.push(`${page.url()}: ${message.text()}`); });
  page.on("pageerror", (error) => consoleErrors.push(`${page.url()}: ${error.message}`));
  page.on("dialog", (dialog) => {
    if (dialog.type() === "alert" && dialog.message() === "1") injected = true;
    dialog.accept();
  });
  return page;
}

async function logIn(page, to) {
  await page.goto(`${base}${to}`);
  await page.getByLabel("Username").fill("admin");
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Log in" }).click();
  await page.locator("#whoami").filter({ hasText: "admin" }).waitFor();
}

async function apiToken() {
  const res = await fetch(`${base}/api/auth/login/`, { method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ username: "admin", password: PASSWORD }) });
  return (await res.json()).token;
}

async function createViaApi(pathname, body) {
  const res = await fetch(`${base}${pathname}`, { method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${await apiToken()}` }, body: JSON.stringify(body) });
  const text = await res.text();
  assert.equal(res.status, 201, text);
  return JSON.parse(text);
}

async function newItem(page, section, fill) {
  await page.getByRole("tab", { name: section, exact: true }).click();
  await page.locator("#resource-title").filter({ hasText: section }).waitFor();
  await page.getByRole("button", { name: "New" }).click();
  await fill(page.locator("#editor"));
}

// ---- 1. The seed's first run, all from the browser ---------------------------------------------------------

test("a first run: log in, create an agent, a tool, a template, link them, then chat", async () => {
  const page = await newPage();
  await logIn(page, "/dashboard/");
  await page.screenshot({ path: path.join(shots, "dashboard.png"), fullPage: true });

  await newItem(page, "Agents", async (editor) => {
    await editor.getByLabel("Name", { exact: true }).fill("Default Agent");
    await editor.getByLabel("Model").fill("gpt-4.1");
    await editor.getByLabel("System prompt").fill("You are a helpful assistant.");
    await editor.getByLabel("Default agent").check();
    await editor.getByRole("button", { name: "Save" }).click();
  });
  await page.locator("#items tbody tr").filter({ hasText: "Default Agent" }).waitFor();

  // A bad name comes back as a field error next to the field; bad JSON never leaves the page.
  await newItem(page, "Tools", async (editor) => {
    await editor.getByLabel("Name (letters, digits, _ and -)").fill("bad name");
    await editor.getByLabel("Parameters (JSON Schema)").fill("{not json");
    await editor.getByRole("button", { name: "Save" }).click();
    await editor.locator('[data-error-for="parameters"]').filter({ hasText: "Not valid JSON" }).waitFor();
    await editor.getByLabel("Parameters (JSON Schema)").fill('{"type": "object", "properties": {"text": {"type": "string"}}}');
    await editor.getByRole("button", { name: "Save" }).click();
    await editor.locator('[data-error-for="name"]').filter({ hasText: "Tool names are 1 to 64 characters" }).waitFor();
    await page.screenshot({ path: path.join(shots, "dashboard-field-error.png") });
    await editor.getByLabel("Name (letters, digits, _ and -)").fill("echo");
    await editor.getByRole("button", { name: "Save" }).click();
  });
  await page.locator("#items tbody tr").filter({ hasText: "echo" }).waitFor();

  await newItem(page, "Templates", async (editor) => {
    await editor.getByLabel("Name", { exact: true }).fill("Support Template");
    await editor.getByLabel(/^Template/).fill("Answer briefly.");
    await editor.getByLabel("Agent (empty: global)").selectOption({ label: "Default Agent (#1)" });
    await editor.getByLabel("Default in its scope").check();
    await editor.getByRole("button", { name: "Save" }).click();
  });
  await page.locator("#items tbody tr").filter({ hasText: "Support Template" }).waitFor();

  await newItem(page, "Agent tools", async (editor) => {
    await editor.getByLabel("Agent", { exact: true }).selectOption({ label: "Default Agent (#1)" });
    await editor.getByLabel("Tool", { exact: true }).selectOption({ label: "echo (#1)" });
    await editor.getByRole("button", { name: "Save" }).click();
  });
  await page.locator("#items tbody tr td").first().waitFor();
  assert.equal(await page.locator("#items tbody tr").count(), 1);

  replies.push(textReply("resp_first", ["Hello", "! How can I help?"]));
  await page.goto(`${base}/playground/`);
  // The default agent is preselected once the agents have loaded.
  await page.locator("#agent option:checked").filter({ hasText: "Default Agent (default)" }).waitFor({ state: "attached" });
  await page.getByLabel("Message").fill("Hello");
  await page.getByRole("button", { name: "Send" }).click();
  await page.locator(".message.assistant").filter({ hasText: "Hello! How can I help?" }).waitFor();
  const request = received.at(-1);
  assert.equal(request.instructions, "You are a helpful assistant.\n\nAnswer briefly.");
  assert.deepEqual(request.tools.map((t) => t.name), ["echo"]);
  await page.screenshot({ path: path.join(shots, "playground.png"), fullPage: true });
  await page.context().close();
});

// ---- 2. Streaming is visible -------------------------------------------------------------------------------

test("the first words appear before the upstream has sent its last delta", async () => {
  const page = await newPage();
  await logIn(page, "/playground/");
  const held = gate();
  replies.push(textReply("resp_slow", ["First words", " and the rest."], held));
  await page.getByLabel("Message").fill("Tell me slowly");
  await page.getByRole("button", { name: "Send" }).click();
  await page.locator(".message.assistant").filter({ hasText: "First words" }).waitFor();
  assert.equal(await page.locator(".message.assistant").last().textContent(), "First words", "the rest is still held upstream");
  assert.equal(await page.getByRole("button", { name: "Stop" }).isEnabled(), true);
  held.open();
  await page.locator(".message.assistant").filter({ hasText: "First words and the rest." }).waitFor();
  assert.ok((await page.locator("#raw-events").textContent()).includes("response.completed"), "raw events are shown");
  await page.context().close();
});

test("Stop cancels the turn on the server, which keeps the partial answer", async () => {
  const page = await newPage();
  await logIn(page, "/playground/");
  const held = gate();
  replies.push(textReply("resp_stopped", ["Partial", " never sent"], held));
  await page.getByLabel("Message").fill("Start, then stop");
  await page.getByRole("button", { name: "Send" }).click();
  await page.locator(".message.assistant").filter({ hasText: "Partial" }).waitFor();
  await page.getByRole("button", { name: "Stop" }).click();
  // The server ends the stream itself: an error frame, then done (the upstream is still holding back).
  await page.locator("#chat-error").filter({ hasText: "(cancelled)" }).waitFor();
  await page.getByRole("button", { name: "Send" }).waitFor({ state: "visible" });
  assert.equal(await page.getByRole("button", { name: "Send" }).isEnabled(), true);
  const token = await apiToken();
  const sessions = await (await fetch(`${base}/api/sessions/?page_size=100`, { headers: { authorization: `Bearer ${token}` } })).json();
  const last = sessions.results.at(-1);
  const messages = await (await fetch(`${base}/api/sessions/${last.id}/messages/`, { headers: { authorization: `Bearer ${token}` } })).json();
  const answer = messages.results.at(-1);
  assert.deepEqual([answer.role, answer.content, answer.status], ["assistant", "Partial", "incomplete"]);
  await page.context().close();
});

// ---- 3. Tool calls -----------------------------------------------------------------------------------------

test("tool calls become cards whose outputs continue the answer, one card per parallel call", async () => {
  const page = await newPage();
  await logIn(page, "/playground/");
  replies.push(callReply("resp_tool", [["call_one", "echo", '{"text":"hi"}']]));
  replies.push(textReply("resp_after_tool", ["The tool said hi."]));
  await page.getByLabel("Message").fill("Use the tool");
  await page.getByRole("button", { name: "Send" }).click();
  const card = page.locator('[data-call-id="call_one"]');
  await card.waitFor();
  await card.getByLabel("Output for echo").fill("hi");
  await page.screenshot({ path: path.join(shots, "playground-tool-call.png"), fullPage: true });
  await card.getByRole("button", { name: "Submit output" }).click();
  await page.locator(".message.assistant").filter({ hasText: "The tool said hi." }).waitFor();
  assert.deepEqual(received.at(-1).input, [{ type: "function_call_output", call_id: "call_one", output: "hi" }]);

  replies.push(callReply("resp_pair", [["call_a", "echo", '{"text":"a"}'], ["call_b", "echo", '{"text":"b"}']]));
  replies.push(textReply("resp_after_pair", ["Both done."]));
  await page.getByLabel("Message").fill("Use it twice");
  await page.getByRole("button", { name: "Send" }).click();
  await page.locator('[data-call-id="call_b"]').waitFor();
  assert.equal(await page.locator('[data-call-id^="call_"] form').count(), 2);
  await page.locator('[data-call-id="call_a"]').getByLabel("Output for echo").fill("A");
  await page.locator('[data-call-id="call_a"]').getByRole("button", { name: "Submit output" }).click();
  await page.locator('[data-call-id="call_a"]').filter({ hasText: "waiting for: call_b" }).waitFor();
  await page.locator('[data-call-id="call_b"]').getByLabel("Output for echo").fill("B");
  await page.locator('[data-call-id="call_b"]').getByRole("button", { name: "Submit output" }).click();
  await page.locator(".message.assistant").filter({ hasText: "Both done." }).waitFor();
  assert.deepEqual(received.at(-1).input.map((i) => i.output), ["A", "B"]);
  await page.context().close();
});

// ---- 4. API docs -------------------------------------------------------------------------------------------

test("Swagger UI and Redoc render every operation, offline and without console errors", async () => {
  const doc = await (await fetch(`${base}/api/openapi.json`)).json();
  const operations = Object.values(doc.paths).reduce((n, item) => n + Object.keys(item).length, 0);
  const page = await newPage();
  const before = consoleErrors.length;
  await page.goto(`${base}/swagger/`);
  await page.locator(".opblock").nth(operations - 1).waitFor();
  assert.equal(await page.locator(".opblock").count(), operations);
  assert.ok((await page.locator("main.container").textContent()).includes("Authorization: Bearer"));
  await page.screenshot({ path: path.join(shots, "swagger.png"), fullPage: false });

  await page.goto(`${base}/redoc/`);
  await page.locator('[data-section-id^="operation/"]').nth(operations - 1).waitFor({ timeout: 60000 });
  assert.equal(await page.locator('[data-section-id^="operation/"]').count(), operations);
  await page.screenshot({ path: path.join(shots, "redoc.png"), fullPage: false });
  await page.goto(`${base}/`);
  await page.screenshot({ path: path.join(shots, "index.png"), fullPage: true });

  assert.deepEqual(consoleErrors.slice(before), []);
  assert.deepEqual(foreign, [], "no request left 127.0.0.1");
  await page.context().close();
});

// ---- 5. Hostile names --------------------------------------------------------------------------------------

test("an agent named like an HTML tag shows as text on every page that shows names", async () => {
  const name = "<img src=x onerror=alert(1)>";
  const agent = await createViaApi("/api/agents/", { name });
  const page = await newPage();
  await logIn(page, "/dashboard/");
  await page.locator("#items tbody tr").filter({ hasText: name }).waitFor();
  await page.getByRole("tab", { name: "Agent tools", exact: true }).click();
  await page.getByRole("button", { name: "New" }).click();
  const option = page.locator("#field-agent option").filter({ hasText: name });
  await option.waitFor({ state: "attached" });
  assert.equal(await option.count(), 1);
  await page.getByRole("button", { name: "Cancel" }).click();
  await page.goto(`${base}/playground/`);
  await page.locator("#agent option").filter({ hasText: name }).waitFor({ state: "attached" });
  await page.locator("#agent").selectOption(String(agent.id));
  await page.screenshot({ path: path.join(shots, "playground-hostile-name.png") });
  for (const url of ["/dashboard/", "/playground/"]) {
    await page.goto(`${base}${url}`);
    await page.waitForTimeout(300);
    assert.equal(await page.locator('img[src="x"]').count(), 0, `${url}: no injected element`);
  }
  assert.equal(injected, false, "no injected script ran");
  await page.context().close();
});
