// The dashboard: a tab per resource (the address's `#section` picks it, so back, forward and links work), a
// paged list with a filter over the page, toggles, delete, the editor, and a session's messages and tool calls.
// What an action did or why it failed is said above the list (`#resource-status`, `#resource-error`).
import { $, el, formatDate, reveal } from "./dom.js";
import { api, describeError } from "./api.js";
import { me } from "./auth.js";
import { RESOURCES, itemLabel, loadNames } from "./resources.js";
import { openEditor } from "./editor.js";

const view = { key: "agents", url: null, data: null, names: null };
const allowed = (key) => RESOURCES[key] && !(RESOURCES[key].staff && !me.is_staff);

export async function dashboard() {
  $("#dashboard").hidden = false;
  const tabs = $("#sections");
  tabs.replaceChildren();
  for (const [key, resource] of Object.entries(RESOURCES)) {
    if (!allowed(key)) continue;
    // A tab is a link to its section's address: the hashchange below opens it, so back, forward and deep links work.
    // Its <li> is only layout (role=presentation), so the tablist's children are the tabs themselves.
    tabs.append(el("li", { role: "presentation" }, el("a", { href: `#${key}`, role: "tab", dataset: { section: key } }, resource.title)));
  }
  $("#filter").oninput = () => filterRows();
  $("#new-item").onclick = () => edit(null);
  $("#prev-page").onclick = () => view.data?.previous && loadPage(view.data.previous);
  $("#next-page").onclick = () => view.data?.next && loadPage(view.data.next);
  $("#editor-cancel").onclick = () => $("#editor").close();
  $("#detail-close").onclick = () => { $("#detail").hidden = true; reveal($("#resource-title")); };
  window.onhashchange = () => { if (allowed(location.hash.slice(1))) openSection(location.hash.slice(1)); };
  await openSection(allowed(location.hash.slice(1)) ? location.hash.slice(1) : "agents");
}

/** Says what happened above the list: `error` in red (role=alert), else a confirmation (role=status). */
function say(text, error = false) {
  $("#resource-status").textContent = error ? "" : text;
  $("#resource-error").textContent = error ? text : "";
  // An error after an action far down a long list: the line is brought into view.
  if (error) $("#resource-error").scrollIntoView({ block: "nearest" });
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
  say("");
  // Another section's rows never show under this title, not even while this one's load.
  $("#items thead").replaceChildren();
  $("#items tbody").replaceChildren();
  $("#page-info").textContent = "Loading…";
  await loadPage(resource.path);
}

const edit = (item) => openEditor(RESOURCES[view.key], item, view.names, async (message) => {
  await loadPage(view.url);
  say(message);
});

/** Same-origin path of a DRF page link (which is absolute). */
const pathOf = (url) => { const u = new URL(url, location.origin); return u.pathname + u.search; };

async function loadPage(url) {
  const key = view.key;
  const resource = RESOURCES[key];
  const [result, names] = await Promise.all([api("GET", pathOf(url)), loadNames()]);
  if (view.key !== key) return;
  if (!result.ok) return say(`Could not load ${resource.title.toLowerCase()}: ${describeError(result)}`, true);
  const { data } = result;
  view.url = pathOf(url);
  view.data = data;
  view.names = names;
  const head = el("tr", {}, resource.columns.map((c) => el("th", { scope: "col" }, c.label)), el("th", { scope: "col" }, "Actions"));
  $("#items thead").replaceChildren(head);
  if (data.count === 0) {
    $("#items tbody").replaceChildren(el("tr", { className: "empty" }, el("td", { colSpan: resource.columns.length + 1 },
      el("p", {}, `No ${resource.title.toLowerCase()} yet.`),
      el("button", { type: "button", onclick: () => edit(null) }, `Create your first ${resource.singular}`))));
  } else {
    $("#items tbody").replaceChildren(...data.results.map((item) => row(resource, item)));
  }
  $("#prev-page").disabled = !data.previous;
  $("#next-page").disabled = !data.next;
  filterRows();
}

function row(resource, item) {
  const label = itemLabel(resource, item, view.names);
  const cells = resource.columns.map((column) => {
    if ((resource.toggles || []).includes(column.key)) {
      return el("td", { dataset: { label: column.label } }, el("input", { type: "checkbox", role: "switch",
        checked: Boolean(item[column.key]), "aria-label": `${column.label}: ${label}`,
        onchange: async (event) => {
          const result = await api("PATCH", `${resource.path}${item.id}/`, { [column.key]: event.target.checked });
          await loadPage(view.url);
          if (result.ok) say(`${column.label} of ${label}: ${event.target.checked ? "on" : "off"}.`);
          else say(`Could not change "${column.label}" of ${label}: ${describeError(result)}`, true);
        } }));
    }
    const value = column.show ? column.show(item, view.names) : item[column.key];
    const text = value === null || value === undefined || value === "" ? "—" : typeof value === "object" ? JSON.stringify(value) : String(value);
    return el("td", { dataset: { label: column.label } }, text);
  });
  const actions = el("div", { className: "actions" });
  if (resource.view) actions.append(el("button", { className: "secondary", onclick: () => showSession(item) }, "View"));
  if (!resource.noEdit) actions.append(el("button", { className: "secondary", onclick: () => edit(item) }, "Edit"));
  actions.append(el("button", { className: "secondary outline", onclick: async () => {
    if (!confirm(`Delete ${label}?`)) return;
    const result = await api("DELETE", `${resource.path}${item.id}/`);
    await loadPage(view.url);
    if (result.ok) say(`Deleted ${label}.`);
    else say(`Could not delete ${label}: ${describeError(result)}`, true);
  } }, "Delete"));
  const tr = el("tr", {}, cells, el("td", { className: "actions-cell", dataset: { label: "Actions" } }, actions));
  tr.dataset.text = `${tr.textContent} ${JSON.stringify(item)}`.toLowerCase();
  return tr;
}

/** Hides the rows the filter does not match, and says how many it shows of how many. */
function filterRows() {
  const typed = $("#filter").value.trim();
  const needle = typed.toLowerCase();
  const rows = [...document.querySelectorAll("#items tbody tr:not(.empty)")];
  for (const tr of rows) tr.hidden = Boolean(needle) && !tr.dataset.text.includes(needle);
  $("#items tbody tr.no-match")?.remove();
  const count = view.data?.count ?? 0;
  const all = count === 1 ? "1 in all" : `${count} in all`;
  if (!needle || !rows.length) return void ($("#page-info").textContent = all);
  const shown = rows.filter((tr) => !tr.hidden).length;
  const page = rows.length < count ? ` of the ${rows.length} on this page (${all})` : ` of ${count}`;
  $("#page-info").textContent = `${shown}${page} match "${typed}"`;
  if (!shown) {
    $("#items tbody").append(el("tr", { className: "empty no-match" }, el("td", { colSpan: RESOURCES[view.key].columns.length + 1 },
      `Nothing on this page matches "${typed}".`)));
  }
}

/** A session's messages and tool calls below the list, scrolled to and focused. */
async function showSession(session) {
  const [messages, calls] = await Promise.all([
    api("GET", `/api/sessions/${session.id}/messages/?page_size=100`),
    api("GET", `/api/sessions/${session.id}/tool-calls/?page_size=100`),
  ]);
  const failed = [messages, calls].find((r) => !r.ok);
  if (failed) return say(`Could not show session #${session.id}: ${describeError(failed)}`, true);
  $("#detail-title").textContent = `Session #${session.id} with ${view.names?.agents.get(session.agent) ?? `agent #${session.agent}`}`;
  const list = el("ol", {}, messages.data.results.map((m) =>
    el("li", {}, el("strong", {}, `${m.role === "user" ? "User" : "Assistant"}${m.status && m.status !== "completed" ? ` (${m.status})` : ""}: `),
    m.content || (m.response_id ? "(tool calls)" : "—"), el("small", {}, ` ${formatDate(m.created_at)}`))));
  const table = el("table", {}, el("thead", {}, el("tr", {}, ["Call", "Tool", "Status", "Arguments", "Output"].map((c) => el("th", { scope: "col" }, c)))),
    el("tbody", {}, calls.data.results.map((c) => el("tr", {}, [c.call_id, c.name, c.status, c.arguments, c.output ?? "—"].map((v) => el("td", {}, v))))));
  $("#detail-body").replaceChildren(el("h4", {}, "Messages"), messages.data.results.length ? list : el("p", {}, "No messages."),
    el("h4", {}, "Tool calls"), calls.data.results.length ? el("div", { className: "table-scroll" }, table) : el("p", {}, "No tool calls."));
  $("#detail").hidden = false;
  reveal($("#detail-title"));
}
