// The API reference pages: Swagger UI looks as it does on its own (the site's styles stay out of it), a
// signed-in user can try an operation without pasting a token, and Redoc reads the document without warnings.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { start, newPage, logIn, shot, DESKTOP, PHONE } from "./helpers.mjs";

let base, browser, stop;

before(async () => { ({ base, browser, stop } = await start()); });
after(async () => { await stop?.(); });

// Swagger UI with nothing of ours around it but its own stylesheet: how it looks on its own.
const REFERENCE = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>reference</title>
<link rel="stylesheet" href="/vendor/swagger-ui.css"></head>
<body><div id="swagger-ui"></div><script src="/vendor/swagger-ui-bundle.js"></script><script src="/static/swagger-init.js"></script></body></html>`;

const PROPERTIES = ["font-family", "font-size", "font-weight", "color", "background-color", "list-style-type", "margin-top",
  "margin-bottom", "padding-top", "padding-left", "border-top-width", "border-radius", "line-height", "text-decoration-line"];

// Elements of every kind Swagger UI draws: headings, the version badges, text, links, buttons, lists, tables,
// inputs and selects (the operation is opened and in "Try it out" mode, so its form is shown).
const SAMPLES = [".swagger-ui .info .title", ".swagger-ui .info .title small", ".swagger-ui .info .title small pre.version",
  ".swagger-ui .info .title small.version-stamp", ".swagger-ui .info .description p", ".swagger-ui .info a",
  ".swagger-ui .btn.authorize", ".swagger-ui .opblock-tag", ".swagger-ui .opblock-tag small",
  ".swagger-ui .opblock-summary-method", ".swagger-ui .opblock-summary-path", ".swagger-ui .opblock-summary-description",
  ".swagger-ui .opblock-section-header h4", ".swagger-ui .try-out__btn", ".swagger-ui .btn.execute",
  ".swagger-ui table.parameters", ".swagger-ui .parameters-col_name", ".swagger-ui .parameter__name",
  ".swagger-ui .parameters input", ".swagger-ui .responses-inner select", ".swagger-ui .responses-table td",
  ".swagger-ui ul.tab", ".swagger-ui ul.tab li", ".swagger-ui .highlight-code pre",
  ".swagger-ui section.models h4", ".swagger-ui code"];

async function openAgentsList(page) {
  const op = page.locator("#operations-agents-agents_list");
  await op.waitFor();
  // Swagger UI eases its colours in: measured mid-way, the same button would differ from itself.
  await page.addStyleTag({ content: "*, *::before, *::after { transition: none !important; animation: none !important; }" });
  await op.locator(".opblock-summary-control").click();
  await op.getByRole("button", { name: "Try it out" }).click();
  await op.locator(".btn.execute").waitFor();
  return op;
}

async function styles(page) {
  return page.evaluate(([samples, properties]) => Object.fromEntries(samples.map((selector) => {
    const node = document.querySelector(selector);
    if (!node) return [selector, null];
    const style = getComputedStyle(node);
    return [selector, Object.fromEntries(properties.map((p) => [p, style.getPropertyValue(p)]))];
  })), [SAMPLES, PROPERTIES]);
}

test("Swagger UI keeps its own styles: the site's stylesheet does not reach inside it", async () => {
  const page = await newPage(browser);
  await page.route(`${base}/swagger-reference/`, (route) => route.fulfill({ contentType: "text/html", body: REFERENCE }));
  await page.goto(`${base}/swagger-reference/`);
  await openAgentsList(page);
  const own = await styles(page);
  await page.goto(`${base}/swagger/`);
  await openAgentsList(page);
  const ours = await styles(page);
  const differences = [];
  const missing = SAMPLES.filter((selector) => !own[selector] || !ours[selector]);
  assert.deepEqual(missing, [], "every sample is drawn on both pages");
  for (const selector of SAMPLES) {
    for (const p of PROPERTIES) {
      if (own[selector][p] !== ours[selector][p]) differences.push(`${selector} ${p}: ${ours[selector][p]} (own: ${own[selector][p]})`);
    }
  }
  assert.deepEqual(differences, []);
  // No bullets in any of its lists, and the version badge's text on the badge itself.
  const bullets = await page.$$eval(".swagger-ui li", (items) => items.map((li) => getComputedStyle(li).listStyleType).filter((t) => t !== "none"));
  assert.deepEqual(bullets, []);
  assert.equal(await page.$eval(".swagger-ui .info .title small pre.version", (pre) => getComputedStyle(pre).backgroundColor), "rgba(0, 0, 0, 0)");
  await page.context().close();
});

test("a signed-in user runs GET /api/agents/ in Swagger UI without typing a token", async () => {
  const page = await newPage(browser);
  await logIn(page, base, "/dashboard/");
  await page.goto(`${base}/swagger/`);
  await page.locator("#authorize-note").filter({ hasText: "signed in as admin" }).waitFor();
  const op = await openAgentsList(page);
  await op.locator(".btn.execute").click();
  const status = op.locator(".live-responses-table .response .response-col_status").first();
  await status.waitFor();
  assert.equal((await status.textContent()).trim(), "200");
  await shot(page, "swagger-signed-in");
  assert.deepEqual(page.messages.filter((m) => m.startsWith("pageerror")), [], "no script error next to app.js");
  await page.context().close();

  for (const [name, viewport] of [["desktop", DESKTOP], ["phone", PHONE]]) {
    const page = await newPage(browser, viewport);
    await page.goto(`${base}/swagger/`);
    await page.locator("#authorize-note").filter({ hasText: "Log in on the dashboard" }).waitFor();
    await page.locator(".opblock").first().waitFor();
    await shot(page, `swagger-${name}`);
    await page.context().close();
  }
});

test("Redoc reads the OpenAPI document without allOf warnings", async () => {
  for (const [name, viewport] of [["desktop", DESKTOP], ["phone", PHONE]]) {
    const page = await newPage(browser, viewport);
    await page.goto(`${base}/redoc/`);
    await page.locator('[data-section-id^="operation/"]').first().waitFor({ timeout: 60000 });
    await page.locator('[data-section-id="operation/auth_login"]').waitFor({ timeout: 60000 });
    await shot(page, `redoc-${name}`);
    const allOf = page.messages.filter((m) => /allOf/i.test(m));
    assert.deepEqual(allOf, [], "no console message about allOf");
    assert.deepEqual(page.messages.filter((m) => m.startsWith("error") || m.startsWith("pageerror")), []);
    await page.context().close();
  }
});

test("at a phone's width the header wraps: no page scrolls sideways", async () => {
  const page = await newPage(browser, PHONE);
  for (const url of ["/", "/swagger/", "/redoc/"]) {
    await page.goto(`${base}${url}`);
    await page.locator("#whoami").waitFor();
    const off = await page.$$eval("header nav li", (items) => items.filter((li) => li.getBoundingClientRect().right > innerWidth)
      .map((li) => li.textContent.trim()));
    assert.deepEqual(off, [], `${url}: every header link is on the screen`);
    assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= innerWidth), `${url}: no sideways scroll`);
  }
  await shot(page, "index-phone", true);
  await page.context().close();
});
