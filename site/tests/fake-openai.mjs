// A fake Responses API on 127.0.0.1 for the browser tests: scripted replies shaped like the recorded transcripts
// (`response.created`, text deltas, `output_item.done`, `response.completed`), every request body kept.
// `fake.listen(0, "127.0.0.1")` in the test's `before`; OPENAI_BASE_URL is `http://127.0.0.1:<port>/v1`.
import http from "node:http";

export const replies = [];
export const received = [];
let seq = 0;
const frame = (event) => `event: ${event.type}\ndata: ${JSON.stringify({ ...event, sequence_number: seq++ })}\n\n`;
const response = (id, status, output = []) => ({ id, object: "response", created_at: 1764000000, status, model: "gpt-4.1",
  output, usage: status === "completed" ? { input_tokens: 5, output_tokens: 5, total_tokens: 10 } : null });

export function textReply(id, deltas, gate) {
  const item = { id: `msg_${id}`, type: "message", status: "completed", role: "assistant",
    content: [{ type: "output_text", text: deltas.join(""), annotations: [] }] };
  const steps = [{ type: "response.created", response: response(id, "in_progress") }];
  deltas.forEach((delta, i) => {
    steps.push({ type: "response.output_text.delta", item_id: item.id, output_index: 0, content_index: 0, delta });
    if (i === 0 && gate) steps.push({ gate });
  });
  steps.push({ type: "response.output_item.done", output_index: 0, item });
  steps.push({ type: "response.completed", response: response(id, "completed", [item]) });
  return steps;
}

export function callReply(id, calls) {
  const steps = [{ type: "response.created", response: response(id, "in_progress") }];
  const output = calls.map(([callId, name, args], i) => {
    const item = { id: `fc_${id}_${i}`, type: "function_call", status: "completed", arguments: args, call_id: callId, name };
    steps.push({ type: "response.output_item.done", output_index: i, item });
    return item;
  });
  steps.push({ type: "response.completed", response: response(id, "completed", output) });
  return steps;
}

export const fake = http.createServer(async (req, res) => {
  let body = "";
  for await (const chunk of req) body += chunk;
  received.push(JSON.parse(body || "null"));
  const steps = replies.shift();
  if (!steps) { res.writeHead(500); return res.end("fake: no scripted reply"); }
  res.writeHead(200, { "content-type": "text/event-stream" });
  for (const step of steps) {
    if (step.gate) await step.gate.promise;
    else res.write(frame(step));
  }
  res.end();
});

export function gate() {
  let open;
  const promise = new Promise((resolve) => { open = resolve; });
  return { promise, open };
}

