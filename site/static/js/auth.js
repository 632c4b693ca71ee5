// Logging in and out, and who is logged in: `me` (null when nobody is). A 401 anywhere brings the login form
// back (api.js calls `showLogin`).
import { $ } from "./dom.js";
import { LOGIN_PATH, api, forgetToken, setToken, showErrors, token, whenUnauthenticated } from "./api.js";

export let me = null;

export function showLogin() {
  forgetToken();
  me = null;
  const login = $("#login");
  if (login) login.hidden = false;
  for (const id of ["#dashboard", "#playground", "#usage"]) if ($(id)) $(id).hidden = true;
  $("#whoami").textContent = "Not logged in";
  $("#logout").hidden = true;
  const state = $("#login-state");
  if (state) state.textContent = "You are not logged in.";
}

/** Wires the login form and Log out, then opens the page: `pages[body's data-page]` runs once logged in. */
export async function boot(pages) {
  whenUnauthenticated(showLogin);
  $("#logout").addEventListener("click", async () => {
    await api("POST", "/api/auth/logout/", {});
    showLogin();
  });
  const form = $("#login-form");
  form?.addEventListener("submit", async (event) => {
    event.preventDefault();
    const result = await api("POST", LOGIN_PATH, Object.fromEntries(new FormData(form)));
    if (!result.ok) {
      // A network failure has no field to sit by: it goes with the form's own errors.
      return showErrors(form, result.data?.detail ? { non_field_errors: [result.data.detail] } : result.data);
    }
    showErrors(form, null);
    setToken(result.data.token);
    form.reset();
    await start(pages);
  });
  await start(pages);
}

async function start(pages) {
  if (!token()) return showLogin();
  const { ok, status, data } = await api("GET", "/api/auth/me/");
  if (status === 0) {
    // Not reached: the token may well be good, so it is kept; the form says what happened.
    if ($("#login")) $("#login").hidden = false;
    const form = $("#login-form");
    if (form) showErrors(form, data);
    return;
  }
  if (!ok) return showLogin();
  me = data;
  $("#whoami").textContent = `${me.username}${me.is_staff ? " (staff)" : ""}`;
  $("#logout").hidden = false;
  if ($("#login")) $("#login").hidden = true;
  const state = $("#login-state");
  if (state) state.textContent = `Logged in as ${me.username}.`;
  await pages[document.body.dataset.page]?.();
}
