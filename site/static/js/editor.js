// The dashboard's create/edit dialog: a form from a resource's fields, checked where it can be before sending
// (JSON), the server's refusals shown by the fields they name and summarised by Save, and after a save what
// happened said where the user looks (a new token's secret in a dialog of its own, once).
import { $, el, reveal } from "./dom.js";
import { api, describeError, showErrors } from "./api.js";
import { itemLabel } from "./resources.js";

async function fieldInput(field, value) {
  const id = `field-${field.name}`;
  const initial = typeof field.initial === "function" ? await field.initial() : field.initial;
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
    // A value no longer offered (a provider since unconfigured) stays what it is, not silently the first option.
    if (value !== undefined && value !== null && ![...input.options].some((o) => o.value === String(value))) {
      input.append(el("option", { value: String(value) }, `${value} (not available)`));
    }
    if (value !== undefined && value !== null) input.value = String(value);
  } else if (field.type === "checkbox") {
    input = el("input", { id, name: field.name, type: "checkbox", role: "switch", checked: value ?? initial ?? false });
    return el("label", { htmlFor: id }, input, ` ${field.label}`, el("small", { className: "error", dataset: { errorFor: field.name } }));
  } else {
    input = el("input", { id, name: field.name, type: field.type || "text", placeholder: field.placeholder,
      value: value ?? initial ?? "", required: field.required && field.type !== "password",
      autocomplete: field.type === "password" ? "new-password" : undefined });
  }
  return el("div", {}, el("label", { htmlFor: id }, field.label), input,
    el("small", { className: "error", role: "alert", dataset: { errorFor: field.name } }));
}

/** The request body from the form, and the errors found before sending (JSON that does not parse). */
function collect(form, resource) {
  const body = {};
  const local = {};
  for (const field of resource.fields) {
    const input = form.elements[field.name];
    if (field.type === "checkbox") body[field.name] = input.checked;
    else if (field.type === "json") {
      const text = input.value.trim();
      // A write-only field left empty keeps what is saved (and sends nothing).
      if (!text) { if (field.nullable && !field.writeOnly) body[field.name] = null; continue; }
      try { body[field.name] = JSON.parse(text); } catch (error) { local[field.name] = [`Not valid JSON: ${error.message}`]; }
    } else if (field.type === "number") {
      if (input.value !== "") body[field.name] = Number(input.value);
      else if (field.nullable) body[field.name] = null;
    }
    else if (field.type === "select") {
      if (input.value === "") { if (field.nullable) body[field.name] = null; } else body[field.name] = Number(input.value) || input.value;
    } else if (field.type === "password") { if (input.value) body[field.name] = input.value; }
    else if (field.omitEmpty && !input.value.trim()) continue;
    else body[field.name] = input.value;
  }
  return { body, local };
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

/** What a save did, in words: "Created agent Mine.", "Saved user bob; the new password is in effect." */
function saved(resource, item, data, body, names) {
  const label = itemLabel(resource, data ?? item, names);
  const what = `${item ? "Saved" : "Created"} ${resource.singular} ${label}`;
  return body.password ? `${what}; ${item ? "the new password is in effect" : "they can log in with the password set"}.` : `${what}.`;
}

/** Opens the dialog on `item` (null: a new one); `onSaved(message)` runs after a save, the dialog closed. */
export async function openEditor(resource, item, names, onSaved) {
  const form = $("#editor-form");
  $("#editor-title").textContent = item ? `Edit ${resource.singular} ${itemLabel(resource, item, names)}` : `New ${resource.singular}`;
  const fields = [];
  for (const field of resource.fields) fields.push(await fieldInput(field, item ? item[field.name] : undefined));
  $("#editor-fields").replaceChildren(...fields);
  // What a resource's fields do to each other (an agent's provider brings its default model).
  await resource.wire?.(form);
  showErrors(form, null);
  $("#editor-summary").textContent = "";
  form.onsubmit = async (event) => {
    event.preventDefault();
    const { body, local } = collect(form, resource);
    if (Object.keys(local).length) { showErrors(form, local); return revealErrors(form, resource); }
    const result = item ? await api("PATCH", `${resource.path}${item.id}/`, body) : await api("POST", resource.path, body);
    if (!result.ok) {
      showErrors(form, result.data?.detail || !result.data ? { non_field_errors: [describeError(result)] } : result.data);
      return revealErrors(form, resource);
    }
    $("#editor").close();
    if (resource.path === "/api/tokens/" && result.data?.token) showSecret(result.data);
    await onSaved(saved(resource, item, result.data, body, names));
  };
  $("#editor").showModal();
  form.querySelector("input, textarea, select")?.focus();
}

/** A new API token's secret, in a dialog with a Copy button: the only time the API shows it. */
function showSecret(created) {
  const dialog = $("#secret");
  $("#secret-title").textContent = `Your new API token "${created.name}"`;
  const value = $("#secret-value");
  value.value = created.token;
  $("#secret-copied").textContent = "";
  $("#secret-copy").onclick = async () => {
    value.select();
    try {
      await navigator.clipboard.writeText(created.token);
      $("#secret-copied").textContent = "Copied.";
    } catch {
      $("#secret-copied").textContent = "The browser would not copy it: it is selected, press Ctrl+C (⌘C on a Mac).";
    }
  };
  // Closed (Done, or Escape: its close event comes a moment later), the secret leaves the page too.
  dialog.onclose = () => { value.value = ""; };
  $("#secret-done").onclick = () => { value.value = ""; dialog.close(); };
  dialog.showModal();
  reveal(value, "center");
  value.select();
}
