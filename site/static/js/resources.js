// What the dashboard lists and edits, one entry per API collection: its columns (as Django admin's
// list_display: a label and how to show the value, names for ids, readable dates) and its form's fields.
import { formatDate } from "./dom.js";
import { api, health } from "./api.js";
import { me } from "./auth.js";

// The model an agent gets when none is named, as the server says (`/api/health/`), asked once per page.
let defaultModel;
const serverDefaultModel = () => (defaultModel ??= health().then((checks) => checks?.model_provider?.default_model ?? ""));

const options = (path, label) => async () => {
  const { data } = await api("GET", `${path}?page_size=100`);
  return (data?.results || []).map((item) => [item.id, label(item)]);
};
const agentOptions = options("/api/agents/", (a) => `${a.name} (#${a.id})`);
const toolOptions = options("/api/tools/", (t) => `${t.name} (#${t.id})`);
const serverOptions = options("/api/mcp-servers/", (s) => `${s.name} (#${s.id})`);
// The configured model providers (`/api/providers/`, a plain list), `openai` first.
const providers = async () => {
  const { data } = await api("GET", "/api/providers/");
  return Array.isArray(data) ? data : [];
};
const providerOptions = async () =>
  (await providers()).map((p) => [p.name, `${p.name} (${p.state === "local" ? "state kept by Lambent" : "state kept by the provider"})`]);

/** A provider chosen in the agent form brings its default model (the server's, if it names none), unless the
 * model field holds one the user typed: another provider's default would name a model it does not serve. */
async function followProvider(form) {
  const { provider, model } = form.elements;
  const fallback = await serverDefaultModel();
  const defaults = new Map((await providers()).map((p) => [p.name, p.default_model || fallback]));
  let previous = provider.value;
  provider.onchange = () => {
    if (!model.value.trim() || model.value === defaults.get(previous)) model.value = defaults.get(provider.value) ?? fallback;
    previous = provider.value;
  };
}

const col = (key, label, show) => ({ key, label, show });

/** A user's budget or limit as lists show it: null reads as `none` (budgets) or `default` (rate limits). */
const limit = (value, none) => (value === null || value === undefined ? none : value === 0 && none === "default" ? "no limit" : String(value));

/** A user's token budgets and rate limits, as the users editor and the usage page edit them (empty: null). */
export const LIMIT_FIELDS = [
  { name: "daily_token_budget", label: "Daily token budget (input + output; empty: none)", type: "number", nullable: true },
  { name: "monthly_token_budget", label: "Monthly token budget (empty: none)", type: "number", nullable: true },
  { name: "requests_per_minute", label: "Requests per minute (empty: the server's default; 0: no limit)", type: "number", nullable: true },
  { name: "max_concurrent_turns", label: "Turns at once (empty: the server's default; 0: no limit)", type: "number", nullable: true },
];
const date = (key, label) => col(key, label, (item) => formatDate(item[key]));
const agentName = (key, label, none = "—") => col(key, label, (item, names) =>
  item[key] === null || item[key] === undefined ? none : names.agents.get(item[key]) ?? `Agent #${item[key]}`);
const toolName = (key, label) => col(key, label, (item, names) => names.tools.get(item[key]) ?? `Tool #${item[key]}`);
const serverName = (key, label) => col(key, label, (item, names) => names.servers.get(item[key]) ?? `MCP server #${item[key]}`);
const ownerName = col("owner", "Owner", (item, names) =>
  item.owner === null ? "Global" : item.owner === me.id ? me.username : names.users.get(item.owner) ?? `User #${item.owner}`);

export const RESOURCES = {
  agents: {
    title: "Agents", singular: "agent", path: "/api/agents/", toggles: ["is_default"], wire: followProvider,
    columns: [col("name", "Name"), col("provider", "Provider"), col("model", "Model"), col("is_default", "Default"), ownerName, date("updated_at", "Updated")],
    fields: [
      { name: "name", label: "Name", required: true },
      { name: "provider", label: "Provider", type: "select", options: providerOptions },
      // Prefilled with the server's default, so the default is a real value; left empty, the server picks it.
      { name: "model", label: "Model", initial: serverDefaultModel, omitEmpty: true },
      { name: "system_prompt", label: "System prompt ({{name}} placeholders come from the request's variables)", type: "textarea" },
      { name: "is_default", label: "Default agent", type: "checkbox" },
      { name: "input_budget", label: "Input budget (tokens of history a request carries when Lambent keeps the state; empty: no limit)", type: "number" },
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
    title: "Agent tools", singular: "agent-tool link", path: "/api/agent-tools/", toggles: ["enabled", "require_approval"],
    columns: [agentName("agent", "Agent"), toolName("tool", "Tool"), col("enabled", "Enabled"), col("require_approval", "Needs approval")],
    label: (item, names) => `${names.tools.get(item.tool) ?? "tool"} for ${names.agents.get(item.agent) ?? "agent"}`,
    fields: [
      { name: "agent", label: "Agent", type: "select", options: agentOptions, required: true },
      { name: "tool", label: "Tool", type: "select", options: toolOptions, required: true },
      { name: "enabled", label: "Enabled", type: "checkbox", initial: true },
      { name: "require_approval", label: "Needs approval (each call waits for a person to approve it)", type: "checkbox" },
    ],
  },
  "mcp-servers": {
    title: "MCP servers", singular: "MCP server", path: "/api/mcp-servers/", toggles: ["is_active"],
    columns: [col("name", "Name"), col("url", "URL"), col("header_names", "Headers", (item) => item.header_names.join(", ")),
      col("allowed_tools", "Allowed tools", (item) => (item.allowed_tools.length ? item.allowed_tools.join(", ") : "All")),
      col("is_active", "Active")],
    fields: [
      { name: "name", label: "Name", required: true },
      { name: "url", label: "URL (Streamable HTTP endpoint, e.g. https://mcp.example.com/mcp)", required: true },
      // Write-only: the API never shows the values, so the field starts empty and an empty field keeps them.
      { name: "headers", label: "Headers (JSON object; values are never shown again — empty keeps the saved ones, {} clears them)",
        type: "json", placeholder: '{"Authorization": "Bearer ..."}', writeOnly: true },
      { name: "allowed_tools", label: "Allowed tools (JSON list of names; [] allows all)", type: "json", placeholder: "[]" },
      { name: "is_active", label: "Active", type: "checkbox", initial: true },
    ],
  },
  "agent-mcp-servers": {
    title: "Agent MCP servers", singular: "agent–MCP server link", path: "/api/agent-mcp-servers/",
    toggles: ["enabled", "require_approval"],
    columns: [agentName("agent", "Agent"), serverName("mcp_server", "MCP server"), col("enabled", "Enabled"),
      col("require_approval", "Needs approval")],
    label: (item, names) => `${names.servers.get(item.mcp_server) ?? "MCP server"} for ${names.agents.get(item.agent) ?? "agent"}`,
    fields: [
      { name: "agent", label: "Agent", type: "select", options: agentOptions, required: true },
      { name: "mcp_server", label: "MCP server", type: "select", options: serverOptions, required: true },
      { name: "enabled", label: "Enabled", type: "checkbox", initial: true },
      { name: "require_approval", label: "Needs approval (each call of its tools waits for a person to approve it)", type: "checkbox" },
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
    columns: [col("username", "Username"), col("is_staff", "Staff"), col("is_active", "Active"),
      col("daily_token_budget", "Daily budget", (u) => limit(u.daily_token_budget, "none")),
      col("monthly_token_budget", "Monthly budget", (u) => limit(u.monthly_token_budget, "none")),
      col("requests_per_minute", "Requests / min", (u) => limit(u.requests_per_minute, "default")),
      col("max_concurrent_turns", "Turns at once", (u) => limit(u.max_concurrent_turns, "default"))],
    fields: [
      { name: "username", label: "Username", required: true },
      { name: "password", label: "Password (at least 8 characters; empty keeps it)", type: "password" },
      { name: "is_staff", label: "Staff", type: "checkbox" },
      { name: "is_active", label: "Active", type: "checkbox", initial: true },
      ...LIMIT_FIELDS,
    ],
  },
};

/** Names for the ids lists show: agents, tools, MCP servers and (staff) users. */
export async function loadNames() {
  const list = async (path) => (await api("GET", `${path}?page_size=100`)).data?.results || [];
  const [agents, tools, servers, users] = await Promise.all([list("/api/agents/"), list("/api/tools/"),
    list("/api/mcp-servers/"), me.is_staff ? list("/api/users/") : []]);
  return { agents: new Map(agents.map((a) => [a.id, a.name])), tools: new Map(tools.map((t) => [t.id, t.name])),
    servers: new Map(servers.map((s) => [s.id, s.name])), users: new Map(users.map((u) => [u.id, u.username])) };
}

export const itemLabel = (resource, item, names) =>
  resource.label?.(item, names) ?? item.name ?? item.username ?? `${resource.singular} #${item.id}`;
