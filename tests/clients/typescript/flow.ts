// Lambent from TypeScript: a client generated from the API's OpenAPI document (@hey-api/openapi-ts), and a
// streamed turn read with fetch and a stream reader (EventSource cannot POST).
//
// The README's "Use it from your code" shows this file; `tests/clients.rs` generates the client, type-checks this
// file with `tsc --noEmit` and runs it under node against a local server. LAMBENT_URL, LAMBENT_USERNAME and
// LAMBENT_PASSWORD say where and who.

import { EventSourceParserStream } from "eventsource-parser/stream";

import { client } from "./lambent-client/client.gen.js";
import { agentChat, agentsCreate, agentsList, agentsRetrieve, agentToolsCreate, authLogin, toolsCreate } from "./lambent-client/sdk.gen.js";
import type { TextDelta, TurnDone } from "./lambent-client/types.gen.js";

const baseUrl = process.env.LAMBENT_URL ?? "http://localhost:8000";
client.setConfig({ baseUrl });

// `throwOnError: true`: a call answers its typed data, or throws the typed error body.
// Log in once; the token goes with every other call.
const username = process.env.LAMBENT_USERNAME ?? "";
const password = process.env.LAMBENT_PASSWORD ?? "";
const { data: login } = await authLogin({ body: { username, password }, throwOnError: true });
client.setConfig({ auth: login.token });

// An agent, a tool, and the link that lets the agent call the tool.
const { data: agent } = await agentsCreate({ body: { name: "weather", system_prompt: "Answer briefly." }, throwOnError: true });
const parameters = { type: "object", properties: { city: { type: "string" } }, required: ["city"] };
const { data: tool } = await toolsCreate({ body: { name: "get_weather", description: "Weather for a city.", parameters }, throwOnError: true });
const { data: link } = await agentToolsCreate({ body: { agent: agent.id, tool: tool.id }, throwOnError: true });
console.log(`agent ${agent.name} may call ${tool.name}: ${link.enabled}`);

// Every agent, two per page, following the pages.
const names: string[] = [];
let page = 1;
for (;;) {
  const { data: agents } = await agentsList({ query: { page, page_size: 2 }, throwOnError: true });
  names.push(...agents.results.map((agent) => agent.name));
  if (!agents.next) {
    console.log(`${agents.count} agents over ${page} pages: ${names.join(", ")}`);
    break;
  }
  page += 1;
}

// A missing object answers 404 with a typed body.
const missing = await agentsRetrieve({ path: { id: 999999 } });
if (missing.response.status !== 404 || !missing.error) throw new Error(`expected a 404, got ${missing.response.status}`);
console.log(`agent 999999: ${missing.error.detail}`);

// A chat turn: the whole answer in one reply.
const { data: reply } = await agentChat({ body: { message: "Weather in Paris?", agent_id: agent.id }, throwOnError: true });
console.log(`chat (${reply.status}): ${reply.output_text}`);

// A streamed turn in the same session: the frames as they come, each frame's data read as its schema.
const response = await fetch(`${baseUrl}/api/agent/stream/`, {
  method: "POST",
  headers: { authorization: `Bearer ${login.token}`, "content-type": "application/json" },
  body: JSON.stringify({ message: "And in Oslo?", session_id: reply.session_id }),
});
if (!response.ok || !response.body) throw new Error(`stream: ${response.status} ${await response.text()}`);
const frames = response.body.pipeThrough(new TextDecoderStream()).pipeThrough(new EventSourceParserStream()).getReader();
let text = "";
let done: TurnDone | undefined;
for (let frame = await frames.read(); !frame.done; frame = await frames.read()) {
  const { event, data } = frame.value;
  if (event === "text_delta") text += (JSON.parse(data) as TextDelta).delta;
  if (event === "done") done = JSON.parse(data) as TurnDone;
}
console.log(`stream (${done?.status}): ${text}`);
