// An agent linked to the MCP reference server (`@modelcontextprotocol/server-everything`, installed in
// testkit/mcp by scripts/test) with approval required: the dashboard shows and edits the flag, the playground
// turns the calls into approval cards, one approved (it runs on the server), one denied with a reason, and the
// continuation streams. The real server on a fresh database, the fake Responses API on 127.0.0.1; screenshots
// at desktop and phone width go to site/tests/screenshots/approvals-*.png.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { fake, replies, received, callReply, textReply } from "./fake-openai.mjs";
import { start, newPage, logIn, apiToken, shot, freePort, waitForPort, PHONE, DESKTOP } from "./helpers.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const everything = path.resolve(here, "../../testkit/mcp/node_modules/.bin/mcp-server-everything");
let base, browser, stop, token, mcp, mcpUrl;

before(async () => {
  await new Promise((resolve) => fake.listen(0, "127.0.0.1", resolve));
  const port = await freePort();
  mcp = spawn(everything, ["streamableHttp"], { env: { ...process.env, PORT: String(port) }, stdio: "ignore" });
  await waitForPort(port);
  mcpUrl = `http://127.0.0.1:${port}/mcp`;
  ({ base, browser, stop } = await start({ OPENAI_API_KEY: "sk-approvals", LAMBENT_TOOL_HOSTS: "127.0.0.1",
    OPENAI_BASE_URL: `http://127.0.0.1:${fake.address().port}/v1` }));
  token = await apiToken(base);
});
after(async () => { await stop?.(); fake.close(); mcp?.kill(); });

async function create(path, body) {
  const res = await fetch(`${base}${path}`, { method: "POST", body: JSON.stringify(body),
    headers: { "content-type": "application/json", authorization: `Bearer ${token}` } });
  const data = await res.json();
  assert.equal(res.status, 201, JSON.stringify(data));
  return data;
}

test("calls that need approval become cards: one approved runs on the MCP server, one denied tells the model why", async () => {
  const agent = await create("/api/agents/", { name: "Careful" });
  const server = await create("/api/mcp-servers/", { name: "Everything", url: mcpUrl, allowed_tools: ["echo", "get-sum"] });
  await create("/api/agent-mcp-servers/", { agent: agent.id, mcp_server: server.id });

  // The dashboard edits the flag.
  const page = await newPage(browser);
  await logIn(page, base, "/dashboard/#agent-mcp-servers");
  await page.locator("#resource-title").filter({ hasText: "Agent MCP servers" }).waitFor();
  const flag = page.getByRole("switch", { name: "Needs approval: Everything for Careful" });
  assert.equal(await flag.isChecked(), false);
  await flag.click();
  await page.locator("#resource-status").filter({ hasText: "Needs approval of Everything for Careful: on." }).waitFor();
  assert.equal(await page.getByRole("switch", { name: "Needs approval: Everything for Careful" }).isChecked(), true);
  await shot(page, "approvals-dashboard-links");
  await page.getByRole("tab", { name: "MCP servers", exact: true }).click();
  await page.locator("#items tbody tr").filter({ hasText: mcpUrl }).waitFor();
  await shot(page, "approvals-dashboard-servers");

  const echo = `mcp__${server.id}__echo`;
  const sum = `mcp__${server.id}__get-sum`;
  replies.push(callReply("resp_a1", [["call_echo", echo, '{"message":"from the browser"}'], ["call_sum", sum, '{"a":2,"b":3}']]));
  replies.push(textReply("resp_a2", ["Echoed; ", "the sum was denied."]));
  await page.goto(`${base}/playground/#agent=${agent.id}`);
  await page.getByLabel("Message").fill("Echo this and add 2 and 3");
  await page.getByRole("button", { name: "Send" }).click();
  const cards = page.locator('.tool-card[data-status="awaiting-approval"]');
  await cards.nth(1).waitFor();
  assert.equal(await cards.count(), 2);
  assert.match(await cards.nth(0).textContent(), /Needs your approval: mcp__\d+__echo runs only if you approve it\./);
  assert.equal(received.length, 1, "nothing ran and nothing went upstream again");
  assert.deepEqual(received[0].tools.map((t) => t.name), [echo, sum]);
  await shot(page, "approvals-cards");
  await page.setViewportSize(PHONE);
  await shot(page, "approvals-cards-phone", true);
  await page.setViewportSize(DESKTOP);

  // Approve the echo: the other call still waits, and the card says so.
  await cards.nth(0).getByRole("button", { name: "Approve" }).click();
  await page.locator('[data-call-id="call_echo"]').filter({ hasText: "Approved; waiting for: call_sum" }).waitFor();
  // Deny the sum with a reason: the continuation streams, the echo ran on the server.
  const sumCard = page.locator('[data-call-id="call_sum"]');
  await sumCard.getByLabel("Reason if denied").fill("No arithmetic today.");
  await sumCard.getByRole("button", { name: "Deny" }).click();
  await page.locator("#history .assistant").filter({ hasText: "Echoed; the sum was denied." }).waitFor();
  await page.locator('[data-call-id="call_echo"]').filter({ hasText: "Echo: from the browser" }).waitFor();
  assert.match(await sumCard.textContent(), /No arithmetic today\./);
  assert.deepEqual(received[1].input, [
    { type: "function_call_output", call_id: "call_echo", output: "Echo: from the browser" },
    { type: "function_call_output", call_id: "call_sum",
      output: '{"error":"A person denied this tool call.","reason":"No arithmetic today."}' },
  ]);
  assert.equal(await page.locator("#chat-error").textContent(), "");
  await shot(page, "approvals-continued");
  await page.setViewportSize(PHONE);
  await shot(page, "approvals-continued-phone", true);

  // Read back, the session shows what was decided.
  await page.setViewportSize(DESKTOP);
  await page.reload();
  await page.locator('[data-call-id="call_sum"]').filter({ hasText: "Denied; the model was told:" }).waitFor();
  await page.locator('[data-call-id="call_echo"]').filter({ hasText: "Approved; ran on the server:" }).waitFor();
  assert.deepEqual(page.messages, []);
});
