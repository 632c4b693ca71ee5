// The pages' SSE reader (static/js/sse.js) on its own, in Node: frames as the API writes them, split wherever the
// network splits them, and frames it cannot use reported as bad rather than thrown.
import { test } from "node:test";
import assert from "node:assert/strict";
import { parseFrame, readFrames } from "../static/js/sse.js";

/** A ReadableStream of `chunks` (strings), as fetch hands a body over. */
const body = (chunks) => new ReadableStream({
  start(controller) {
    for (const chunk of chunks) controller.enqueue(new TextEncoder().encode(chunk));
    controller.close();
  },
});

async function frames(chunks) {
  const out = [];
  await readFrames(body(chunks), (frame) => out.push(frame));
  return out;
}

test("frames split anywhere, pings and CRLF line ends read as the frames the server wrote", async () => {
  const wire = 'event: text_delta\nid: turn_1:1\ndata: {"delta": "Hel"}\n\n: ping\n\n' +
    'event: openai_event\ndata: {"type": "response.created"}\n\nevent: done\r\ndata: {"status": "completed"}\r\n\r\n';
  const whole = await frames([wire]);
  assert.deepEqual(whole.map((f) => [f.event, f.id, f.data]), [
    ["text_delta", "turn_1:1", { delta: "Hel" }],
    ["openai_event", null, '{"type": "response.created"}'],
    ["done", null, { status: "completed" }],
  ]);
  // The same bytes in every two-way split, and one byte at a time (a multi-byte character cut in half too).
  for (let cut = 1; cut < wire.length; cut++) assert.deepEqual(await frames([wire.slice(0, cut), wire.slice(cut)]), whole, `split at ${cut}`);
  const accented = 'event: text_delta\ndata: {"delta": "déjà"}\n\n';
  const bytes = new TextEncoder().encode(accented);
  const stream = new ReadableStream({ start(c) { for (const b of bytes) c.enqueue(new Uint8Array([b])); c.close(); } });
  const got = [];
  await readFrames(stream, (f) => got.push(f.data));
  assert.deepEqual(got, [{ delta: "déjà" }]);
});

test("a frame that is not JSON, not an object or lacks its event's fields comes back bad, and reading goes on", async () => {
  const got = await frames(['event: text_delta\ndata: {"delta": "Hel\n\n', "event: tool_call\ndata: 42\n\n",
    'event: tool_call\ndata: {"name": "echo"}\n\n', 'event: text_delta\ndata: {"delta": "ok"}\n\n']);
  assert.deepEqual(got.map((f) => [f.event, f.bad?.replace(/ \(.*/, ""), f.data]), [
    ["text_delta", "its data is not JSON", undefined],
    ["tool_call", "its data is not a JSON object", undefined],
    ["tool_call", "it has no call_id", undefined],
    ["text_delta", undefined, { delta: "ok" }],
  ]);
});

test("multi-line data joins with newlines; a last frame cut short is still read; a frame without data is none", async () => {
  assert.deepEqual(parseFrame('event: error\ndata: {"code": "x",\ndata: "message": "m"}').data, { code: "x", message: "m" });
  assert.equal(parseFrame(": ping"), null);
  assert.equal(parseFrame("event: done"), null);
  const cut = await frames(['event: text_delta\ndata: {"delta": "a"}\n\nevent: done\ndata: {"status": "comp']);
  assert.deepEqual(cut.map((f) => [f.event, Boolean(f.bad)]), [["text_delta", false], ["done", true]]);
});
