// Reads a `text/event-stream` body as the API writes it: frames of `event:`, `id:` and `data:` lines with a blank
// line after each, `:` comments (the pings) skipped. A frame's data is JSON (`openai_event`'s is relayed as the
// upstream's text); one that cannot be read, or lacks what its event carries (README, "Conversations"), comes
// back marked `bad` with why, so the page can say that a frame was bad, not that the connection was.

// The fields each event the pages act on must carry.
const REQUIRED = { text_delta: ["delta"], tool_call: ["call_id", "name"], tool_result: ["call_id"],
  error: ["code", "message"], done: ["status"] };

/** One frame's text → `{event, id, raw, data}`, or with `bad` (why) instead of `data`; null for no data. */
export function parseFrame(text) {
  let event = "message";
  let id = null;
  const data = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") event = value;
    else if (field === "data") data.push(value);
    else if (field === "id") id = value;
  }
  if (!data.length) return null;
  const raw = data.join("\n");
  if (event === "openai_event") return { event, id, raw, data: raw };
  let parsed;
  try {
    parsed = JSON.parse(raw);
  } catch (error) {
    return { event, id, raw, bad: `its data is not JSON (${error.message})` };
  }
  if (parsed === null || typeof parsed !== "object") return { event, id, raw, bad: "its data is not a JSON object" };
  const missing = (REQUIRED[event] || []).filter((key) => parsed[key] === undefined);
  if (missing.length) return { event, id, raw, bad: `it has no ${missing.join(", ")}` };
  return { event, id, raw, data: parsed };
}

/** Calls `onFrame` with each frame of `body` (a ReadableStream) as it arrives. Resolves when the stream ends;
 * rejects when the connection fails (an AbortError when it was stopped). */
export async function readFrames(body, onFrame) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  const emit = (text) => {
    const frame = parseFrame(text);
    if (frame) onFrame(frame);
  };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer = (buffer + decoder.decode(value, { stream: true })).replace(/\r\n/g, "\n");
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      emit(buffer.slice(0, cut));
      buffer = buffer.slice(cut + 2);
    }
  }
  buffer += decoder.decode();
  // A last frame without its blank line was cut short: it is still read, and reported if it is incomplete.
  if (buffer.trim()) emit(buffer);
}
