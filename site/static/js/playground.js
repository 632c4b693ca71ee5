// The playground: pick an agent and a session, give template variables, send a message and watch the answer
// stream in; tool calls become cards to answer. The agent, the session and the variables live in the address
// (`#agent=1&session=4&var.customer=Ada`), so a reload or a shared link opens the same conversation.
import { $, el, formatDate } from "./dom.js";
import { api, describeError, health, postStream } from "./api.js";
import { me } from "./auth.js";
import { readFrames } from "./sse.js";
import { addBubble, addToolCard, askApproval, offerFork, showHistory, showOutput } from "./conversation.js";

// `reads` counts history reads: only the latest one shows (two reads of one session would show it twice).
// `turn`: the bubbles the running stream showed (its user message first), which get "Fork from here" at `done`.
const chat = { controller: null, bubble: null, sessionId: null, streaming: null, reads: 0, turn: [] };

export async function playground() {
  $("#playground").hidden = false;
  const address = readAddress();
  const [{ data }, checks] = await Promise.all([api("GET", "/api/agents/?page_size=100"), health()]);
  warnWithoutProvider(checks);
  const agents = data?.results || [];
  const select = $("#agent");
  select.replaceChildren(...agents.map((a) => el("option", { value: String(a.id) }, `${a.name}${a.is_default ? " (default)" : ""}`)));
  $("#no-agents").hidden = agents.length > 0;
  const preferred = agents.find((a) => String(a.id) === address.agent) || agents.find((a) => a.is_default && a.owner === me.id)
    || agents.find((a) => a.is_default);
  if (preferred) select.value = String(preferred.id);
  // The address's variables belong to its agent: another agent starts with none.
  $("#variable-rows").replaceChildren();
  if (preferred && String(preferred.id) === address.agent) for (const [name, value] of address.variables) addVariable(name, value);
  select.onchange = () => {
    // At once, not after the session list arrives: a message sent meanwhile starts a new session of this agent.
    chat.sessionId = null;
    $("#history").replaceChildren();
    $("#chat-error").textContent = "";
    $("#variable-rows").replaceChildren();
    loadSessions();
  };
  $("#session").onchange = () => { writeAddress(); loadHistory(); };
  $("#chat-form").onsubmit = (event) => { event.preventDefault(); send(); };
  $("#message").onkeydown = (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) { event.preventDefault(); send(); }
  };
  $("#add-variable").onclick = () => addVariable("").querySelector("input").focus();
  $("#stop").onclick = stop;
  // An address typed or pasted into this page's tab (the page's own changes replace it, which fires nothing).
  window.onhashchange = () => { if (!chat.controller) playground(); };
  await loadSessions(address.session);
}

/** Before the first send: the server's own check says no model provider is configured, so messages would be
 * refused; the notice says so at the top, and the message box points to it. */
function warnWithoutProvider(checks) {
  const provider = checks?.model_provider;
  const notice = $("#no-provider");
  notice.hidden = !provider || provider.status === "ok";
  if (!notice.hidden) {
    notice.textContent = `Messages will be refused: the server has no model provider configured. ${provider.detail ?? ""}`.trim();
  }
}

function readAddress() {
  const params = new URLSearchParams(location.hash.slice(1));
  const variables = [...params].filter(([key]) => key.startsWith("var.")).map(([key, value]) => [key.slice(4), value]);
  return { agent: params.get("agent"), session: params.get("session"), variables };
}

function writeAddress() {
  const params = new URLSearchParams();
  if ($("#agent").value) params.set("agent", $("#agent").value);
  if ($("#session").value) params.set("session", $("#session").value);
  for (const row of document.querySelectorAll("#variable-rows .variable")) {
    const name = row.querySelector(".variable-name").value.trim();
    if (name) params.append(`var.${name}`, row.querySelector(".variable-value").value);
  }
  const hash = params.toString();
  history.replaceState(null, "", hash ? `#${hash}` : location.pathname + location.search);
}

/** Lists the agent's sessions, `selected` chosen if it is one; `live`: the conversation on the page is that
 * session's already (a new session's first turn), so it is not read back. */
async function loadSessions(selected, live = false) {
  const agent = $("#agent").value;
  const select = $("#session");
  const options = [el("option", { value: "" }, "New session")];
  const read = ++chat.reads;
  if (agent) {
    const result = await api("GET", `/api/sessions/?agent=${encodeURIComponent(agent)}&page_size=100`);
    // A message sent or another list asked for meanwhile: this answer would wipe what the page shows now.
    if (read !== chat.reads) return;
    if (!result.ok) $("#chat-error").textContent = `Could not list the sessions: ${describeError(result)}`;
    for (const s of (result.data?.results || []).reverse()) {
      options.push(el("option", { value: String(s.id) }, `Session #${s.id} · ${formatDate(s.updated_at)}`));
    }
  }
  select.replaceChildren(...options);
  select.value = selected && options.some((o) => o.value === String(selected)) ? String(selected) : "";
  writeAddress();
  if (!live) await loadHistory();
}

async function loadHistory() {
  const session = $("#session").value;
  const read = ++chat.reads;
  chat.sessionId = session ? Number(session) : null;
  $("#history").replaceChildren();
  $("#chat-error").textContent = "";
  $("#chat-status").textContent = "";
  if (!session) return;
  const [messages, calls] = await Promise.all([
    api("GET", `/api/sessions/${session}/messages/?page_size=100`),
    api("GET", `/api/sessions/${session}/tool-calls/?page_size=100`),
  ]);
  if (read !== chat.reads) return;
  const failed = [messages, calls].find((r) => !r.ok);
  if (failed) return void ($("#chat-error").textContent = `Could not read session #${session}: ${describeError(failed)}`);
  showHistory(messages.data.results, calls.data.results, submitOutput, forkAt, decide);
}

/** Forks the session at `message` onto `agent` (the session's own by default) and opens the fork. */
async function forkAt(message, agent, form) {
  const body = { message: message.id };
  if (agent && agent !== $("#agent").value) body.agent = Number(agent);
  const result = await api("POST", `/api/sessions/${message.session}/fork/`, body);
  if (!result.ok) return void (form.querySelector(".error").textContent = `Could not fork: ${describeError(result)}`);
  $("#agent").value = String(result.data.agent);
  $("#variable-rows").replaceChildren();
  await loadSessions(result.data.id);
  $("#chat-status").textContent = `This is session #${result.data.id}, a fork of session #${message.session} up to the message `
    + "you chose (the original is unchanged). Continue it below.";
  $("#message").focus();
}

/** A name/value row of the template variables; its value's label names the variable. */
function addVariable(name, value = "") {
  $("#variables").open = true;
  const valueInput = el("input", { className: "variable-value", value, placeholder: "value", "aria-label": `Value of ${name || "the variable"}`,
    oninput: writeAddress });
  const nameInput = el("input", { className: "variable-name", value: name, placeholder: "name", "aria-label": "Variable name",
    oninput: () => { valueInput.setAttribute("aria-label", `Value of ${nameInput.value.trim() || "the variable"}`); writeAddress(); } });
  const row = el("div", { className: "variable", role: "group", "aria-label": "Template variable" }, nameInput, valueInput,
    el("button", { type: "button", className: "secondary outline", "aria-label": "Remove variable",
      onclick: () => { row.remove(); writeAddress(); } }, "Remove"));
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

function busy(on) {
  $("#send").disabled = on;
  $("#stop").disabled = !on;
  $("#send").setAttribute("aria-busy", String(on));
  // One turn at a time: no output can be submitted while a stream runs (the server would refuse it).
  for (const button of document.querySelectorAll(".tool-card form button")) button.disabled = on;
}

async function send() {
  const message = $("#message").value.trim();
  if (!message || chat.controller) return;
  chat.reads++; // a session list or history still on its way is stale now
  $("#chat-error").textContent = "";
  $("#chat-status").textContent = "";
  const bubble = addBubble("user", message);
  $("#message").value = "";
  const body = { message, agent_id: Number($("#agent").value) || undefined, auto_execute_tools: $("#auto-execute").checked };
  if (chat.sessionId) body.session_id = chat.sessionId;
  const given = variables();
  if (Object.keys(given).length) body.variables = given;
  const result = await stream("/api/agent/stream/", body, [bubble]);
  if (!result.streamed && !result.aborted) refused(bubble, message, result);
}

/** A message the server refused (or never got): why, on the bubble and above the box, and the text back in the
 * box; missing template variables (code `missing_variables`) become fields to fill. */
function refused(bubble, message, result) {
  loadSessions(chat.sessionId, true); // the list a send made stale, read again
  bubble.classList.add("not-sent");
  bubble.append(el("small", { className: "note" }, " — not sent"));
  $("#chat-error").textContent = `Not sent: ${describeError(result)}`;
  if (!$("#message").value) $("#message").value = message;
  let focus = $("#message");
  if (result.code === "missing_variables") {
    for (const name of result.data.missing_variables) {
      const existing = [...document.querySelectorAll("#variable-rows .variable")]
        .find((row) => row.querySelector(".variable-name").value.trim() === name);
      const row = existing || addVariable(name);
      if (focus === $("#message")) focus = row.querySelector(".variable-value");
    }
    writeAddress();
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

/** POSTs and relays the SSE answer: `{streamed: true}` once it has been read, else the API's result (a refusal,
 * a 202, the server not reached) for the caller. `bubbles`: what the page showed of the turn already (the
 * user's message). */
async function stream(path, body, bubbles = []) {
  chat.controller = new AbortController();
  busy(true);
  chat.bubble = null;
  chat.turn = bubbles;
  try {
    const result = await postStream(path, body, chat.controller.signal);
    if (result.aborted) $("#chat-error").textContent = "Stopped before the server answered.";
    if (!result.response) return result;
    // The session is known from the headers, before any frame: Stop can cancel even a new session's turn.
    chat.streaming = Number(result.response.headers.get("lambent-session-id")) || null;
    try {
      await readFrames(result.response.body, onFrame);
    } catch (error) {
      $("#chat-error").textContent = error.name === "AbortError"
        ? "Stopped. The answer goes on being stored on the server."
        : `The connection broke while the answer streamed (${error.message}). The server goes on and stores it: choose the session again to read it.`;
    }
    return { streamed: true };
  } finally {
    chat.controller = null;
    chat.streaming = null;
    busy(false);
  }
}

function onFrame(frame) {
  if (frame.bad) {
    $("#chat-error").textContent = `The server sent a "${frame.event}" frame this page could not read: ${frame.bad}. `
      + "Part of the answer may be missing here; choose the session again to read what the server stored.";
    return;
  }
  const { event, data } = frame;
  if (event === "openai_event") {
    $("#raw-events").append(document.createTextNode(`${data}\n`));
  } else if (event === "text_delta") {
    if (!chat.bubble) chat.turn.push(chat.bubble = addBubble("assistant"));
    chat.bubble.textContent += data.delta;
  } else if (event === "tool_call") {
    const card = addToolCard(data, null, submitOutput, decide);
    for (const button of card.querySelectorAll("form button")) button.disabled = Boolean(chat.controller);
    // Text after the calls (a later round) starts a bubble of its own, below them.
    chat.bubble = null;
  } else if (event === "tool_result") {
    const card = document.querySelector(`[data-call-id="${CSS.escape(data.call_id)}"]`);
    if (card) showOutput(card, "executed", "Ran on the server:", data.output);
  } else if (event === "notice") {
    addBubble("notice", data.message);
    chat.bubble = null;
  } else if (event === "error") {
    $("#chat-error").textContent = `${data.message} (${data.code})`;
  } else if (event === "done") {
    // Calls that wait for a person: their cards ask for a decision instead of an output.
    for (const request of data.approval_requests ?? []) {
      const card = document.querySelector(`[data-call-id="${CSS.escape(request.call_id)}"]`);
      if (!card) continue;
      const form = askApproval(card, { ...request, type: "function" }, decide);
      for (const button of form.querySelectorAll("button")) button.disabled = Boolean(chat.controller);
    }
    if (!data.session_id) return;
    offerForks(data.session_id, chat.turn);
    if (data.session_id !== chat.sessionId) {
      chat.sessionId = data.session_id;
      loadSessions(data.session_id, true);
    }
  }
}

/** Sends a person's decision on an approval card: said on the card at once; the buttons come back only if the
 * server refuses it. Approved, the call runs on the server and the continuation streams. */
async function decide(card, call, approve, reason, form) {
  if (chat.controller) return;
  const shown = showOutput(card, approve ? "approved" : "denied", approve ? "Approving…" : "Denying…", approve ? null : reason);
  const decision = { call_id: call.call_id, approve };
  if (!approve && reason) decision.reason = reason;
  const result = await stream("/api/agent/approvals/", { session_id: chat.sessionId, decisions: [decision] });
  if (result.status === 202) {
    shown.firstChild.textContent = `${approve ? "Approved" : "Denied"}; waiting for: ${result.data.pending_tool_calls.join(", ")}`;
  } else if (!result.streamed && !result.aborted) {
    shown.remove();
    card.dataset.status = "awaiting-approval";
    card.append(form);
    const why = `Not sent: ${describeError(result)}`;
    form.querySelector(".error").textContent = why;
    $("#chat-error").textContent = why;
    form.querySelector("button.approve").focus();
  } else if (!approve) {
    shown.firstChild.textContent = "Denied; the model was told why:";
  } else if (card.dataset.status === "approved") {
    shown.firstChild.textContent = "Approved.";
  }
}

/** Once a streamed turn is done, its messages have ids: each bubble it showed gets "Fork from here", matched
 * from the end with the session's stored messages of the same role and words (a response that sent no text has
 * neither a bubble nor stored words). A bubble left unmatched offers nothing rather than the wrong point. */
async function offerForks(session, bubbles) {
  const stored = bubbles.length ? await lastMessages(session) : [];
  const shown = stored.filter((m) => m.content || m.role === "user");
  let next = shown.length - 1;
  for (const bubble of [...bubbles].reverse()) {
    const words = bubble.firstChild?.nodeType === Node.TEXT_NODE ? bubble.firstChild.textContent : "";
    while (next >= 0 && (shown[next].role !== bubble.dataset.role || shown[next].content !== words)) next--;
    if (next < 0) return;
    if (bubble.isConnected) offerFork(bubble, shown[next], forkAt);
    next--;
  }
}

/** The session's last messages, oldest first: at least its last 100 ([] if they cannot be read: no fork is
 * offered). */
async function lastMessages(session) {
  const page = (number) => api("GET", `/api/sessions/${session}/messages/?page_size=100&page=${number}`);
  const first = await page(1);
  if (!first.ok) return [];
  if (!first.data.next) return first.data.results;
  const last = Math.ceil(first.data.count / 100);
  const pages = await Promise.all([last - 1, last].map(page));
  return pages.every((p) => p.ok) ? pages.flatMap((p) => p.data.results) : [];
}

/** Sends a tool card's output: shown on the card at once; the form comes back only if the server refuses it. */
async function submitOutput(card, call, value, form) {
  if (chat.controller) return;
  const shown = showOutput(card, "submitted", "Sending output:", value);
  const result = await stream("/api/agent/tool-output/", { session_id: chat.sessionId, call_id: call.call_id, output: value });
  if (result.status === 202) {
    shown.firstChild.textContent = `Output sent; waiting for: ${result.data.pending_tool_calls.join(", ")}`;
  } else if (!result.streamed && !result.aborted) {
    shown.remove();
    card.dataset.status = "pending";
    card.append(form);
    const why = `Not sent: ${describeError(result)}`;
    form.querySelector(".error").textContent = why;
    $("#chat-error").textContent = why;
    form.elements.output.focus();
  } else {
    shown.firstChild.textContent = "Output sent:";
  }
}
