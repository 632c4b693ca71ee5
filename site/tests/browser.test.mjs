// The pages in a real headless Chromium (Debian's), driven by playwright-core, against the real local server
// (`target/debug/lambent`) on a fresh database and a fake OpenAI upstream on 127.0.0.1.
// Screenshots of every page go to site/tests/screenshots/.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { fake, replies, received, textReply, callReply, gate } from "./fake-openai.mjs";
import { freePort, waitForPort } from "./helpers.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "../..");
const shots = path.join(here, "screenshots");
// The binary scripts/test built: under CARGO_TARGET_DIR when set, as cargo puts it.
const lambent = path.join(process.env.CARGO_TARGET_DIR || path.join(root, "target"), "debug/lambent");
const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
const PASSWORD = "first-run-password";

// ---- The server and the browser ----------------------------------------------------------------------------

let server, browser, base, work;
let injected = false;
const foreign = [];
const consoleErrors = [];
const extraServers = [];

/** A migrated database with the staff user admin, and `lambent serve` on it: its base URL. */
async function startServer(dir, overrides = {}) {
  const port = await freePort();
  const env = { ...process.env, DATABASE_URL: `file:${dir}/lambent.db`, BIND: `127.0.0.1:${port}`,
    OPENAI_API_KEY: "sk-browser", OPENAI_BASE_URL: `http://127.0.0.1:${fake.address().port}/v1`,
    RUST_LOG: "warn", ...overrides };
  for (const [key, value] of Object.entries(env)) if (value === undefined) delete env[key];
  execFileSync(lambent, ["migrate"], { env });
  // The seed's first run starts from an admin account; ours is made here with a known password.
  execFileSync(lambent, ["createsuperuser", "--username", "admin"], { env, input: `${PASSWORD}\n` });
  const child = spawn(lambent, ["serve"], { env, stdio: ["ignore", "ignore", "inherit"] });
  await waitForPort(port);
  return { url: `http://127.0.0.1:${port}`, child };
}

before(async () => {
  fs.mkdirSync(shots, { recursive: true });
  work = fs.mkdtempSync(path.join(os.tmpdir(), "lambent-browser-"));
  await new Promise((resolve) => fake.listen(0, "127.0.0.1", resolve));
  ({ url: base, child: server } = await startServer(work));
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox", "--disable-gpu", "--disable-quic",
    "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"] });
});

after(async () => {
  await browser?.close();
  server?.kill();
  for (const child of extraServers) child.kill();
  fake.close();
});

const PHONE = { width: 390, height: 844 };

async function newPage(viewport = { width: 1280, height: 900 }) {
  const context = await browser.newContext({ viewport });
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

async function logIn(page, to, { at = base, username = "admin", password = PASSWORD } = {}) {
  await page.goto(`${at}${to}`);
  await page.getByLabel("Username").fill(username);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Log in" }).click();
  await page.locator("#whoami").filter({ hasText: username }).waitFor();
}

async function apiToken(at = base) {
  const res = await fetch(`${at}/api/auth/login/`, { method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ username: "admin", password: PASSWORD }) });
  return (await res.json()).token;
}

async function getViaApi(pathname) {
  const res = await fetch(`${base}${pathname}`, { headers: { authorization: `Bearer ${await apiToken()}` } });
  assert.equal(res.status, 200, pathname);
  return res.json();
}

/** The conversation as the page shows it, top to bottom: bubbles and tool cards with their outputs. */
const transcript = (page) => page.locator("#history").evaluate((history) => [...history.children].map((node) =>
  node.classList.contains("tool-card")
    ? `tool ${node.dataset.callId}: ${node.querySelector(".tool-output")?.textContent ?? "(waiting)"}`
    // A message's words, without the controls it carries ("Fork from here" and its form).
    : `${node.dataset.role}: ${[...node.childNodes].filter((n) => !n.matches?.(".fork-from-here, form.fork"))
      .map((n) => n.textContent).join("")}`));

/** Nothing is wider than the viewport. */
async function assertNoOverflow(page, label) {
  const widths = await page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
  assert.ok(widths[0] <= widths[1], `${label}: the page is ${widths[0]} px wide in a ${widths[1]} px window`);
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
  // The upstream's last events follow its last delta: shown once they arrive (not necessarily with the text).
  await page.locator("#raw-events").filter({ hasText: "response.completed" }).waitFor({ state: "attached" });
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

test("messages, tool cards with their outputs and answers read in the order they happened, live and after a reload", async () => {
  const page = await newPage();
  await logIn(page, "/playground/");
  replies.push(callReply("resp_order", [["call_order", "echo", '{"text":"x"}']]));
  const held = gate();
  replies.push(textReply("resp_order_after", ["After", " the tool."], held));
  await page.getByLabel("Message").fill("Call it");
  await page.getByRole("button", { name: "Send" }).click();
  const card = page.locator('[data-call-id="call_order"]');
  await card.getByLabel("Output for echo").fill("x out");
  await card.getByRole("button", { name: "Submit output" }).click();
  await page.locator(".message.assistant").filter({ hasText: "After" }).waitFor();
  // While the continuation streams, no output can be submitted a second time.
  assert.equal(await page.getByRole("button", { name: "Submit output" }).count(), 0, "no Submit output while streaming");
  held.open();
  await page.locator(".message.assistant").filter({ hasText: "After the tool." }).waitFor();
  replies.push(textReply("resp_order_next", ["Next answer."]));
  await page.getByLabel("Message").fill("And then?");
  await page.getByRole("button", { name: "Send" }).click();
  await page.locator(".message.assistant").filter({ hasText: "Next answer." }).waitFor();
  const expected = ["user: Call it", "tool call_order: x out", "assistant: After the tool.", "user: And then?",
    "assistant: Next answer."];
  assert.deepEqual(await transcript(page), expected);
  await page.screenshot({ path: path.join(shots, "playground-order.png"), fullPage: true });

  const session = (await getViaApi("/api/sessions/?page_size=100")).results.at(-1);
  await page.reload();
  await page.locator(`#session option[value="${session.id}"]`).waitFor({ state: "attached" });
  await page.locator("#session").selectOption(String(session.id));
  await page.locator(".message.assistant").filter({ hasText: "Next answer." }).waitFor();
  assert.deepEqual(await transcript(page), expected, "the history reads as the live page did");
  const label = await page.locator("#session option:checked").textContent();
  assert.doesNotMatch(label, /\d{2}:\d{2}:\d{2}\.\d+|T\d{2}:/, `a readable session label: ${label}`);
  await page.context().close();
});

test("Enter sends, Shift+Enter starts a new line, and the page says so", async () => {
  const page = await newPage();
  await logIn(page, "/playground/");
  assert.match(await page.locator("#chat-form").textContent(), /Enter sends/);
  replies.push(textReply("resp_enter", ["Sent by Enter."]));
  await page.getByLabel("Message").fill("First line");
  await page.getByLabel("Message").press("Shift+Enter");
  await page.getByLabel("Message").pressSequentially("second line");
  assert.equal(await page.getByLabel("Message").inputValue(), "First line\nsecond line");
  await page.getByLabel("Message").press("Enter");
  await page.locator(".message.assistant").filter({ hasText: "Sent by Enter." }).waitFor();
  assert.ok(JSON.stringify(received.at(-1).input).includes("First line\\nsecond line"), "the newline is kept");
  await page.context().close();
});

test("a refused message shows why and its bubble says it was not sent: a missing template variable, then given", async () => {
  const agent = await createViaApi("/api/agents/", { name: "Greeter", system_prompt: "Be kind." });
  await createViaApi("/api/templates/", { name: "Greeting", template: "Greet {{customer}}.", agent: agent.id, is_default: true });
  const page = await newPage();
  await logIn(page, "/playground/");
  await page.locator(`#agent option[value="${agent.id}"]`).waitFor({ state: "attached" });
  await page.locator("#agent").selectOption(String(agent.id));
  const calls = received.length;
  await page.getByLabel("Message").fill("Hi there");
  await page.getByRole("button", { name: "Send" }).click();
  await page.locator("#chat-error").filter({ hasText: 'Missing value for template variable "customer"' }).waitFor();
  await page.locator(".message.user.not-sent").filter({ hasText: "Hi there" }).waitFor();
  assert.equal(received.length, calls, "nothing went upstream");
  await page.screenshot({ path: path.join(shots, "playground-refused.png"), fullPage: true });
  // The missing variable is offered as a field; the message is back in the box.
  await page.getByLabel("Value of customer").fill("Ada");
  assert.equal(await page.getByLabel("Message").inputValue(), "Hi there");
  replies.push(textReply("resp_vars", ["Hello Ada."]));
  await page.getByRole("button", { name: "Send" }).click();
  await page.locator(".message.assistant").filter({ hasText: "Hello Ada." }).waitFor();
  assert.equal(received.at(-1).instructions, "Be kind.\n\nGreet Ada.");
  assert.equal(await page.locator("#chat-error").textContent(), "");
  await page.setViewportSize(PHONE);
  await page.screenshot({ path: path.join(shots, "playground-variables-phone.png"), fullPage: true });
  await page.context().close();
});

test("a refused message shows why: another turn still running (409) and no default agent (400)", async () => {
  const token = await apiToken();
  const held = gate();
  replies.push(textReply("resp_running", ["Running", " done."], held));
  const agents = (await getViaApi("/api/agents/?page_size=100")).results;
  const running = await fetch(`${base}/api/agent/stream/`, { method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
    body: JSON.stringify({ message: "Hold on", agent_id: agents.find((a) => a.name === "Default Agent").id }) });
  const sessionId = running.headers.get("lambent-session-id");
  const page = await newPage();
  await logIn(page, "/playground/");
  await page.locator(`#session option[value="${sessionId}"]`).waitFor({ state: "attached" });
  await page.locator("#session").selectOption(sessionId);
  await page.locator(".message.user").filter({ hasText: "Hold on" }).waitFor();
  await page.getByLabel("Message").fill("Me too");
  await page.getByRole("button", { name: "Send" }).click();
  await page.locator("#chat-error").filter({ hasText: "Another turn is still running" }).waitFor();
  await page.locator(".message.user.not-sent").filter({ hasText: "Me too" }).waitFor();
  held.open();
  await running.text();
  await page.context().close();

  await createViaApi("/api/users/", { username: "newcomer", password: "newcomer-password", is_staff: false, is_active: true });
  const fresh = await newPage();
  await logIn(fresh, "/playground/", { username: "newcomer", password: "newcomer-password" });
  await fresh.locator("#no-agents").filter({ hasText: "no agents" }).waitFor();
  await fresh.getByLabel("Message").fill("Anyone?");
  await fresh.getByRole("button", { name: "Send" }).click();
  await fresh.locator("#chat-error").filter({ hasText: "no agent is marked is_default" }).waitFor();
  await fresh.locator(".message.user.not-sent").filter({ hasText: "Anyone?" }).waitFor();
  await fresh.context().close();
});

test("without OPENAI_API_KEY a message shows the server's 503 and is marked not sent", async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "lambent-browser-nokey-"));
  const { url, child } = await startServer(dir, { OPENAI_API_KEY: undefined });
  extraServers.push(child);
  // The provider is the agent's (issue 25), so the agent is resolved first: a default agent, as a user has one.
  const created = await fetch(`${url}/api/agents/`, { method: "POST", headers: { "content-type": "application/json",
    authorization: `Bearer ${await apiToken(url)}` }, body: JSON.stringify({ name: "Keyless", is_default: true }) });
  assert.equal(created.status, 201);
  const page = await newPage();
  await logIn(page, "/playground/", { at: url });
  await page.getByLabel("Message").fill("Is anyone there?");
  await page.getByRole("button", { name: "Send" }).click();
  await page.locator("#chat-error").filter({ hasText: "OPENAI_API_KEY" }).waitFor();
  await page.locator(".message.user.not-sent").filter({ hasText: "Is anyone there?" }).waitFor();
  assert.equal(await page.getByRole("button", { name: "Send" }).isEnabled(), true);
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

// ---- 6. The dashboard reads like an admin ------------------------------------------------------------------

test("dashboard lists show names, readable headers and dates; the current tab is marked and the address picks it", async () => {
  const page = await newPage();
  await logIn(page, "/dashboard/#agent-tools");
  await page.locator("#resource-title").filter({ hasText: "Agent tools" }).waitFor();
  const link = page.locator("#items tbody tr").filter({ hasText: "echo" }).first();
  await link.waitFor();
  assert.match(await link.textContent(), /Default Agent/, "the link names its agent");
  assert.equal(await page.getByRole("tab", { name: "Agent tools" }).getAttribute("aria-selected"), "true");
  const tab = await page.getByRole("tab", { name: "Agent tools" }).evaluate((a) => getComputedStyle(a).fontWeight);
  const other = await page.getByRole("tab", { name: "Agents", exact: true }).evaluate((a) => getComputedStyle(a).fontWeight);
  assert.notEqual(tab, other, "the current tab looks different");

  // A link to another section, from within the page, switches to it.
  await page.evaluate(() => { location.hash = "#sessions"; });
  await page.locator("#resource-title").filter({ hasText: "Sessions" }).waitFor();
  await page.locator("#items tbody tr").first().waitFor();
  const headers = await page.locator("#items thead th").allTextContents();
  assert.deepEqual(headers.filter((h) => /_/.test(h)), [], `readable headers: ${headers}`);
  const session = await page.locator("#items tbody tr").first().textContent();
  assert.match(session, /Default Agent/, "a session names its agent");
  assert.doesNotMatch(session, /\d{4}-\d{2}-\d{2}T|\.\d{6}Z/, "dates are readable");
  await page.goBack();
  await page.locator("#resource-title").filter({ hasText: "Agent tools" }).waitFor();

  await page.getByRole("tab", { name: "Agents", exact: true }).click();
  const agent = page.locator("#items tbody tr").filter({ hasText: "Default Agent" });
  await agent.waitFor();
  assert.match(await agent.textContent(), /admin/, "the owner is named");
  assert.deepEqual((await page.locator("#items thead th").allTextContents()).filter((h) => /_/.test(h)), []);
  const button = await page.getByRole("button", { name: "New agent" }).boundingBox();
  assert.ok(button.width < 300, `the New button is a button, not a bar (${button.width} px)`);
  const actions = await agent.getByRole("button", { name: "Delete" }).boundingBox();
  assert.ok(actions.x + actions.width <= 1280, "the Actions column is not clipped");
  await page.screenshot({ path: path.join(shots, "dashboard-agents.png"), fullPage: true });
  await page.context().close();
});

test("an empty list says so and offers the first item; titles are words; an empty model gets the default", async () => {
  await createViaApi("/api/users/", { username: "beginner", password: "beginner-password", is_staff: false, is_active: true });
  const page = await newPage();
  await logIn(page, "/dashboard/", { username: "beginner", password: "beginner-password" });
  await page.locator("#items tbody").filter({ hasText: "No agents yet." }).waitFor();
  await page.screenshot({ path: path.join(shots, "dashboard-empty.png"), fullPage: true });
  await page.getByRole("button", { name: "Create your first agent" }).click();
  const editor = page.locator("#editor");
  assert.equal(await page.locator("#editor-title").textContent(), "New agent");
  assert.equal(await editor.getByLabel("Model").inputValue(), "gpt-4.1", "the default model is a real value");
  await editor.getByLabel("Name", { exact: true }).fill("Mine");
  await editor.getByLabel("Model").fill("");
  await editor.getByRole("button", { name: "Save" }).click();
  const row = page.locator("#items tbody tr").filter({ hasText: "Mine" });
  await row.waitFor();
  assert.match(await row.textContent(), /gpt-4\.1/, "an empty model is the server's default");
  await row.getByRole("button", { name: "Edit" }).click();
  assert.equal(await page.locator("#editor-title").textContent(), "Edit agent Mine");
  await page.getByRole("button", { name: "Cancel" }).click();
  await page.context().close();
});

test("a refused save shows each error where the user looks: focused, summarised by Save, in the user's words", async () => {
  const page = await newPage({ width: 390, height: 600 });
  await logIn(page, "/dashboard/#tools");
  await page.locator("#items tbody tr").filter({ hasText: "echo" }).first().waitFor();
  await page.getByRole("button", { name: "New tool" }).click();
  const editor = page.locator("#editor");
  assert.equal(await page.locator("#editor-title").textContent(), "New tool");
  const font = await editor.getByLabel("Parameters (JSON Schema)").evaluate((t) => getComputedStyle(t).fontFamily);
  assert.match(font, /mono/i, "JSON is edited in a monospace font");
  await editor.getByLabel("Name (letters, digits, _ and -)").fill("echo");
  await editor.getByRole("button", { name: "Save" }).click();
  await editor.locator('[data-error-for="name"]').filter({ hasText: 'A tool named "echo" already exists.' }).waitFor();
  await page.locator("#editor-summary").filter({ hasText: "Name" }).waitFor();
  assert.equal(await page.evaluate(() => document.activeElement?.id), "field-name", "the field in error has the focus");
  const box = await editor.getByLabel("Name (letters, digits, _ and -)").boundingBox();
  assert.ok(box.y >= 0 && box.y + box.height <= 600, "the field in error is in view");
  await page.screenshot({ path: path.join(shots, "dashboard-save-error-phone.png") });
  await page.getByRole("button", { name: "Cancel" }).click();

  await page.evaluate(() => { location.hash = "#agent-tools"; });
  await page.getByRole("button", { name: "New agent-tool link" }).click();
  await editor.getByLabel("Agent", { exact: true }).selectOption({ label: "Default Agent (#1)" });
  await editor.getByLabel("Tool", { exact: true }).selectOption({ label: "echo (#1)" });
  await editor.getByRole("button", { name: "Save" }).click();
  await editor.locator('[data-error-for="non_field_errors"]').filter({ hasText: "This tool is already linked to this agent." }).waitFor();
  await page.context().close();
});

test("at phone width (390 px) no page is wider than the screen and every row's buttons are in reach", async () => {
  const page = await newPage(PHONE);
  await logIn(page, "/dashboard/");
  for (const section of ["agents", "tools", "agent-tools", "templates", "sessions", "tokens", "users"]) {
    await page.evaluate((s) => { location.hash = `#${s}`; }, section);
    await page.locator(`[data-section="${section}"][aria-selected="true"]`).waitFor();
    await page.locator("#items tbody tr").first().waitFor();
    await page.waitForTimeout(100);
    await assertNoOverflow(page, `/dashboard/#${section}`);
    for (const button of await page.locator("#items tbody button").all()) {
      const box = await button.boundingBox();
      assert.ok(box.x >= 0 && box.x + box.width <= PHONE.width, `#${section}: a button off screen at ${box.x}+${box.width}`);
    }
    if (section === "agents") await page.screenshot({ path: path.join(shots, "dashboard-phone.png"), fullPage: true });
  }
  for (const url of ["/", "/playground/"]) {
    await page.goto(`${base}${url}`);
    await page.locator("#whoami").filter({ hasText: "admin" }).waitFor();
    await page.waitForTimeout(300);
    await assertNoOverflow(page, url);
  }
  await page.screenshot({ path: path.join(shots, "playground-phone.png"), fullPage: true });
  await page.goto(`${base}/`);
  await page.screenshot({ path: path.join(shots, "index-phone.png"), fullPage: true });
  await page.context().close();
});
