// Lambent's pages: a little plain JavaScript over the JSON API. Everything that comes from the API goes
// into the page as text (textContent, option.text, element attributes): never as HTML.
"use strict";

const TOKEN_KEY = "lambent.token";
const $ = (selector, root = document) => root.querySelector(selector);
const token = () => localStorage.getItem(TOKEN_KEY);
let me = null;

/** Builds an element; string children become text nodes. */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key in node && key !== "list") node[key] = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

async function api(method, path, body) {
  const headers = {};
  if (token()) headers.authorization = `Bearer ${token()}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await response.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = { detail: text }; }
  }
  if (response.status === 401 && path !== "/api/auth/login/") showLogin();
  return { status: response.status, ok: response.ok, data };
}

/** Shows a DRF error body next to the fields it names (and the rest in non_field_errors). */
function showErrors(form, data) {
  for (const node of form.querySelectorAll("[data-error-for]")) node.textContent = "";
  if (!data) return;
  const general = form.querySelector('[data-error-for="non_field_errors"]');
  for (const [field, messages] of Object.entries(data)) {
    const text = Array.isArray(messages) ? messages.join(" ") : String(messages);
    const target = form.querySelector(`[data-error-for="${CSS.escape(field)}"]`) || general;
    if (target) target.textContent = target.textContent ? `${target.textContent} ${text}` : text;
  }
}

// ---- Login ------------------------------------------------------------------------------------------------

function showLogin() {
  localStorage.removeItem(TOKEN_KEY);
  // Swagger UI keeps what it was authorized with (persistAuthorization) under this key: a revoked token goes too.
  localStorage.removeItem("authorized");
  me = null;
  const login = $("#login");
  if (login) login.hidden = false;
  for (const id of ["#dashboard", "#playground"]) if ($(id)) $(id).hidden = true;
  $("#whoami").textContent = "Not logged in";
  $("#logout").hidden = true;
  const state = $("#login-state");
  if (state) state.textContent = "You are not logged in.";
}

async function boot() {
  $("#logout").addEventListener("click", async () => {
    await api("POST", "/api/auth/logout/", {});
    showLogin();
  });
  const form = $("#login-form");
  if (form) {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const body = Object.fromEntries(new FormData(form));
      const { ok, data } = await api("POST", "/api/auth/login/", body);
      if (!ok) return showErrors(form, data);
      localStorage.setItem(TOKEN_KEY, data.token);
      form.reset();
      await start();
    });
  }
  await start();
}

async function start() {
  if (!token()) return showLogin();
  const { ok, data } = await api("GET", "/api/auth/me/");
  if (!ok) return showLogin();
  me = data;
  $("#whoami").textContent = `${me.username}${me.is_staff ? " (staff)" : ""}`;
  $("#logout").hidden = false;
  if ($("#login")) $("#login").hidden = true;
  const state = $("#login-state");
  if (state) state.textContent = `Logged in as ${me.username}.`;
  const page = document.body.dataset.page;
  if (page === "dashboard") await dashboard();
  if (page === "playground") await playground();
}

// ---- Dashboard --------------------------------------------------------------------------------------------

const agentOptions = async () => {
  const { data } = await api("GET", "/api/agents/?page_size=100");
  return (data?.results || []).map((a) => [a.id, `${a.name} (#${a.id})`]);
};
const toolOptions = async () => {
  const { data } = await api("GET", "/api/tools/?page_size=100");
  return (data?.results || []).map((t) => [t.id, `${t.name} (#${t.id})`]);
};

// Columns as Django admin's list_display: a label and how to show the value (names for ids, readable dates).
const col = (key, label, show) => ({ key, label, show });
const date = (key, label) => col(key, label, (item) => formatDate(item[key]));
const agentName = (key, label, none = "—") => col(key, label, (item, names) =>
  item[key] === null || item[key] === undefined ? none : names.agents.get(item[key]) ?? `Agent #${item[key]}`);
const toolName = (key, label) => col(key, label, (item, names) => names.tools.get(item[key]) ?? `Tool #${item[key]}`);
const ownerName = col("owner", "Owner", (item, names) =>
  item.owner === null ? "Global" : item.owner === me.id ? me.username : names.users.get(item.owner) ?? `User #${item.owner}`);

// The API's default model (shared/src/domain/agents.rs DEFAULT_MODEL), prefilled so the default is a real value.
const DEFAULT_MODEL = "gpt-4.1";

const RESOURCES = {
  agents: {
    title: "Agents", singular: "agent", path: "/api/agents/", toggles: ["is_default"],
    columns: [col("name", "Name"), col("model", "Model"), col("is_default", "Default"), ownerName, date("updated_at", "Updated")],
    fields: [
      { name: "name", label: "Name", required: true },
      { name: "model", label: "Model", initial: DEFAULT_MODEL, omitEmpty: true },
      { name: "system_prompt", label: "System prompt", type: "textarea" },
      { name: "is_default", label: "Default agent", type: "checkbox" },
    ],
  },
  tools: {
    title: "Tools", singular: "tool", path: "/api/tools/", toggles: ["is_active"],
    columns: [col("name", "Name"), col("tool_type", "Type"), col("description", "Description"), col("is_active", "Active"), ownerName],
    fields: [
      { name: "name", label: "Name (letters, digits, _ and -)", required: true },
      { name: "description", label: "Description", type: "textarea" },
      { name: "tool_type", label: "Type", type: "select", options: async () => [["function", "function"], ["custom", "custom"]] },
      { name: "parameters", label: "Parameters (JSON Schema)", type: "json", placeholder: '{"type": "object", "properties": {}}' },
      { name: "format", label: "Format (custom tools, JSON)", type: "json", nullable: true },
      { name: "executor", label: "Executor (JSON, e.g. {\"type\": \"echo\"})", type: "json", nullable: true },
      { name: "is_active", label: "Active", type: "checkbox", initial: true },
    ],
  },
  "agent-tools": {
    title: "Agent tools", singular: "agent-tool link", path: "/api/agent-tools/", toggles: ["enabled"],
    columns: [agentName("agent", "Agent"), toolName("tool", "Tool"), col("enabled", "Enabled")],
    label: (item, names) => `${names.tools.get(item.tool) ?? "tool"} for ${names.agents.get(item.agent) ?? "agent"}`,
    fields: [
      { name: "agent", label: "Agent", type: "select", options: agentOptions, required: true },
      { name: "tool", label: "Tool", type: "select", options: toolOptions, required: true },
      { name: "enabled", label: "Enabled", type: "checkbox", initial: true },
    ],
  },
  templates: {
    title: "Templates", singular: "template", path: "/api/templates/", toggles: ["is_default"],
    columns: [col("name", "Name"), agentName("agent", "Agent", "All agents (global)"), col("is_default", "Default")],
    fields: [
      { name: "name", label: "Name", required: true },
      { name: "template", label: "Template ({{name}} placeholders come from the request's variables)", type: "textarea", required: true },
      { name: "agent", label: "Agent (empty: global)", type: "select", options: agentOptions, nullable: true },
      { name: "is_default", label: "Default in its scope", type: "checkbox" },
    ],
  },
  sessions: {
    title: "Sessions", singular: "session", path: "/api/sessions/", noEdit: true, view: true,
    columns: [col("id", "Session", (item) => `#${item.id}`), agentName("agent", "Agent"), date("created_at", "Started"),
      date("updated_at", "Last activity")],
    label: (item) => `session #${item.id}`,
    fields: [{ name: "agent", label: "Agent", type: "select", options: agentOptions, required: true }],
  },
  tokens: {
    title: "API tokens", singular: "API token", path: "/api/tokens/", noEdit: true,
    columns: [col("name", "Name"), col("prefix", "Starts with"), date("created_at", "Created"), date("last_used_at", "Last used"),
      col("expires_at", "Expires", (item) => (item.expires_at ? formatDate(item.expires_at) : "Never"))],
    fields: [
      { name: "name", label: "Name", required: true },
      { name: "expires_in_days", label: "Expires in days (empty: never)", type: "number" },
    ],
  },
  users: {
    title: "Users", singular: "user", path: "/api/users/", toggles: ["is_staff", "is_active"], staff: true,
    columns: [col("username", "Username"), col("is_staff", "Staff"), col("is_active", "Active")],
    fields: [
      { name: "username", label: "Username", required: true },
      { name: "password", label: "Password (at least 8 characters; empty keeps it)", type: "password" },
      { name: "is_staff", label: "Staff", type: "checkbox" },
      { name: "is_active", label: "Active", type: "checkbox", initial: true },
    ],
  },
};

const view = { key: "agents", url: null, data: null, names: null };
const itemLabel = (resource, item) =>
  resource.label?.(item, view.names) ?? item.name ?? item.username ?? `${resource.singular} #${item.id}`;

async function dashboard() {
  $("#dashboard").hidden = false;
  const tabs = $("#sections");
  tabs.replaceChildren();
  for (const [key, resource] of Object.entries(RESOURCES)) {
    if (resource.staff && !me.is_staff) continue;
    // A tab is a link to its section's address: the hashchange below opens it, so back, forward and deep links work.
    // Its <li> is only layout (role=presentation), so the tablist's children are the tabs themselves.
    tabs.append(el("li", { role: "presentation" }, el("a", { href: `#${key}`, role: "tab", dataset: { section: key } }, resource.title)));
  }
  $("#filter").oninput = () => filterRows();
  $("#new-item").onclick = () => openEditor(null);
  $("#prev-page").onclick = () => view.data?.previous && loadPage(view.data.previous);
  $("#next-page").onclick = () => view.data?.next && loadPage(view.data.next);
  $("#editor-cancel").onclick = () => $("#editor").close();
  window.onhashchange = () => { if (RESOURCES[location.hash.slice(1)]) openSection(location.hash.slice(1)); };
  const wanted = location.hash.slice(1);
  await openSection(RESOURCES[wanted] && !(RESOURCES[wanted].staff && !me.is_staff) ? wanted : "agents");
}

async function openSection(key) {
  view.key = key;
  if (location.hash !== `#${key}`) history.replaceState(null, "", `#${key}`);
  for (const tab of document.querySelectorAll("[data-section]")) {
    const current = tab.dataset.section === key;
    tab.setAttribute("aria-selected", String(current));
    if (current) tab.setAttribute("aria-current", "page"); else tab.removeAttribute("aria-current");
  }
  const resource = RESOURCES[key];
  $("#resource-title").textContent = resource.title;
  $("#new-item").textContent = `New ${resource.singular}`;
  $("#detail").hidden = true;
  $("#filter").value = "";
  await loadPage(resource.path);
}

/** Same-origin path of a DRF page link (which is absolute). */
const pathOf = (url) => { const u = new URL(url, location.origin); return u.pathname + u.search; };

/** Names for the ids lists show: agents, tools and (staff) users. */
async function loadNames() {
  const list = async (path) => (await api("GET", path)).data?.results || [];
  const [agents, tools, users] = await Promise.all([list("/api/agents/?page_size=100"), list("/api/tools/?page_size=100"),
    me.is_staff ? list("/api/users/?page_size=100") : []]);
  return { agents: new Map(agents.map((a) => [a.id, a.name])), tools: new Map(tools.map((t) => [t.id, t.name])),
    users: new Map(users.map((u) => [u.id, u.username])) };
}

async function loadPage(url) {
  const key = view.key;
  const resource = RESOURCES[key];
  const [{ ok, data }, names] = await Promise.all([api("GET", pathOf(url)), loadNames()]);
  if (!ok || view.key !== key) return;
  view.url = pathOf(url);
  view.data = data;
  view.names = names;
  const head = el("tr", {}, resource.columns.map((c) => el("th", { scope: "col" }, c.label)), el("th", { scope: "col" }, "Actions"));
  $("#items thead").replaceChildren(head);
  if (data.count === 0) {
    $("#items tbody").replaceChildren(el("tr", { className: "empty" }, el("td", { colSpan: resource.columns.length + 1 },
      el("p", {}, `No ${resource.title.toLowerCase()} yet.`),
      el("button", { type: "button", onclick: () => openEditor(null) }, `Create your first ${resource.singular}`))));
  } else {
    $("#items tbody").replaceChildren(...data.results.map((item) => row(resource, item)));
  }
  $("#page-info").textContent = data.count === 1 ? "1 in all" : `${data.count} in all`;
  $("#prev-page").disabled = !data.previous;
  $("#next-page").disabled = !data.next;
  filterRows();
}

function row(resource, item) {
  const label = itemLabel(resource, item);
  const cells = resource.columns.map((column) => {
    if ((resource.toggles || []).includes(column.key)) {
      return el("td", { dataset: { label: column.label } }, el("input", { type: "checkbox", role: "switch",
        checked: Boolean(item[column.key]), "aria-label": `${column.label}: ${label}`,
        onchange: async (event) => {
          const { ok, status, data } = await api("PATCH", `${resource.path}${item.id}/`, { [column.key]: event.target.checked });
          await loadPage(view.url);
          if (!ok) alert(`Could not change "${column.label}" of ${label}: ${describeError(status, data)}`);
        } }));
    }
    const value = column.show ? column.show(item, view.names) : item[column.key];
    const text = value === null || value === undefined || value === "" ? "—" : typeof value === "object" ? JSON.stringify(value) : String(value);
    return el("td", { dataset: { label: column.label } }, text);
  });
  const actions = el("div", { className: "actions" });
  if (resource.view) actions.append(el("button", { className: "secondary", onclick: () => showSession(item) }, "View"));
  if (!resource.noEdit) actions.append(el("button", { className: "secondary", onclick: () => openEditor(item) }, "Edit"));
  actions.append(el("button", { className: "secondary outline", onclick: async () => {
    if (!confirm(`Delete ${label}?`)) return;
    const { ok, status, data } = await api("DELETE", `${resource.path}${item.id}/`);
    if (!ok) alert(`Could not delete ${label}: ${describeError(status, data)}`);
    await loadPage(view.url);
  } }, "Delete"));
  const tr = el("tr", {}, cells, el("td", { className: "actions-cell", dataset: { label: "Actions" } }, actions));
  tr.dataset.text = `${tr.textContent} ${JSON.stringify(item)}`.toLowerCase();
  return tr;
}

function filterRows() {
  const needle = $("#filter").value.trim().toLowerCase();
  for (const tr of document.querySelectorAll("#items tbody tr:not(.empty)")) tr.hidden = needle && !tr.dataset.text.includes(needle);
}

async function fieldInput(field, value) {
  const id = `field-${field.name}`;
  let input;
  if (field.type === "textarea") input = el("textarea", { id, name: field.name, rows: 4 }, value ?? "");
  else if (field.type === "json") {
    input = el("textarea", { id, name: field.name, rows: 4, placeholder: field.placeholder,
      className: "json" }, value === null || value === undefined ? "" : JSON.stringify(value, null, 2));
    input.spellcheck = false;
  } else if (field.type === "select") {
    input = el("select", { id, name: field.name });
    if (field.nullable) input.append(el("option", { value: "" }, "— none —"));
    for (const [optionValue, text] of await field.options()) input.append(el("option", { value: String(optionValue) }, text));
    if (value !== undefined && value !== null) input.value = String(value);
  } else if (field.type === "checkbox") {
    input = el("input", { id, name: field.name, type: "checkbox", role: "switch", checked: value ?? field.initial ?? false });
    return el("label", { htmlFor: id }, input, ` ${field.label}`, el("small", { className: "error", dataset: { errorFor: field.name } }));
  } else {
    input = el("input", { id, name: field.name, type: field.type || "text", placeholder: field.placeholder,
      value: value ?? field.initial ?? "", required: field.required && field.type !== "password" });
  }
  return el("div", {}, el("label", { htmlFor: id }, field.label), input,
    el("small", { className: "error", role: "alert", dataset: { errorFor: field.name } }));
}

/** After a refused save: the first field with an error is focused and scrolled to, and a summary sits by Save. */
function revealErrors(form, resource) {
  const named = [];
  let first = null;
  for (const field of resource.fields) {
    const message = form.querySelector(`[data-error-for="${CSS.escape(field.name)}"]`);
    if (!message?.textContent) continue;
    named.push(field.label.replace(/ \(.*$/, ""));
    first ??= form.elements[field.name];
  }
  const general = form.querySelector('[data-error-for="non_field_errors"]').textContent;
  $("#editor-summary").textContent = named.length
    ? `Not saved: check ${named.join(", ")}${general ? ", and the message above" : ""}.`
    : general ? "" : "Not saved.";
  const target = first || form.querySelector('[data-error-for="non_field_errors"]');
  target.scrollIntoView({ block: "center" });
  if (first) first.focus({ preventScroll: true });
}

async function openEditor(item) {
  const resource = RESOURCES[view.key];
  const form = $("#editor-form");
  $("#editor-title").textContent = item ? `Edit ${resource.singular} ${itemLabel(resource, item)}` : `New ${resource.singular}`;
  const fields = [];
  for (const field of resource.fields) fields.push(await fieldInput(field, item ? item[field.name] : undefined));
  $("#editor-fields").replaceChildren(...fields);
  showErrors(form, null);
  $("#editor-summary").textContent = "";
  form.onsubmit = async (event) => {
    event.preventDefault();
    const body = {};
    const local = {};
    for (const field of resource.fields) {
      const input = form.elements[field.name];
      if (field.type === "checkbox") body[field.name] = input.checked;
      else if (field.type === "json") {
        const text = input.value.trim();
        if (!text) { if (field.nullable) body[field.name] = null; continue; }
        try { body[field.name] = JSON.parse(text); } catch (error) { local[field.name] = [`Not valid JSON: ${error.message}`]; }
      } else if (field.type === "number") { if (input.value !== "") body[field.name] = Number(input.value); }
      else if (field.type === "select") {
        if (input.value === "") { if (field.nullable) body[field.name] = null; } else body[field.name] = Number(input.value) || input.value;
      } else if (field.type === "password") { if (input.value) body[field.name] = input.value; }
      else if (field.omitEmpty && !input.value.trim()) continue;
      else body[field.name] = input.value;
    }
    if (Object.keys(local).length) { showErrors(form, local); return revealErrors(form, resource); }
    const { ok, status, data } = item
      ? await api("PATCH", `${resource.path}${item.id}/`, body)
      : await api("POST", resource.path, body);
    if (!ok) {
      showErrors(form, data && typeof data === "object" ? data : { non_field_errors: [describeError(status, data)] });
      return revealErrors(form, resource);
    }
    $("#editor").close();
    if (view.key === "tokens" && data.token) {
      alert(`Your new token (shown only this once):\n\n${data.token}`);
    }
    await loadPage(view.url);
  };
  $("#editor").showModal();
  form.querySelector("input, textarea, select")?.focus();
}

async function showSession(session) {
  const [messages, calls] = await Promise.all([
    api("GET", `/api/sessions/${session.id}/messages/?page_size=100`),
    api("GET", `/api/sessions/${session.id}/tool-calls/?page_size=100`),
  ]);
  $("#detail-title").textContent = `Session #${session.id} with ${view.names?.agents.get(session.agent) ?? `agent #${session.agent}`}`;
  const list = el("ol", {}, (messages.data?.results || []).map((m) =>
    el("li", {}, el("strong", {}, `${m.role === "user" ? "User" : "Assistant"}${m.status && m.status !== "completed" ? ` (${m.status})` : ""}: `),
    m.content || (m.response_id ? "(tool calls)" : "—"), el("small", {}, ` ${formatDate(m.created_at)}`))));
  const table = el("table", {}, el("thead", {}, el("tr", {}, ["Call", "Tool", "Status", "Arguments", "Output"].map((c) => el("th", { scope: "col" }, c)))),
    el("tbody", {}, (calls.data?.results || []).map((c) => el("tr", {}, [c.call_id, c.name, c.status, c.arguments, c.output ?? "—"].map((v) => el("td", {}, v))))));
  $("#detail-body").replaceChildren(el("h4", {}, "Messages"), list, el("h4", {}, "Tool calls"),
    el("div", { className: "table-scroll" }, table));
  $("#detail").hidden = false;
}

// ---- Playground -------------------------------------------------------------------------------------------

const chat = { controller: null, bubble: null, sessionId: null, streaming: null };

/** One sentence from a DRF error body: its `detail`, else every field's messages. */
function describeError(status, data) {
  if (data && typeof data === "object") {
    if (data.detail) return String(data.detail);
    const messages = Object.values(data).flat().filter((m) => typeof m === "string");
    if (messages.length) return messages.join(" ");
  }
  return `The server refused it (HTTP ${status}).`;
}

async function playground() {
  $("#playground").hidden = false;
  const { data } = await api("GET", "/api/agents/?page_size=100");
  const agents = data?.results || [];
  const select = $("#agent");
  select.replaceChildren(...agents.map((a) => el("option", { value: String(a.id) }, `${a.name}${a.is_default ? " (default)" : ""}`)));
  $("#no-agents").hidden = agents.length > 0;
  const preferred = agents.find((a) => a.is_default && a.owner === me.id) || agents.find((a) => a.is_default);
  if (preferred) select.value = String(preferred.id);
  select.onchange = () => loadSessions();
  $("#session").onchange = () => loadHistory();
  $("#chat-form").onsubmit = (event) => { event.preventDefault(); send(); };
  $("#message").onkeydown = (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) { event.preventDefault(); send(); }
  };
  $("#add-variable").onclick = () => addVariable("").querySelector("input").focus();
  $("#stop").onclick = stop;
  await loadSessions();
}

/** "25 Nov 2026, 20:14" from the API's "2026-11-25T20:14:11.123456Z". */
function formatDate(value) {
  if (!value) return "—";
  const date = new Date(String(value).replace(/(\.\d{3})\d+/, "$1"));
  if (Number.isNaN(date.getTime())) return String(value);
  return date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

async function loadSessions(selected) {
  const agent = $("#agent").value;
  const select = $("#session");
  const options = [el("option", { value: "" }, "New session")];
  if (agent) {
    const { data } = await api("GET", `/api/sessions/?agent=${encodeURIComponent(agent)}&page_size=100`);
    for (const s of (data?.results || []).reverse()) {
      options.push(el("option", { value: String(s.id) }, `Session #${s.id} · ${formatDate(s.updated_at)}`));
    }
  }
  select.replaceChildren(...options);
  select.value = selected ? String(selected) : "";
  if (!selected) await loadHistory();
}

/** The session's messages and tool calls, in the order they happened: each response's calls right after its
 * message (a tool-call turn has no text of its own), any other call at its time. */
async function loadHistory() {
  const session = $("#session").value;
  chat.sessionId = session ? Number(session) : null;
  $("#history").replaceChildren();
  $("#chat-error").textContent = "";
  if (!session) return;
  const [messages, calls] = await Promise.all([
    api("GET", `/api/sessions/${session}/messages/?page_size=100`),
    api("GET", `/api/sessions/${session}/tool-calls/?page_size=100`),
  ]);
  if ($("#session").value !== session) return;
  const byResponse = new Map();
  for (const call of calls.data?.results || []) {
    if (!byResponse.has(call.response_id)) byResponse.set(call.response_id, []);
    byResponse.get(call.response_id).push(call);
  }
  const entries = [];
  for (const m of messages.data?.results || []) {
    const own = (m.role === "assistant" && m.response_id && byResponse.get(m.response_id)) || [];
    byResponse.delete(m.response_id);
    entries.push({ at: m.created_at, message: m, calls: own });
  }
  for (const rest of byResponse.values()) for (const call of rest) entries.push({ at: call.created_at, calls: [call] });
  entries.sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : 0));
  for (const { message: m, calls: own } of entries) {
    if (m && (m.content || m.role === "user" || !own.length)) {
      const bubble = addBubble(m.role, m.content);
      if (m.status && m.status !== "completed") bubble.append(el("small", { className: "note" }, ` (${m.status})`));
    }
    for (const call of own) addToolCard(call, call);
  }
}

function addBubble(role, text = "") {
  const bubble = el("div", { className: `message ${role}`, dataset: { role } }, text);
  $("#history").append(bubble);
  return bubble;
}

function busy(on) {
  $("#send").disabled = on;
  $("#stop").disabled = !on;
  $("#send").setAttribute("aria-busy", String(on));
  // One turn at a time: no output can be submitted while a stream runs (the server would refuse it).
  for (const button of document.querySelectorAll(".tool-card form button")) button.disabled = on;
}

/** A name/value row of the template variables; its value's label names the variable. */
function addVariable(name, value = "") {
  $("#variables").open = true;
  const valueInput = el("input", { className: "variable-value", value, placeholder: "value", "aria-label": `Value of ${name || "the variable"}` });
  const nameInput = el("input", { className: "variable-name", value: name, placeholder: "name", "aria-label": "Variable name",
    oninput: () => valueInput.setAttribute("aria-label", `Value of ${nameInput.value.trim() || "the variable"}`) });
  const row = el("div", { className: "variable", role: "group", "aria-label": "Template variable" }, nameInput, valueInput,
    el("button", { type: "button", className: "secondary outline", "aria-label": "Remove variable",
      onclick: () => row.remove() }, "Remove"));
  $("#variable-rows").append(row);
  return row;
}

function variables() {
  const out = {};
  for (const row of document.querySelectorAll("#variable-rows .variable")) {
    const name = row.querySelector(".variable-name").value.trim();
    if (name) out[name] = row.querySelector(".variable-value").value;
  }
  return out;
}

async function send() {
  const message = $("#message").value.trim();
  if (!message || chat.controller) return;
  $("#chat-error").textContent = "";
  const bubble = addBubble("user", message);
  $("#message").value = "";
  const body = { message, agent_id: Number($("#agent").value) || undefined, auto_execute_tools: $("#auto-execute").checked };
  if (chat.sessionId) body.session_id = chat.sessionId;
  const given = variables();
  if (Object.keys(given).length) body.variables = given;
  const result = await stream("/api/agent/stream/", body);
  if (result.status >= 400) refused(bubble, message, result);
}

/** A message the server refused before storing it: why, on the bubble and above the box, and the text back in
 * the box; a missing template variable becomes a field to fill. */
function refused(bubble, message, { status, data }) {
  const why = describeError(status, data);
  bubble.classList.add("not-sent");
  bubble.append(el("small", { className: "note" }, " — not sent"));
  $("#chat-error").textContent = `Not sent: ${why}`;
  if (!$("#message").value) $("#message").value = message;
  let focus = $("#message");
  for (const text of [].concat(data?.variables || [])) {
    const name = /template variable "(.*)"/.exec(String(text))?.[1];
    if (name === undefined) continue;
    const existing = [...document.querySelectorAll("#variable-rows .variable")]
      .find((row) => row.querySelector(".variable-name").value.trim() === name);
    const row = existing || addVariable(name);
    if (focus === $("#message")) focus = row.querySelector(".variable-value");
  }
  focus.focus();
}

/** Stops the running turn on the server (its stream then ends with `error` cancelled and `done`); only if
 * that is refused, stops listening instead. */
async function stop() {
  const session = chat.streaming;
  const { status } = session ? await api("POST", `/api/sessions/${session}/cancel/`) : { status: 0 };
  if (status !== 202) chat.controller?.abort();
}

/** POSTs and relays the SSE answer; JSON answers (errors, 202) come back to the caller. */
async function stream(path, body) {
  chat.controller = new AbortController();
  busy(true);
  chat.bubble = null;
  let started = false;
  try {
    const response = await fetch(path, {
      method: "POST", signal: chat.controller.signal,
      headers: { "content-type": "application/json", authorization: `Bearer ${token()}` },
      body: JSON.stringify(body),
    });
    if (!(response.headers.get("content-type") || "").startsWith("text/event-stream")) {
      const text = await response.text();
      let data = {};
      try { data = text ? JSON.parse(text) : {}; } catch { data = { detail: text }; }
      if (response.status === 401) showLogin();
      return { status: response.status, data };
    }
    // The session is known from the headers, before any frame: Stop can cancel even a new session's turn.
    chat.streaming = Number(response.headers.get("lambent-session-id")) || null;
    started = true;
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const frame = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        let event = "message";
        const data = [];
        for (const line of frame.split("\n")) {
          if (line.startsWith("event: ")) event = line.slice(7);
          else if (line.startsWith("data: ")) data.push(line.slice(6));
        }
        if (data.length) onEvent(event, data.join("\n"));
      }
    }
    return { status: response.status };
  } catch (error) {
    if (error.name === "AbortError") $("#chat-error").textContent = "Stopped. The answer goes on being stored on the server.";
    else $("#chat-error").textContent = `Connection problem: ${error.message}`;
    return { status: 0, started };
  } finally {
    chat.controller = null;
    chat.streaming = null;
    busy(false);
  }
}

function onEvent(event, raw) {
  if (event === "openai_event") {
    const log = $("#raw-events");
    log.append(document.createTextNode(`${raw}\n`));
    return;
  }
  const data = JSON.parse(raw);
  if (event === "text_delta") {
    chat.bubble ??= addBubble("assistant");
    chat.bubble.textContent += data.delta;
  } else if (event === "tool_call") {
    addToolCard(data);
    // Text after the calls (a later round) starts a bubble of its own, below them.
    chat.bubble = null;
  } else if (event === "tool_result") {
    const card = document.querySelector(`[data-call-id="${CSS.escape(data.call_id)}"]`);
    if (card) showOutput(card, "executed", "Ran on the server:", data.output);
  } else if (event === "error") {
    $("#chat-error").textContent = `${data.message} (${data.code})`;
  } else if (event === "done") {
    if (data.session_id && data.session_id !== chat.sessionId) {
      chat.sessionId = data.session_id;
      loadSessions(data.session_id);
    }
  }
}

/** A tool card's outcome in place of its form: what was sent (or run), as text. */
function showOutput(card, status, label, output) {
  card.dataset.status = status;
  card.querySelector("form")?.remove();
  card.querySelector(".tool-result")?.remove();
  const result = el("div", { className: "tool-result" }, el("p", {}, label));
  if (output !== undefined && output !== null) result.append(el("pre", { className: "tool-output" }, output));
  card.append(result);
  return result;
}

const OUTCOMES = { submitted: "Output sent:", executed: "Ran on the server:" };

/** A card for a tool call, in the conversation where it happened; `record` is the ledger's row (history). */
function addToolCard(call, record) {
  const card = el("article", { className: "tool-card", dataset: { callId: call.call_id, status: record?.status || "pending" } },
    el("header", {}, el("strong", {}, `Tool call: ${call.name}`), el("small", {}, ` ${call.type}, ${call.call_id}`)),
    el("pre", { className: "tool-arguments" }, call.arguments ?? call.input ?? ""));
  $("#history").append(card);
  if (record && OUTCOMES[record.status]) showOutput(card, record.status, OUTCOMES[record.status], record.output);
  else if (record?.status === "expired") showOutput(card, "expired", "Expired: a later message went on without it.");
  else card.append(outputForm(card, call));
  return card;
}

function outputForm(card, call) {
  const id = `output-${call.call_id}`;
  const output = el("textarea", { id, name: "output", rows: 2, required: true });
  const error = el("p", { className: "error", role: "alert" });
  const form = el("form", { onsubmit: async (event) => {
    event.preventDefault();
    if (chat.controller) return;
    const value = output.value;
    // The output shows on the card at once; the form comes back only if the server refuses it.
    const shown = showOutput(card, "submitted", "Sending output:", value);
    const result = await stream("/api/agent/tool-output/", { session_id: chat.sessionId, call_id: call.call_id, output: value });
    if (result.status === 202) {
      shown.firstChild.textContent = `Output sent; waiting for: ${result.data.pending_tool_calls.join(", ")}`;
    } else if (result.status >= 400 || (result.status === 0 && !result.started)) {
      shown.remove();
      card.dataset.status = "pending";
      card.append(form);
      if (result.status) {
        error.textContent = `Not sent: ${describeError(result.status, result.data)}`;
        $("#chat-error").textContent = error.textContent;
      }
      output.focus();
    } else {
      shown.firstChild.textContent = "Output sent:";
    }
  } }, el("label", { htmlFor: id }, `Output for ${call.name}`), output, error,
  el("button", { type: "submit", disabled: Boolean(chat.controller) }, "Submit output"));
  return form;
}

window.addEventListener("DOMContentLoaded", boot);
