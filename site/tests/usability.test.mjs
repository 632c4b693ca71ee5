// What a person trying the pages in Chromium found, each fixed and kept fixed: the playground's state in the
// address, keyboard focus that can be seen, placeholders in a system prompt, where errors and confirmations show
// (a session's details, a new token's secret, a saved password, the editor's Save at 1280×800), a filter's count,
// the missing model key said before the first send, a bad stream frame and an unreachable server told apart.
// The real server on a fresh database, a fake Responses API on 127.0.0.1; screenshots at desktop and phone
// width go to site/tests/screenshots/usability-*.png.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { fake, replies, received, textReply } from "./fake-openai.mjs";
import { start, newPage, logIn, apiToken, shot, PHONE } from "./helpers.mjs";

const LAPTOP = { width: 1280, height: 800 };
let base, browser, stop, token;

before(async () => {
  await new Promise((resolve) => fake.listen(0, "127.0.0.1", resolve));
  ({ base, browser, stop } = await start({ OPENAI_API_KEY: "sk-usability", OPENAI_BASE_URL: `http://127.0.0.1:${fake.address().port}/v1` }));
  token = await apiToken(base);
});
after(async () => { await stop?.(); fake.close(); });

async function call(method, path, body, as = token) {
  const res = await fetch(`${base}${path}`, { method, headers: { "content-type": "application/json", authorization: `Bearer ${as}` },
    body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  return { status: res.status, data: text ? JSON.parse(text) : null };
}

async function create(path, body) {
  const { status, data } = await call("POST", path, body);
  assert.equal(status, 201, JSON.stringify(data));
  return data;
}

/** The page's own alert/confirm/prompt dialogs, accepted and recorded. */
function recordDialogs(page) {
  const seen = [];
  page.on("dialog", (dialog) => { seen.push(`${dialog.type()}: ${dialog.message()}`); dialog.accept(); });
  return seen;
}

/** `node` is within the viewport, wholly, once the page's animations (a dialog sliding in) have ended. */
async function inView(page, locator, label) {
  await page.waitForFunction(() => document.getAnimations().every((a) => a.playState !== "running"));
  const box = await locator.boundingBox();
  const { width, height } = page.viewportSize();
  assert.ok(box && box.y >= 0 && box.x >= 0 && box.y + box.height <= height && box.x + box.width <= width,
    `${label} is out of view: ${JSON.stringify(box)} in ${width}×${height}`);
}

// WCAG's contrast ratio of two CSS colours ("rgb(1, 114, 173)").
function contrast(a, b) {
  const luminance = (css) => {
    const [r, g, bl] = css.match(/[\d.]+/g).slice(0, 3).map(Number).map((c) => {
      const v = c / 255;
      return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * bl;
  };
  const [hi, lo] = [luminance(a), luminance(b)].sort((x, y) => y - x);
  return (hi + 0.05) / (lo + 0.05);
}

test("a reload of the playground keeps the agent, the session and the variables; another agent starts without them", async () => {
  const concierge = await create("/api/agents/", { name: "Concierge", system_prompt: "You serve {{customer}}." });
  const other = await create("/api/agents/", { name: "Other", system_prompt: "Plain." });
  const page = await newPage(browser, LAPTOP);
  await logIn(page, base, "/playground/");
  await page.locator(`#agent option[value="${concierge.id}"]`).waitFor({ state: "attached" });
  await page.locator("#agent").selectOption(String(concierge.id));

  // The system prompt's placeholder is not sent unfilled: the message is refused and the variable offered.
  const calls = received.length;
  await page.getByLabel("Message").fill("Good evening");
  await page.getByRole("button", { name: "Send" }).click();
  await page.locator("#chat-error").filter({ hasText: 'Missing value for template variable "customer"' }).waitFor();
  assert.equal(received.length, calls, "nothing went upstream");
  assert.equal(await page.evaluate(() => document.activeElement?.getAttribute("aria-label")), "Value of customer");
  await shot(page, "usability-missing-variable");
  await page.getByLabel("Value of customer").fill("Ada");
  replies.push(textReply("resp_concierge", ["Good evening, Ada."]));
  await page.getByRole("button", { name: "Send" }).click();
  await page.locator(".message.assistant").filter({ hasText: "Good evening, Ada." }).waitFor();
  assert.equal(received.at(-1).instructions, "You serve Ada.");

  // The address names all three, once the new session is known.
  await page.waitForFunction(() => /session=\d+/.test(location.hash));
  const address = new URLSearchParams((await page.evaluate(() => location.hash)).slice(1));
  assert.equal(address.get("agent"), String(concierge.id));
  assert.equal(address.get("var.customer"), "Ada");
  const session = address.get("session");

  await page.reload();
  await page.locator(".message.assistant").filter({ hasText: "Good evening, Ada." }).waitFor();
  assert.equal(await page.locator("#agent").inputValue(), String(concierge.id));
  assert.equal(await page.locator("#session").inputValue(), session);
  assert.equal(await page.getByLabel("Value of customer").inputValue(), "Ada");
  await shot(page, "usability-playground-reloaded");
  await page.setViewportSize(PHONE);
  await shot(page, "usability-playground-reloaded-phone", true);
  await page.setViewportSize(LAPTOP);

  // The address's session is read on load; choosing it again while that read is slow shows it once, not twice.
  let delayed = false;
  await page.route(`${base}/api/sessions/${session}/messages/**`, async (route) => {
    if (!delayed) { delayed = true; await new Promise((r) => setTimeout(r, 800)); }
    await route.continue();
  });
  await page.reload();
  await page.locator(`#session option[value="${session}"]`).waitFor({ state: "attached" });
  await page.locator("#session").dispatchEvent("change");
  await page.locator(".message.assistant").first().waitFor();
  await page.waitForTimeout(1200);
  // A message's words, without the controls it carries ("Fork from here").
  const words = await page.locator("#history .message").evaluateAll((nodes) => nodes.map((node) =>
    [...node.childNodes].filter((n) => !n.matches?.(".fork-from-here, form.fork")).map((n) => n.textContent).join("")));
  assert.deepEqual(words, ["Good evening", "Good evening, Ada."]);
  await page.unroute(`${base}/api/sessions/${session}/messages/**`);

  // Another agent: no session of the first, none of its variables (in the page or the address).
  await page.locator("#agent").selectOption(String(other.id));
  await page.waitForFunction((id) => location.hash === `#agent=${id}`, other.id);
  assert.equal(await page.locator("#variable-rows .variable").count(), 0);
  assert.equal(await page.locator("#session").inputValue(), "");
  assert.equal(await page.locator("#history > *").count(), 0);

  // An address pasted into the same tab opens what it names.
  await page.evaluate(([agent, id]) => { location.hash = `agent=${agent}&session=${id}&var.customer=Grace`; }, [concierge.id, session]);
  await page.locator(".message.assistant").filter({ hasText: "Good evening, Ada." }).waitFor();
  assert.equal(await page.locator("#agent").inputValue(), String(concierge.id));
  assert.equal(await page.getByLabel("Value of customer").inputValue(), "Grace");
  await page.context().close();
});

test("keyboard focus on grey and outlined buttons is a solid ring that stands out from the page", async () => {
  const page = await newPage(browser);
  await logIn(page, base, "/dashboard/#agents");
  const row = page.locator("#items tbody tr").filter({ hasText: "Concierge" });
  await row.waitFor();
  const background = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  for (const [name, target] of [["Edit (grey)", row.getByRole("button", { name: "Edit" })],
    ["Delete (outlined)", row.getByRole("button", { name: "Delete" })], ["Log out (outlined)", page.locator("#logout")]]) {
    // Reached by the keyboard, as a keyboard user reaches it: Tab from the control before it.
    await target.evaluate((node) => {
      const all = [...document.querySelectorAll("a[href], button:not([disabled]), input, select, textarea")];
      all[all.indexOf(node) - 1].focus();
    });
    await page.keyboard.press("Tab");
    assert.equal(await target.evaluate((node) => node === document.activeElement), true, `${name} has the focus`);
    const ring = await target.evaluate((node) => {
      const style = getComputedStyle(node);
      return { style: style.outlineStyle, width: parseFloat(style.outlineWidth), color: style.outlineColor };
    });
    assert.equal(ring.style, "solid", `${name}: ${JSON.stringify(ring)}`);
    assert.ok(ring.width >= 2, `${name}: a ${ring.width} px ring`);
    assert.ok(!/rgba\(.*, 0\.\d+\)$/.test(ring.color), `${name}: a translucent ring ${ring.color}`);
    assert.ok(contrast(ring.color, background) >= 3, `${name}: ring ${ring.color} on ${background}`);
    if (name.startsWith("Delete")) await shot(page, "usability-focus-ring");
  }
  await page.context().close();
});

test("Sessions → View brings the session's messages into view and moves the focus to them", async () => {
  const page = await newPage(browser, LAPTOP);
  await logIn(page, base, "/dashboard/#sessions");
  const row = page.locator("#items tbody tr").first();
  await row.waitFor();
  await row.getByRole("button", { name: "View" }).click();
  const title = page.locator("#detail-title");
  await title.filter({ hasText: "with Concierge" }).waitFor();
  await page.locator("#detail-body").filter({ hasText: "Good evening, Ada." }).waitFor();
  assert.equal(await title.evaluate((node) => node === document.activeElement), true, "the title has the focus");
  await inView(page, title, "the session's title");
  await shot(page, "usability-session-view");
  await page.getByRole("button", { name: "Close" }).click();
  assert.equal(await page.locator("#detail").isHidden(), true);
  assert.equal(await page.evaluate(() => document.activeElement?.id), "resource-title", "the focus goes back to the list");
  await page.context().close();
});

test("a new API token's secret shows in the page, once, with a Copy button, and no native alert", async () => {
  const page = await newPage(browser, LAPTOP);
  await page.context().grantPermissions(["clipboard-read", "clipboard-write"], { origin: base });
  const dialogs = recordDialogs(page);
  await logIn(page, base, "/dashboard/#tokens");
  await page.getByRole("button", { name: "New API token" }).click();
  await page.locator("#editor").getByLabel("Name", { exact: true }).fill("laptop");
  await page.locator("#editor").getByRole("button", { name: "Save" }).click();
  const secret = page.getByRole("dialog", { name: 'Your new API token "laptop"' });
  await secret.waitFor();
  const value = await secret.getByLabel("Token").inputValue();
  assert.equal(await page.evaluate(() => document.activeElement?.id), "secret-value", "the secret has the focus");
  await inView(page, secret.getByLabel("Token"), "the secret");
  await secret.getByRole("button", { name: "Copy" }).click();
  await secret.locator("#secret-copied").filter({ hasText: "Copied." }).waitFor();
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), value);
  await shot(page, "usability-token-secret");
  await page.setViewportSize(PHONE);
  await inView(page, secret.getByRole("button", { name: "Done" }), "Done at phone width");
  await shot(page, "usability-token-secret-phone");
  await secret.getByRole("button", { name: "Done" }).click();
  assert.equal(await page.locator("#secret-value").inputValue(), "", "closed, the secret leaves the page");
  // The secret is a working token, and the list shows it without its secret.
  assert.equal((await call("GET", "/api/auth/me/", undefined, value)).data.username, "admin");
  await page.locator("#items tbody tr").filter({ hasText: "laptop" }).waitFor();
  assert.equal(await page.locator("#items").textContent().then((t) => t.includes(value)), false);
  assert.match(await page.locator("#resource-status").textContent(), /Created API token laptop/);
  assert.deepEqual(dialogs, []);
  await page.context().close();
});

test("a saved password is confirmed where the user looks, and is the one that logs in", async () => {
  const bob = await create("/api/users/", { username: "bob", password: "bob-password-1", is_staff: false, is_active: true });
  const page = await newPage(browser, PHONE);
  await logIn(page, base, "/dashboard/#users");
  await page.locator("#items tbody tr").filter({ hasText: "bob" }).getByRole("button", { name: "Edit" }).click();
  await page.locator("#editor").getByLabel(/^Password/).fill("bob-password-2");
  await page.locator("#editor").getByRole("button", { name: "Save" }).click();
  const status = page.locator("#resource-status");
  await status.filter({ hasText: "Saved user bob; the new password is in effect." }).waitFor();
  await inView(page, status, "the confirmation");
  await shot(page, "usability-password-saved-phone");
  const login = (password) => fetch(`${base}/api/auth/login/`, { method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ username: "bob", password }) }).then((r) => r.status);
  assert.deepEqual([await login("bob-password-2"), await login("bob-password-1")], [200, 400]);
  assert.equal((await call("GET", `/api/users/${bob.id}/`)).data.username, "bob");
  await page.context().close();
});

test("New agent at 1280×800 keeps Save inside the dialog and in view once errors show", async () => {
  const page = await newPage(browser, LAPTOP);
  await logIn(page, base, "/dashboard/#agents");
  await page.getByRole("button", { name: "New agent" }).click();
  const editor = page.locator("#editor");
  await editor.getByLabel("System prompt").fill("A long prompt.\n".repeat(12));
  await editor.getByLabel("Model").fill("m".repeat(300));
  await editor.getByRole("button", { name: "Save" }).click();
  await page.locator("#editor-summary").filter({ hasText: "Not saved: check Name" }).waitFor();
  const save = editor.getByRole("button", { name: "Save" });
  await inView(page, save, "Save");
  await inView(page, page.locator("#editor-summary"), "the summary by Save");
  const [dialog, button] = [await editor.locator("article").boundingBox(), await save.boundingBox()];
  assert.ok(button.y + button.height <= dialog.y + dialog.height, `Save ends at ${button.y + button.height}, the dialog at ${dialog.y + dialog.height}`);
  assert.equal(await page.evaluate(() => document.activeElement?.id), "field-name");
  await inView(page, editor.getByLabel("Name", { exact: true }), "the field in error");
  await shot(page, "usability-editor-errors");
  await page.getByRole("button", { name: "Cancel" }).click();
  await page.context().close();
});

test("a filtered list says how many of how many match, and when none does", async () => {
  const page = await newPage(browser, LAPTOP);
  await logIn(page, base, "/dashboard/#agents");
  await page.locator("#items tbody tr").filter({ hasText: "Other" }).waitFor();
  const all = (await call("GET", "/api/agents/")).data.count;
  assert.equal(await page.locator("#page-info").textContent(), `${all} in all`);
  await page.getByLabel("Filter this page").fill("concierge");
  assert.equal(await page.locator("#page-info").textContent(), `1 of ${all} match "concierge"`);
  assert.equal(await page.locator("#items tbody tr:visible").count(), 1);
  await page.getByLabel("Filter this page").fill("nobody");
  assert.equal(await page.locator("#page-info").textContent(), `0 of ${all} match "nobody"`);
  await page.locator("#items tbody").filter({ hasText: 'Nothing on this page matches "nobody".' }).waitFor();
  await shot(page, "usability-filter-none");
  await page.getByLabel("Filter this page").fill("");
  assert.equal(await page.locator("#page-info").textContent(), `${all} in all`);
  assert.equal(await page.locator("#items tbody tr:visible").count(), all);
  await page.context().close();
});

test("the dashboard prefills the default model the server names, not one of its own", async () => {
  const page = await newPage(browser, LAPTOP);
  await page.route(`${base}/api/health/`, async (route) => {
    const response = await route.fetch();
    const body = await response.json();
    body.checks.model_provider.default_model = "model-from-the-server";
    await route.fulfill({ response, json: body });
  });
  await logIn(page, base, "/dashboard/#agents");
  await page.getByRole("button", { name: "New agent" }).click();
  assert.equal(await page.locator("#editor").getByLabel("Model").inputValue(), "model-from-the-server");
  await page.getByRole("button", { name: "Cancel" }).click();
  await page.context().close();
});

test("a bad stream frame is reported as a bad frame, and an unreachable server as one, the message kept", async () => {
  const page = await newPage(browser, LAPTOP);
  await logIn(page, base, "/playground/");
  await page.locator("#agent option").first().waitFor({ state: "attached" });
  await page.locator("#agent").selectOption({ label: "Other" });
  // Frames no server of ours writes: a text_delta whose data is cut short, then a good delta and done.
  await page.route(`${base}/api/agent/stream/`, (route) => route.fulfill({ status: 200,
    headers: { "content-type": "text/event-stream", "lambent-session-id": "" },
    body: 'event: text_delta\ndata: {"delta": "Hel\n\nevent: text_delta\ndata: {"delta": "Still here."}\n\n' +
      'event: done\ndata: {"session_id": null, "status": "completed", "pending_tool_calls": []}\n\n' }));
  await page.getByLabel("Message").fill("Frame me");
  await page.getByRole("button", { name: "Send" }).click();
  await page.locator(".message.assistant").filter({ hasText: "Still here." }).waitFor();
  const error = await page.locator("#chat-error").textContent();
  assert.match(error, /The server sent a "text_delta" frame this page could not read: its data is not JSON/);
  assert.doesNotMatch(error, /connection/i);
  await inView(page, page.locator("#chat-error"), "the frame error");
  await shot(page, "usability-bad-frame");

  await page.unroute(`${base}/api/agent/stream/`);
  await page.route(`${base}/api/agent/stream/`, (route) => route.abort("connectionrefused"));
  await page.getByLabel("Message").fill("Anyone there?");
  await page.getByRole("button", { name: "Send" }).click();
  await page.locator("#chat-error").filter({ hasText: "Not sent: The server could not be reached" }).waitFor();
  await page.locator(".message.user.not-sent").filter({ hasText: "Anyone there?" }).waitFor();
  assert.equal(await page.getByLabel("Message").inputValue(), "Anyone there?", "the message is back in the box");
  assert.equal(await page.getByRole("button", { name: "Send" }).isEnabled(), true);
  await page.setViewportSize(PHONE);
  await inView(page, page.locator("#chat-error"), "the network error at phone width");
  await shot(page, "usability-unreachable-phone");
  await page.context().close();
});

test("without a model key the playground says so before the first send", async () => {
  const noKey = await start({ OPENAI_API_KEY: undefined });
  try {
    for (const [viewport, name] of [[LAPTOP, "usability-no-provider"], [PHONE, "usability-no-provider-phone"]]) {
      const page = await newPage(noKey.browser, viewport);
      await logIn(page, noKey.base, "/playground/");
      const notice = page.locator("#no-provider");
      await notice.filter({ hasText: "OPENAI_API_KEY" }).waitFor();
      assert.match(await notice.textContent(), /^Messages will be refused: the server has no model provider configured\./);
      await inView(page, notice, "the notice");
      assert.match(await page.getByLabel("Message").getAttribute("aria-describedby"), /no-provider/);
      await shot(page, name);
      await page.context().close();
    }
    // With a key, no notice.
    const page = await newPage(browser);
    await logIn(page, base, "/playground/");
    await page.locator("#agent option").first().waitFor({ state: "attached" });
    await page.waitForLoadState("networkidle");
    assert.equal(await page.locator("#no-provider").isHidden(), true);
    await page.context().close();
  } finally {
    await noKey.stop();
  }
});
