#!/usr/bin/env python3
"""Checks the Lambda functions under `cargo lambda watch` (the local Lambda emulator): a CRUD call through
the `agents` function, and a streamed turn through the `agent-stream` function (response streaming), against
a fake OpenAI upstream that holds its last frames back. Passes only if the first SSE event reaches the client
while the upstream is still holding back, i.e. the function streams instead of buffering. Prints what it
measured."""

import http.server
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOLD_SECONDS = 3.0
events = {}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def frame(kind, seq, payload):
    payload = {"type": kind, "sequence_number": seq, **payload}
    return f"event: {kind}\ndata: {json.dumps(payload)}\n\n".encode()


class FakeOpenAI(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        response = {"id": "resp_emulator", "object": "response", "status": "in_progress", "output": []}
        item = {"id": "msg_1", "type": "message", "status": "completed", "role": "assistant",
                "content": [{"type": "output_text", "text": "Hello there", "annotations": []}]}
        done = dict(response, status="completed", output=[item],
                    usage={"input_tokens": 3, "output_tokens": 2, "total_tokens": 5})
        first = [frame("response.created", 0, {"response": response}),
                 frame("response.output_text.delta", 1, {"item_id": "msg_1", "output_index": 0, "content_index": 0,
                                                          "delta": "Hello"})]
        last = [frame("response.output_text.delta", 2, {"item_id": "msg_1", "output_index": 0, "content_index": 0,
                                                         "delta": " there"}),
                frame("response.completed", 3, {"response": done})]
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()

        def chunk(data):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        for f in first:
            chunk(f)
        events["upstream_first_sent"] = time.monotonic()
        time.sleep(HOLD_SECONDS)
        for f in last:
            chunk(f)
        events["upstream_finished"] = time.monotonic()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


def run(*args, env, stdin=None):
    return subprocess.run(args, env=env, cwd=ROOT, input=stdin, capture_output=True, text=True, check=True).stdout


def wait_port(port, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise SystemExit(f"nothing listens on {port}")


def request(url, token, body, timeout=900):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"content-type": "application/json", "authorization": f"Bearer {token}"})
    return urllib.request.urlopen(req, timeout=timeout)


def main():
    work = tempfile.mkdtemp(prefix="lambent-emulator-")
    fake = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), FakeOpenAI)
    threading.Thread(target=fake.serve_forever, daemon=True).start()
    env = dict(os.environ, DATABASE_URL=f"file:{work}/lambent.db", OPENAI_API_KEY="sk-emulator",
               OPENAI_BASE_URL=f"http://127.0.0.1:{fake.server_port}/v1", RUST_LOG="warn")
    lambent = os.path.join(ROOT, "target/debug/lambent")
    run(lambent, "migrate", env=env)
    run(lambent, "createsuperuser", "--username", "emulator", env=env, stdin="emulator-password\n")
    token = run(lambent, "token", "create", "--user", "emulator", "--name", "emulator", env=env).strip()

    port = free_port()
    passed = [f"--env-var={key}={env[key]}" for key in ("DATABASE_URL", "OPENAI_API_KEY", "OPENAI_BASE_URL", "RUST_LOG")]
    watch = subprocess.Popen(["cargo", "lambda", "watch", "-p", "lambent-functions", "-A", "127.0.0.1", "-P", str(port), *passed], cwd=ROOT, env=env,
                             stdout=subprocess.DEVNULL, stderr=open(f"{work}/watch.log", "w"))
    try:
        wait_port(port, 120)
        base = f"http://127.0.0.1:{port}/lambda-url"
        started = time.monotonic()
        with request(f"{base}/agents/api/agents/", token, {"name": "Emulated", "is_default": True}) as r:
            agent = json.load(r)
            assert r.status == 201 and agent["name"] == "Emulated", agent
        print(f"CRUD through the agents function: 201, agent {agent['id']} ({time.monotonic() - started:.1f} s incl. build)")

        # Warm the streaming function (its first request builds it), then measure a streamed turn.
        for attempt in ("warm-up", "measured"):
            events.clear()
            sent = time.monotonic()
            first_event = None
            body = b""
            with request(f"{base}/agent-stream/api/agent/stream/", token, {"message": "Hi"}) as r:
                assert r.headers.get("content-type", "").startswith("text/event-stream"), r.headers
                while True:
                    line = r.readline()
                    if not line:
                        break
                    if first_event is None and line.startswith(b"event:"):
                        first_event = time.monotonic()
                    body += line
            ended = time.monotonic()
        text = body.decode()
        assert "event: done" in text and '"status":"completed"' in text, text
        assert first_event is not None
        ahead = events["upstream_finished"] - first_event
        print(f"streamed turn through agent-stream: first event {1000 * (first_event - sent):.0f} ms after the request, "
              f"{1000 * ahead:.0f} ms before the upstream finished (it held back {HOLD_SECONDS:.1f} s); "
              f"stream closed {1000 * (ended - sent):.0f} ms after the request")
        if ahead < HOLD_SECONDS / 2:
            raise SystemExit("FAIL: the first event did not arrive before the upstream finished: the stream is buffered")
        print("emulator check: passed")
    finally:
        watch.terminate()
        try:
            watch.wait(10)
        except subprocess.TimeoutExpired:
            watch.kill()
        fake.shutdown()


if __name__ == "__main__":
    main()
