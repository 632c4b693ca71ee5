// The JSON API's client. Every request the pages make goes through `request`, so what can go wrong on the way
// is handled here, once: the server not reached (status 0, code `network_error`), an answer that is not JSON,
// and a token the server no longer accepts (401: the login form comes back). Errors are told apart by their
// `code` where the API gives one (`missing_variables`), else by status; their text is the API's own.

export const LOGIN_PATH = "/api/auth/login/";
const TOKEN_KEY = "lambent.token";

export const token = () => localStorage.getItem(TOKEN_KEY);
export const setToken = (value) => localStorage.setItem(TOKEN_KEY, value);
export function forgetToken() {
  localStorage.removeItem(TOKEN_KEY);
  // Swagger UI keeps what it was authorized with (persistAuthorization) under this key: a revoked token goes too.
  localStorage.removeItem("authorized");
}

let unauthenticated = () => {};
/** What to do when the server refuses the stored token (the login form shows). */
export const whenUnauthenticated = (callback) => { unauthenticated = callback; };

/**
 * One request: `{status, ok, data, code}`, or with `stream` and an event-stream answer `{status, ok, response}`
 * (the body still to read). `status` 0: the server was not reached (or `aborted`: stopped by `signal`).
 */
async function request(method, path, body, { signal, stream = false } = {}) {
  const headers = {};
  if (token()) headers.authorization = `Bearer ${token()}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  let response;
  let text;
  try {
    response = await fetch(path, { method, headers, signal, body: body === undefined ? undefined : JSON.stringify(body) });
    if (stream && (response.headers.get("content-type") || "").startsWith("text/event-stream")) {
      return { status: response.status, ok: true, response };
    }
    text = await response.text();
  } catch (error) {
    if (error.name === "AbortError") return { status: 0, ok: false, aborted: true, code: "aborted", data: null };
    return { status: 0, ok: false, code: "network_error",
      data: { detail: `The server could not be reached (${error.message}). Check the connection and try again.` } };
  }
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = { detail: `The server answered ${response.status} ${response.statusText} with something that is not JSON.` };
    }
  }
  if (response.status === 401 && path !== LOGIN_PATH) unauthenticated();
  return { status: response.status, ok: response.ok, data, code: typeof data?.code === "string" ? data.code : null };
}

export const api = (method, path, body) => request(method, path, body);

/** POSTs and, when the answer is an event stream, hands it back unread (see `sse.js`). */
export const postStream = (path, body, signal) => request("POST", path, body, { signal, stream: true });

/** The server's checks (`/api/health/`, no credentials): `model_provider` says whether a key is set and the
 * default model. Null when it cannot be read. */
export async function health() {
  const { data } = await api("GET", "/api/health/");
  return data?.checks ?? null;
}

// The parts of an error body that are for programs, not people: a code and what it names, ids to quote.
const NOT_MESSAGES = new Set(["code", "missing_variables", "turn_id", "request_id"]);

/** A DRF error body's messages by field: [[field, "message message"], ...]. */
export function fieldMessages(data) {
  if (!data || typeof data !== "object") return [];
  return Object.entries(data).filter(([key]) => !NOT_MESSAGES.has(key))
    .map(([key, messages]) => [key, [].concat(messages).filter((m) => typeof m === "string").join(" ")])
    .filter(([, text]) => text);
}

/** One sentence from an error result: its `detail`, else every field's messages. */
export function describeError({ status, data }) {
  if (typeof data?.detail === "string") return data.detail;
  const messages = fieldMessages(data).map(([, text]) => text);
  return messages.length ? messages.join(" ") : `The server refused it (HTTP ${status}).`;
}

/** Shows an error body next to the fields of `form` it names (the rest in `non_field_errors`); none clears. */
export function showErrors(form, data) {
  for (const node of form.querySelectorAll("[data-error-for]")) node.textContent = "";
  const general = form.querySelector('[data-error-for="non_field_errors"]');
  for (const [field, text] of fieldMessages(data)) {
    const target = form.querySelector(`[data-error-for="${CSS.escape(field)}"]`) || general;
    if (target) target.textContent = target.textContent ? `${target.textContent} ${text}` : text;
  }
}
