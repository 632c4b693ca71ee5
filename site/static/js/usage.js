// The usage page: tokens per day and per agent (Chart.js, vendored, drawn on canvases; the same numbers in a
// table), the budget state of the user looked at — today's and this month's spend against their budgets, with
// 80 % and 100 % marked — and, for staff, anyone's usage and a form for their budgets and rate limits.
// Everything is read from `/api/usage/` and `/api/users/`; an error is said under the query form
// (`#usage-error`) or by the limits form's fields.
import { $, el } from "./dom.js";
import { api, describeError, showErrors } from "./api.js";
import { me } from "./auth.js";
import { LIMIT_FIELDS } from "./resources.js";

const charts = {};
const number = new Intl.NumberFormat();
/** `YYYY-MM-DD` of a date, in UTC (the API's days are UTC days). */
const day = (date) => date.toISOString().slice(0, 10);

export async function usage() {
  $("#usage").hidden = false;
  const today = new Date();
  $("#to").value = day(today);
  $("#from").value = day(new Date(today.getTime() - 29 * 86_400_000));
  if (me.is_staff) {
    const { data } = await api("GET", "/api/users/?page_size=100");
    const owner = $("#owner");
    owner.replaceChildren(el("option", { value: "" }, `Me (${me.username})`), el("option", { value: "all" }, "Everyone"),
      ...(data?.results || []).filter((u) => u.id !== me.id).map((u) => el("option", { value: String(u.id) }, u.username)));
    $("#owner-field").hidden = false;
    owner.onchange = () => show();
    buildLimitsForm();
  }
  $("#usage-query").onsubmit = (event) => { event.preventDefault(); show(); };
  await show();
}

/** Whose usage the page shows: null for the caller, "all" for everyone (staff), else a user id. */
const owner = () => (me.is_staff && $("#owner").value ? $("#owner").value : null);

async function show() {
  $("#usage-error").textContent = "";
  const who = owner();
  const query = new URLSearchParams({ from: $("#from").value, to: $("#to").value });
  if (who && who !== "all") query.set("owner", who);
  const [days, agents, names] = await Promise.all([
    api("GET", `/api/usage/?${query}`),
    api("GET", `/api/usage/?${query}&by=agent`),
    api("GET", "/api/agents/?page_size=100"),
  ]);
  const failed = [days, agents].find((r) => !r.ok);
  if (failed) {
    $("#usage-error").textContent = `Could not show usage: ${describeError(failed)}`;
    $("#usage-error").scrollIntoView({ block: "nearest" });
  } else {
    const agentNames = new Map((names.data?.results || []).map((a) => [a.id, a.name]));
    drawDays(days.data);
    drawAgents(agents.data, agentNames);
    fillTable(days.data);
  }
  await showBudget(who);
}

const COLORS = { input: "#1e88e5", output: "#f4511e" };

function chart(id, config) {
  charts[id]?.destroy();
  charts[id] = new window.Chart($(`#${id}`), config);
}

/** Bars (`horizontal`: one per row, the value along x), stacked or not, counts formatted on the value axis. */
const common = (stacked, horizontal = false) => {
  const value = { stacked, beginAtZero: true, ticks: { callback: (v) => number.format(v), precision: 0 } };
  const category = { stacked };
  return {
    responsive: true, maintainAspectRatio: false, animation: false, indexAxis: horizontal ? "y" : "x",
    datasets: { bar: { maxBarThickness: 48 } },
    scales: horizontal ? { x: value, y: category } : { x: category, y: value },
    plugins: { legend: { position: "bottom" } },
  };
};

function drawDays(report) {
  const labels = report.rows.map((r) => r.period);
  chart("chart-days", { type: "bar", options: common(true), data: { labels, datasets: [
    { label: "Input tokens", data: report.rows.map((r) => r.input_tokens), backgroundColor: COLORS.input },
    { label: "Output tokens", data: report.rows.map((r) => r.output_tokens), backgroundColor: COLORS.output },
  ] } });
  $("#chart-days").setAttribute("aria-label", `Tokens per day: ${report.rows.map((r) => `${r.period} ${number.format(r.total_tokens)}`).join(", ") || "none"}`);
  const t = report.totals;
  $("#usage-summary").textContent = `${number.format(t.total_tokens)} tokens (${number.format(t.input_tokens)} in, ` +
    `${number.format(t.output_tokens)} out) in ${t.turns} turn${t.turns === 1 ? "" : "s"}` +
    `${t.failed_turns ? `, ${t.failed_turns} failed` : ""}, ${report.from} to ${report.to}` +
    `${t.cost !== undefined ? `; cost $${t.cost.toFixed(4)}` : ""}.`;
}

function drawAgents(report, names) {
  const totals = new Map();
  for (const r of report.rows) totals.set(r.agent_id, (totals.get(r.agent_id) || 0) + r.total_tokens);
  const entries = [...totals].sort((a, b) => b[1] - a[1]);
  const labels = entries.map(([id]) => names.get(id) ?? `Agent #${id}`);
  chart("chart-agents", { type: "bar", options: common(false, true), data: { labels, datasets: [
    { label: "Tokens", data: entries.map(([, n]) => n), backgroundColor: COLORS.input },
  ] } });
  $("#chart-agents").setAttribute("aria-label", `Tokens per agent: ${entries.map(([id, n], i) => `${labels[i]} ${number.format(n)}`).join(", ") || "none"}`);
}

function fillTable(report) {
  const heads = ["Day", "Input", "Output", "Cached", "Reasoning", "Total", "Turns", "Failed"];
  $("#usage-table thead").replaceChildren(el("tr", {}, heads.map((h) => el("th", { scope: "col" }, h))));
  const rows = report.rows.length ? report.rows : [];
  $("#usage-table tbody").replaceChildren(...rows.map((r) => el("tr", {},
    [r.period, r.input_tokens, r.output_tokens, r.cached_tokens, r.reasoning_tokens, r.total_tokens, r.turns, r.failed_turns]
      .map((v, i) => el("td", { dataset: { label: heads[i] } }, typeof v === "number" ? number.format(v) : v)))));
  if (!rows.length) $("#usage-table tbody").append(el("tr", {}, el("td", { colSpan: heads.length }, "No turns in this range.")));
}

/** The spend of the user looked at today and this month (UTC), against their budgets. */
async function showBudget(who) {
  const state = $("#budget-state");
  if (who === "all") {
    $("#limits").hidden = true;
    return state.replaceChildren(el("p", {}, "Budgets are per user: choose one to see theirs."));
  }
  const user = who ? await api("GET", `/api/users/${who}/`) : { ok: true, data: me };
  const now = new Date();
  const month = `${day(now).slice(0, 8)}01`;
  const query = new URLSearchParams({ from: month, to: day(now) });
  if (who) query.set("owner", who);
  const spent = await api("GET", `/api/usage/?${query}`);
  const failed = [user, spent].find((r) => !r.ok);
  if (failed) return state.replaceChildren(el("p", { className: "error", role: "alert" }, `Could not read the budget: ${describeError(failed)}`));
  if (who) me.is_staff && fillLimitsForm(user.data);
  else if (me.is_staff) fillLimitsForm(me);
  const todayUsed = spent.data.rows.find((r) => r.period === day(now))?.total_tokens ?? 0;
  const nextDay = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate() + 1));
  const nextMonth = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1));
  const name = who ? user.data.username : "You";
  state.replaceChildren(
    bar("Today", user.data.daily_token_budget, todayUsed, nextDay, name),
    bar("This month", user.data.monthly_token_budget, spent.data.totals.total_tokens, nextMonth, name),
  );
}

/** One budget's bar: spend against the budget, 80 % and 100 % marked, and what it means in words. */
function bar(period, budget, used, resets, name) {
  const title = el("h3", {}, period);
  if (budget === null || budget === undefined) {
    return el("div", { className: "budget" }, title, el("p", {}, `${number.format(used)} tokens; no ${period === "Today" ? "daily" : "monthly"} budget.`));
  }
  const share = budget === 0 ? (used > 0 ? Infinity : 1) : used / budget;
  const percent = Number.isFinite(share) ? Math.round(share * 100) : 100;
  const meter = el("meter", { min: 0, max: Math.max(budget, 1), low: budget * 0.8 - 0.5, high: budget - 0.5, optimum: 0, value: Math.min(used, budget),
    "aria-label": `${period}: ${number.format(used)} of ${number.format(budget)} tokens` });
  const scale = el("div", { className: "budget-scale" }, meter,
    el("span", { className: "mark mark-80", "aria-hidden": "true" }, "80 %"),
    el("span", { className: "mark mark-100", "aria-hidden": "true" }, "100 %"));
  const words = `${number.format(used)} of ${number.format(budget)} tokens (${percent} %)`;
  let note;
  if (share >= 1) {
    const when = resets.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
    note = el("p", { className: "budget-note spent", role: "alert" },
      `${name === "You" ? "Your" : `${name}'s`} ${period === "Today" ? "daily" : "monthly"} budget is spent: new turns are refused until ${when}.`);
  } else if (share >= 0.8) {
    note = el("p", { className: "budget-note warning" }, `Over 80 %: ${number.format(budget - used)} tokens left.`);
  } else {
    note = el("p", { className: "budget-note" }, `${number.format(budget - used)} tokens left.`);
  }
  return el("div", { className: `budget${share >= 1 ? " is-spent" : share >= 0.8 ? " is-near" : ""}` }, title, el("p", {}, words), scale, note);
}

function buildLimitsForm() {
  $("#limits-fields").replaceChildren(...LIMIT_FIELDS.map((field) => el("div", {},
    el("label", { htmlFor: `limit-${field.name}` }, field.label),
    el("input", { id: `limit-${field.name}`, name: field.name, type: "number", min: 0, step: 1, inputMode: "numeric" }),
    el("small", { className: "error", role: "alert", dataset: { errorFor: field.name } }))));
  $("#limits-form").onsubmit = async (event) => {
    event.preventDefault();
    const form = $("#limits-form");
    const target = form.dataset.user;
    const body = Object.fromEntries(LIMIT_FIELDS.map((f) => {
      const value = form.elements[f.name].value.trim();
      return [f.name, value === "" ? null : Number(value)];
    }));
    $("#limits-status").textContent = "";
    const result = await api("PATCH", `/api/users/${target}/`, body);
    showErrors(form, result.ok ? null : result.data);
    if (!result.ok) {
      const first = form.querySelector(".error:not(:empty)");
      first?.previousElementSibling?.focus?.();
      if (!first) showErrors(form, { non_field_errors: [describeError(result)] });
      return;
    }
    if (String(result.data.id) === String(me.id)) Object.assign(me, result.data);
    $("#limits-status").textContent = `Saved the budgets and limits of ${result.data.username}.`;
    await showBudget(owner());
  };
}

function fillLimitsForm(user) {
  const form = $("#limits-form");
  form.dataset.user = String(user.id);
  $("#limits-title").textContent = `Budgets and limits of ${user.username}`;
  for (const field of LIMIT_FIELDS) form.elements[field.name].value = user[field.name] ?? "";
  showErrors(form, null);
  $("#limits").hidden = false;
}
