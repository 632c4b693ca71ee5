"""A small MCP server of our own for Lambent's tests (PyPI `mcp`, pinned in scripts/mcp-requirements.txt), over
Streamable HTTP at http://127.0.0.1:PORT/mcp. Started by testkit/src/mcp.rs: `python mcp_server.py PORT`.

Tools: `slow` sleeps `seconds` then answers; `fail` answers a JSON-RPC error (an MCP error, not a tool
result); `whoami` answers the `X-Test-Key` header it was sent; `grow` adds the tool `grown` and tells the
client its tool list changed (notifications/tools/list_changed); `grown` exists only after that.
"""

import sys

import anyio
from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.shared.exceptions import MCPError

server = MCPServer("lambent-test")


@server.tool()
async def slow(seconds: float) -> str:
    """Sleeps, then says how long."""
    await anyio.sleep(seconds)
    return f"slept {seconds}"


@server.tool()
async def fail(reason: str) -> str:
    """Always answers an MCP error."""
    raise MCPError(-32001, f"refused: {reason}")


@server.tool()
async def whoami(ctx: Context) -> str:
    """The X-Test-Key header of the request."""
    headers = ctx.headers or {}
    return headers.get("x-test-key", "no key")


def grown(word: str) -> str:
    """Exists once `grow` ran."""
    return f"grown: {word}"


@server.tool()
async def grow(ctx: Context) -> str:
    """Adds the tool `grown` and says the tool list changed."""
    if not any(t.name == "grown" for t in await server.list_tools()):
        server.add_tool(grown)
    await ctx.session.send_tool_list_changed()
    return "grew"


if __name__ == "__main__":
    server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[1]))
