// The usage page in Chromium (issue 27): a staff user sets an ordinary user's daily budget there; the user
// sees their tokens per day and per agent drawn by the vendored Chart.js under the site's CSP, and their budget
// state with 80 % and 100 % marked; their turns stop at the budget with 429 `budget_exceeded`. Errors a user can
// cause show where they look. Screenshots at desktop and phone width go to site/tests/screenshots/usage-*.png.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { fake, replies, textReply } from "./fake-openai.mjs";
import { start, newPage, logIn, apiToken, shot, PHONE, DESKTOP } from "./helpers.mjs";

let base, browser, stop, admin, ada, adaId, agent;

async function call(method, path, body, as) {
  const res = await fetch(`${base}${path}`, { method, headers: { "content-type": "application/json", authorization: `Bearer ${as}` },
    body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  return { status: res.status, data: text ? (res.headers.get("content-type")?.startsWith("application/json") ? JSON.parse(text) : text) : null };
}

/** One of Ada's turns (each reported as 5 input and 5 output tokens by the fake). */
async function adaTurn(n) {
  replies.push(textReply(`resp_ada_${n}`, ["Hello", " Ada."]));
  return call("POST", "/api/agent/stream/", { message: `Hi ${n}`, agent_id: agent.id }, ada);
}

before(async () => {
  await new Promise((resolve) => fake.listen(0, "127.0.0.1", resolve));
  ({ base, browser, stop } = await start({ OPENAI_API_KEY: "sk-usage", OPENAI_BASE_URL: `http://127.0.0.1:${fake.address().port}/v1` }));
  admin = await apiToken(base);
  const created = await call("POST", "/api/users/", { username: "ada", password: "ada-password-1" }, admin);
  assert.equal(created.status, 201, JSON.stringify(created.data));
  adaId = created.data.id;
  const login = await fetch(`${base}/api/auth/login/`, { method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ username: "ada", password: "ada-password-1" }) });
  ada = (await login.json()).token;
  agent = (await call("POST", "/api/agents/", { name: "Helper" }, ada)).data;
  for (const n of [1, 2]) assert.equal((await adaTurn(n)).status, 200);
});
after(async () => { await stop?.(); fake.close(); });

/** Every CSP violation the page reports, recorded from the start. */
async function watchCsp(page) {
  await page.addInitScript(() => {
    window.cspViolations = [];
    document.addEventListener("securitypolicyviolation", (e) => window.cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`));
  });
}

async function logInAs(page, username, password) {
  await page.goto(`${base}/usage/`);
  await page.getByLabel("Username").fill(username);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Log in" }).click();
  await page.locator("#whoami").filter({ hasText: username }).waitFor();
}

test("staff set a user's budget on the usage page, the user sees it at 80 % and then spent, and their turns stop at it", async () => {
  const staff = await newPage(browser, DESKTOP);
  await watchCsp(staff);
  await logIn(staff, base, "/usage/");
  await staff.locator("#owner-field").waitFor();
  await staff.locator("#owner").selectOption({ label: "ada" });
  await staff.locator("#limits-title").filter({ hasText: "Budgets and limits of ada" }).waitFor();
  // A value the server refuses is said by its field.
  await staff.getByLabel(/Daily token budget/).fill("-5");
  await staff.getByRole("button", { name: "Save budgets and limits" }).click();
  await staff.locator('#limits-form [data-error-for="daily_token_budget"]').filter({ hasText: "greater than or equal to 0" }).waitFor();
  await shot(staff, "usage-staff-error");
  await staff.getByLabel(/Daily token budget/).fill("25");
  await staff.getByRole("button", { name: "Save budgets and limits" }).click();
  await staff.locator("#limits-status").filter({ hasText: "Saved the budgets and limits of ada." }).waitFor();
  assert.equal((await call("GET", `/api/users/${adaId}/`, undefined, admin)).data.daily_token_budget, 25);
  // Ada's 20 of 25 tokens: over 80 %.
  await staff.locator(".budget.is-near").filter({ hasText: "20 of 25 tokens (80 %)" }).waitFor();
  await shot(staff, "usage-staff-desktop", true);
  assert.deepEqual(await staff.evaluate(() => window.cspViolations), []);
  // The refused save's 400 is the one console line (Chromium logs failed fetches).
  assert.deepEqual(staff.messages.filter((m) => !m.includes("400")), []);

  // A third turn starts (20 < 25) and spends the budget; the fourth is refused before reaching the model.
  assert.equal((await adaTurn(3)).status, 200);
  const refused = await call("POST", "/api/agent/stream/", { message: "One more", agent_id: agent.id }, ada);
  assert.equal(refused.status, 429);
  assert.equal(refused.data.code, "budget_exceeded");
  replies.length = 0;

  for (const [viewport, name] of [[DESKTOP, "desktop"], [PHONE, "phone"]]) {
    const page = await newPage(browser, viewport);
    await watchCsp(page);
    await logInAs(page, "ada", "ada-password-1");
    assert.equal(await page.locator("#owner-field").isHidden(), true, "no one else's usage to choose");
    assert.equal(await page.locator("#limits").isHidden(), true, "only staff edit limits");
    const spent = page.locator(".budget.is-spent [role=alert]");
    await spent.filter({ hasText: "Your daily budget is spent: new turns are refused until" }).waitFor();
    await page.locator(".budget").first().filter({ hasText: "30 of 25 tokens (120 %)" }).waitFor();
    assert.equal(await page.locator(".budget").nth(1).textContent().then((t) => t.includes("no monthly budget")), true);
    // The 80 % and 100 % marks sit at 80 % and 100 % of the meter.
    const [meter, mark80, mark100] = await Promise.all(["meter", ".mark-80", ".mark-100"].map((s) =>
      page.locator(`.budget.is-spent ${s}`).boundingBox()));
    assert.ok(Math.abs(mark80.x + mark80.width - (meter.x + 0.8 * meter.width)) < 3, JSON.stringify({ meter, mark80 }));
    assert.ok(mark80.x + mark80.width <= mark100.x + 1, "the labels do not overlap");
    assert.ok(Math.abs(mark100.x + mark100.width - (meter.x + meter.width)) < 3, JSON.stringify({ meter, mark100 }));
    // The charts hold the day's tokens: 15 in and 15 out, all of it Helper's.
    const drawn = await page.evaluate(() => {
      const days = window.Chart.getChart(document.querySelector("#chart-days"));
      const agents = window.Chart.getChart(document.querySelector("#chart-agents"));
      return { days: days.data.datasets.map((d) => d.data), labels: agents.data.labels, agents: agents.data.datasets[0].data,
        width: document.querySelector("#chart-days").width };
    });
    assert.deepEqual(drawn.days, [[15], [15]]);
    assert.deepEqual([drawn.labels, drawn.agents], [["Helper"], [30]]);
    assert.ok(drawn.width > 0, "the canvas was drawn");
    await page.locator("#usage-summary").filter({ hasText: "30 tokens (15 in, 15 out) in 3 turns" }).waitFor();
    await shot(page, `usage-user-${name}`, true);

    // A range the API refuses is said under the form.
    await page.locator("#from").fill("2030-01-02");
    await page.locator("#to").fill("2030-01-01");
    await page.getByRole("button", { name: "Show" }).click();
    await page.locator("#usage-error").filter({ hasText: "Could not show usage: Must not be after `to`." }).waitFor();
    if (name === "phone") await shot(page, "usage-user-error-phone");
    assert.deepEqual(await page.evaluate(() => window.cspViolations), [], "nothing the CSP blocked");
    // The refused range's 400 is the one console line (Chromium logs failed fetches).
    assert.deepEqual(page.messages.filter((m) => !m.includes("400")), []);
    await page.context().close();
  }
  await staff.context().close();
});
