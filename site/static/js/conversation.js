// The playground's conversation (`#history`): message bubbles and tool-call cards, in the order things
// happened, whether they arrive live or are read back from a session.
import { $, el } from "./dom.js";

export function addBubble(role, text = "") {
  const bubble = el("div", { className: `message ${role}`, dataset: { role } }, text);
  $("#history").append(bubble);
  return bubble;
}

/** A tool card's outcome in place of its form: what was sent (or run), as text. */
export function showOutput(card, status, label, output) {
  card.dataset.status = status;
  card.querySelector("form")?.remove();
  card.querySelector(".tool-result")?.remove();
  const result = el("div", { className: "tool-result" }, el("p", {}, label));
  if (output !== undefined && output !== null) result.append(el("pre", { className: "tool-output" }, output));
  card.append(result);
  return result;
}

const OUTCOMES = { submitted: "Output sent:", executed: "Ran on the server:" };
const DECIDED = { approved: "Approved; ran on the server:", denied: "Denied; the model was told:" };

/**
 * A card for a tool call, at the end of the conversation; `record` is the ledger's row (history), none for a
 * live call. A pending call gets a form; `submit(card, call, output, form)` sends what is typed in it; a call
 * that waits for approval gets approval buttons instead (see [`askApproval`]).
 */
export function addToolCard(call, record, submit, decide) {
  const card = el("article", { className: "tool-card", dataset: { callId: call.call_id, status: record?.status || "pending" } },
    el("header", {}, el("strong", {}, `Tool call: ${call.name}`), el("small", {}, ` ${call.type}, ${call.call_id}`)),
    el("pre", { className: "tool-arguments" }, call.arguments ?? call.input ?? ""));
  $("#history").append(card);
  if (record && OUTCOMES[record.status]) {
    showOutput(card, record.status, DECIDED[record.approval] ?? OUTCOMES[record.status], record.output);
  } else if (record?.status === "expired") showOutput(card, "expired", "Expired: a later message went on without it.");
  else if (record?.approval === "required") askApproval(card, call, decide);
  else if (record?.approval === "approved") showOutput(card, "approved", "Approved: it runs when every call is answered.");
  else card.append(outputForm(card, call, submit));
  return card;
}

/**
 * Turns a card into an approval card: the call runs only if a person approves it. Approve, or Deny with an
 * optional reason (the model is told it); `decide(card, call, approve, reason, form)` sends the decision.
 */
export function askApproval(card, call, decide) {
  card.dataset.status = "awaiting-approval";
  card.querySelector("form")?.remove();
  const id = `reason-${call.call_id}`;
  const reason = el("textarea", { id, name: "reason", rows: 2, placeholder: "Optional: why not (the model is told)" });
  const form = el("form", { className: "approval", onsubmit: (event) => event.preventDefault() },
    el("p", { className: "approval-note" }, el("strong", {}, "Needs your approval: "), `${call.name} runs only if you approve it.`),
    el("label", { htmlFor: id }, "Reason if denied"), reason, el("p", { className: "error", role: "alert" }),
    el("div", { className: "approval-actions" },
      el("button", { type: "button", className: "approve", onclick: () => decide(card, call, true, null, form) }, "Approve"),
      el("button", { type: "button", className: "deny secondary", onclick: () => decide(card, call, false, reason.value.trim() || null, form) },
        "Deny")));
  card.append(form);
  return form;
}

function outputForm(card, call, submit) {
  const id = `output-${call.call_id}`;
  const output = el("textarea", { id, name: "output", rows: 2, required: true });
  const form = el("form", { onsubmit: (event) => { event.preventDefault(); submit(card, call, output.value, form); } },
    el("label", { htmlFor: id }, `Output for ${call.name}`), output, el("p", { className: "error", role: "alert" }),
    el("button", { type: "submit" }, "Submit output"));
  return form;
}

/** A session read back: its messages and tool calls in the order they happened, each response's calls right
 * after its message (a tool-call turn has no text of its own), any other call at its time. With `fork`, each
 * message a fork may end at (not a response still waiting for tool outputs) offers "Fork from here". */
export function showHistory(messages, calls, submit, fork, decide) {
  const byResponse = new Map();
  for (const call of calls) {
    if (!byResponse.has(call.response_id)) byResponse.set(call.response_id, []);
    byResponse.get(call.response_id).push(call);
  }
  const entries = [];
  for (const m of messages) {
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
      if (fork) offerFork(bubble, m, fork);
    }
    for (const call of own) addToolCard(call, call, submit, decide);
  }
}

/** "Fork from here" on a message's bubble (once), if a fork may end at the message: not at a response still
 * waiting for tool outputs. */
export function offerFork(bubble, message, fork) {
  if (message.status === "requires_tool_output" || bubble.querySelector(".fork-from-here")) return;
  bubble.append(forkButton(message, bubble, fork));
}

/** "Fork from here" on a message: a small form choosing the agent to continue with, `fork(message, agent, form)`
 * on submit. */
function forkButton(message, bubble, fork) {
  const button = el("button", { type: "button", className: "fork-from-here secondary outline",
    title: "A new session with this conversation up to here, to continue on this agent or another" }, "Fork from here");
  button.onclick = () => {
    if (bubble.querySelector("form.fork")) return;
    const id = `fork-agent-${message.id}`;
    const agents = el("select", { id, name: "agent" });
    const form = el("form", { className: "fork", onsubmit: (event) => { event.preventDefault(); fork(message, agents.value, form); } },
      el("label", { htmlFor: id }, "Continue with "), agents, el("button", { type: "submit" }, "Fork"),
      el("small", { className: "error", role: "alert" }));
    for (const option of document.querySelectorAll("#agent option")) agents.append(option.cloneNode(true));
    agents.value = $("#agent").value;
    bubble.append(form);
    agents.focus();
  };
  return button;
}
