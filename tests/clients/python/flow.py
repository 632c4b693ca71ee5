"""Lambent from Python: a client generated from the API's OpenAPI document, and a streamed turn read with httpx-sse.

The README's "Use it from your code" shows this file; `tests/clients.rs` generates the client and runs it against
a local server. LAMBENT_URL, LAMBENT_USERNAME and LAMBENT_PASSWORD say where and who.
"""

import json
import os

from httpx_sse import connect_sse

from lambent_client import AuthenticatedClient, Client
from lambent_client.api.agent import agent_chat
from lambent_client.api.agent_tools import agent_tools_create
from lambent_client.api.agents import agents_create, agents_list, agents_retrieve
from lambent_client.api.auth import auth_login
from lambent_client.api.tools import tools_create
from lambent_client.models import (
    AgentToolLinkWrite,
    AgentWrite,
    ChatReply,
    Credentials,
    ErrorDetail,
    IssuedToken,
    MessageWrite,
    TextDelta,
    ToolWrite,
    ToolWriteParameters,
    TurnDone,
)

base_url = os.environ.get("LAMBENT_URL", "http://localhost:8000")

# Log in once; the token goes with every other call.
login = auth_login.sync(
    client=Client(base_url=base_url),
    body=Credentials(username=os.environ["LAMBENT_USERNAME"], password=os.environ["LAMBENT_PASSWORD"]),
)
assert isinstance(login, IssuedToken), login
client = AuthenticatedClient(base_url=base_url, token=login.token)

# An agent, a tool, and the link that lets the agent call the tool.
agent = agents_create.sync(client=client, body=AgentWrite(name="weather", system_prompt="Answer briefly."))
parameters = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
tool = tools_create.sync(
    client=client,
    body=ToolWrite(name="get_weather", description="Weather for a city.", parameters=ToolWriteParameters.from_dict(parameters)),
)
link = agent_tools_create.sync(client=client, body=AgentToolLinkWrite(agent=agent.id, tool=tool.id))
print(f"agent {agent.name} may call {tool.name}: {link.enabled}")

# Every agent, two per page, following the pages.
names, page = [], 1
while True:
    agents = agents_list.sync(client=client, page=page, page_size=2)
    names += [agent.name for agent in agents.results]
    if not agents.next_:
        break
    page += 1
print(f"{agents.count} agents over {page} pages: {', '.join(names)}")

# A missing object answers 404 with a typed body.
missing = agents_retrieve.sync(client=client, id=999999)
assert isinstance(missing, ErrorDetail), missing
print(f"agent 999999: {missing.detail}")

# A chat turn: the whole answer in one reply.
reply = agent_chat.sync(client=client, body=MessageWrite(message="Weather in Paris?", agent_id=agent.id))
assert isinstance(reply, ChatReply), reply
print(f"chat ({reply.status.value}): {reply.output_text}")

# A streamed turn in the same session: the frames as they come, each frame's data read as its schema.
text, done = "", None
body = {"message": "And in Oslo?", "session_id": reply.session_id}
with connect_sse(client.get_httpx_client(), "POST", "/api/agent/stream/", json=body) as events:
    for event in events.iter_sse():
        if event.event == "text_delta":
            text += TextDelta.from_dict(json.loads(event.data)).delta
        elif event.event == "done":
            done = TurnDone.from_dict(json.loads(event.data))
print(f"stream ({done.status.value}): {text}")
