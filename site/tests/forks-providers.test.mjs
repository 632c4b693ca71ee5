// Issue 25 in the browser: the playground's "Fork from here" (on messages just streamed as well as on ones read
// back) and the dashboard's agent `provider` select, against the real local server with two named providers
// (`openai` and `second`, both the fake Responses API), at desktop (1280×800) and phone (390×844) width.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { fake, replies, received, textReply } from "./fake-openai.mjs";
import { start, newPage, logIn, apiToken, shot, PHONE } from "./helpers.mjs";

const DESKTOP = { width: 1280, height: 800 };
let base, browser, stop, token;

before(async () => {
  await new Promise((resolve) => fake.listen(0, "127.0.0.1", resolve));
  const upstream = `http://127.0.0.1:${fake.address().port}/v1`;
  ({ base, browser, stop } = await start({ OPENAI_BASE_URL: upstream, OPENAI_API_KEY: "sk-browser",
    LAMBENT_PROVIDER_SECOND_BASE_URL: upstream, LAMBENT_PROVIDER_SECOND_API_KEY: "sk-second",
    LAMBENT_PROVIDER_SECOND_STATE: "local", LAMBENT_PROVIDER_SECOND_DEFAULT_MODEL: "llama3.2" }));
  token = await apiToken(base);
});
after(async () => { await stop?.(); fake.close(); });

async function call(method, pathname, body) {
  const res = await fetch(`${base}${pathname}`, { method, body: body && JSON.stringify(body),
    headers: { "content-type": "application/json", authorization: `Bearer ${token}` } });
  const text = await res.text();
  assert.ok(res.ok, `${method} ${pathname}: ${res.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

/** The conversation as the page shows it: each message's words, without the controls it carries. */
const transcript = (page) => page.locator("#history .message").evaluateAll((bubbles) => bubbles.map((b) =>
  `${b.dataset.role}: ${[...b.childNodes].filter((n) => !n.matches?.(".fork-from-here, form.fork")).map((n) => n.textContent).join("")}`));

/** Nothing is wider than the viewport. */
async function assertNoOverflow(page, label) {
  const [scroll, inner] = await page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
  assert.ok(scroll <= inner, `${label}: the page is ${scroll} px wide in a ${inner} px window`);
}

test("Fork from here is offered on just-streamed messages; a fork ends at that message and the page switches to it", async () => {
  const main = await call("POST", "/api/agents/", { name: "Main", is_default: true });
  const other = await call("POST", "/api/agents/", { name: "Other", provider: "second" });
  for (const [viewport, name] of [[DESKTOP, "fork"], [PHONE, "fork-phone"]]) {
    const page = await newPage(browser, viewport);
    await logIn(page, base, `/playground/#agent=${main.id}`);
    await page.locator("#agent option:checked").filter({ hasText: "Main" }).waitFor({ state: "attached" });
    replies.push(textReply(`resp_${name}_1`, ["First", " answer."]));
    await page.getByLabel("Message").fill("One");
    await page.getByRole("button", { name: "Send" }).click();
    const first = page.locator(".message.assistant").filter({ hasText: "First answer." });
    // Once the turn is done, the streamed messages carry the control: no reload, no choosing the session again.
    await first.getByRole("button", { name: "Fork from here" }).waitFor();
    replies.push(textReply(`resp_${name}_2`, ["Second answer."]));
    await page.getByLabel("Message").fill("Two");
    await page.getByRole("button", { name: "Send" }).click();
    await page.locator(".message.assistant").filter({ hasText: "Second answer." }).getByRole("button", { name: "Fork from here" }).waitFor();
    assert.equal(await page.locator("#history .fork-from-here").count(), 4, "every streamed message offers a fork");
    const original = await page.locator("#session").inputValue();
    assert.ok(original, "the new session is chosen");

    await first.getByRole("button", { name: "Fork from here" }).click();
    const form = first.locator("form.fork");
    assert.equal(await form.getByLabel("Continue with").inputValue(), String(main.id), "the session's agent by default");
    await assertNoOverflow(page, name);
    await shot(page, `playground-${name}-form`, true);
    await form.getByRole("button", { name: "Fork" }).click();
    await page.waitForFunction((before) => document.querySelector("#session").value !== before, original);
    const fork = await page.locator("#session").inputValue();
    await page.waitForFunction(() => document.querySelectorAll("#history .message").length === 2);
    assert.deepEqual(await transcript(page), ["user: One", "assistant: First answer."], "the fork ends at that message");
    assert.match(page.url(), new RegExp(`session=${fork}(&|$)`), "the address names the fork");
    assert.equal(await page.locator("#chat-status").textContent(), `This is session #${fork}, a fork of session #${original} `
      + "up to the message you chose (the original is unchanged). Continue it below.");
    assert.equal(await page.evaluate(() => document.activeElement.id), "message", "ready to continue the fork");
    const messages = (await call("GET", `/api/sessions/${fork}/messages/`)).results;
    assert.deepEqual(messages.map((m) => m.content), ["One", "First answer."]);
    assert.equal((await call("GET", `/api/sessions/${original}/messages/`)).count, 4, "the original is untouched");

    // The fork's next turn continues from that point: on the same agent, from that response.
    replies.push(textReply(`resp_${name}_3`, ["From the fork."]));
    await page.getByLabel("Message").fill("Three");
    await page.getByRole("button", { name: "Send" }).click();
    await page.locator(".message.assistant").filter({ hasText: "From the fork." }).getByRole("button", { name: "Fork from here" }).waitFor();
    assert.equal(received.at(-1).previous_response_id, `resp_${name}_1`);
    await shot(page, `playground-${name}`, true);

    // Onto the other agent (a provider that keeps no state): its first turn sends the copied history whole.
    const fromFork = page.locator(".message.assistant").filter({ hasText: "From the fork." });
    await fromFork.getByRole("button", { name: "Fork from here" }).click();
    await fromFork.locator("form.fork").getByLabel("Continue with").selectOption(String(other.id));
    await fromFork.locator("form.fork").getByRole("button", { name: "Fork" }).click();
    await page.locator("#agent option:checked").filter({ hasText: "Other" }).waitFor({ state: "attached" });
    await page.waitForFunction(() => document.querySelectorAll("#history .message").length === 4);
    replies.push(textReply(`resp_${name}_4`, ["On the other provider."]));
    await page.getByLabel("Message").fill("Four");
    await page.getByRole("button", { name: "Send" }).click();
    await page.locator(".message.assistant").filter({ hasText: "On the other provider." }).waitFor();
    const sent = received.at(-1);
    assert.equal(sent.previous_response_id, undefined);
    assert.deepEqual(sent.input.map((item) => item.content?.[0]?.text ?? item.content).filter(Boolean).slice(0, 5),
      ["One", "First answer.", "Three", "From the fork.", "Four"]);
    assert.deepEqual(page.messages, [], `no console errors: ${page.messages}`);
    await page.context().close();
  }
});

test("the agent form's provider select lists the configured providers, and a save persists the choice", async () => {
  const providers = await call("GET", "/api/providers/");
  assert.deepEqual(providers.map((p) => p.name), ["openai", "second"]);
  for (const [viewport, name] of [[DESKTOP, "provider"], [PHONE, "provider-phone"]]) {
    const page = await newPage(browser, viewport);
    await logIn(page, base, "/dashboard/#agents");
    await page.locator("#resource-title").filter({ hasText: "Agents" }).waitFor();
    await page.getByRole("button", { name: "New agent" }).click();
    const editor = page.locator("#editor");
    const select = editor.getByLabel("Provider");
    // The form's fields come in at once, each select with its options.
    await select.waitFor();
    const options = await select.locator("option").evaluateAll((all) => all.map((o) => [o.value, o.textContent]));
    assert.deepEqual(options, [["openai", "openai (state kept by the provider)"], ["second", "second (state kept by Lambent)"]]);
    await editor.getByLabel("Name", { exact: true }).fill(`Local ${name}`);
    await select.selectOption("second");
    // The model the form offers is the chosen provider's default, not another provider's.
    assert.equal(await editor.getByLabel("Model").inputValue(), "llama3.2");
    await assertNoOverflow(page, name);
    await shot(page, `dashboard-${name}`);
    await editor.getByRole("button", { name: "Save" }).click();
    const row = page.locator("#items tbody tr").filter({ hasText: `Local ${name}` });
    await row.waitFor();
    assert.match(await row.textContent(), /second/, "the list shows the provider");
    const saved = (await call("GET", "/api/agents/?page_size=100")).results.find((a) => a.name === `Local ${name}`);
    assert.deepEqual([saved.provider, saved.model], ["second", "llama3.2"]);

    await row.getByRole("button", { name: "Edit" }).click();
    assert.equal(await select.inputValue(), "second", "the saved provider is selected when editing");
    await select.selectOption("openai");
    await editor.getByRole("button", { name: "Save" }).click();
    await page.locator("#items tbody tr").filter({ hasText: `Local ${name}` }).filter({ hasText: "openai" }).waitFor();
    assert.equal((await call("GET", `/api/agents/${saved.id}/`)).provider, "openai");
    assert.deepEqual(page.messages, [], `no console errors: ${page.messages}`);
    await page.context().close();
  }
});
