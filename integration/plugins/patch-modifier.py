#!/usr/bin/env python3
"""A modifier plugin written from docs/protocol.md alone, with no SDK, that answers with patches
(patch.bats). Its first argument is the mode:

- `good`: modify_request answers `{"patch": ...}` setting `x-patched: yes` (replacing any),
  appending `x-multi: b`, removing `x-drop` and setting `context.user`; modify_response answers
  a patch setting `x-seen-user` to that context value and the status to 203.
- `bad`: modify_request answers a patch with an invalid header name (a bad result).
- `parts`: declares that modify_request needs only the `authorization` header (handshake
  `parts`) and answers a patch setting `x-user` to its value and `x-seen` to the members of the
  request it was sent, sorted and comma-separated.
- `parts-whole`: declares the same parts but answers with the whole request (a bad result).
"""
import json, os, socket, sys

mode = sys.argv[1] if len(sys.argv) > 1 else "good"
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sock.connect(os.environ["GATEKEEPER_SOCKET"])
reader, writer = sock.makefile("r"), sock.makefile("w")

def send(message):
    writer.write(json.dumps(message, separators=(",", ":")) + "\n")
    writer.flush()

handshake = {"token": os.environ["GATEKEEPER_TOKEN"], "protocol_version": 1,
             "hooks": ["modify_request", "modify_response"]}
if mode.startswith("parts"):
    handshake["hooks"] = ["modify_request"]
    handshake["parts"] = {"modify_request": ["header:authorization"]}
send({"jsonrpc": "2.0", "id": 1, "method": "handshake", "params": handshake})

for line in reader:
    message = json.loads(line)
    if "method" not in message:          # a response to our handshake
        continue
    method, params = message["method"], message.get("params", {})
    result = {}
    if method == "modify_request" and mode == "good":
        result = {"patch": {"set_headers": {"x-patched": "yes"},
                            "append_headers": [["x-multi", "b"]],
                            "remove_headers": ["x-drop"],
                            "context": {"user": "alice"}}}
    elif method == "modify_request" and mode == "parts":
        request = params["request"]
        user = [v for n, v in request.get("headers", []) if n == "authorization"]
        result = {"patch": {"set_headers": {"x-user": user,
                                            "x-seen": ",".join(sorted(request))}}}
    elif method == "modify_request" and mode == "parts-whole":
        result = {"request": params["request"]}
    elif method == "modify_request":
        result = {"patch": {"set_headers": {"bad name": "x"}}}
    elif method == "modify_response":
        user = params["request"]["context"].get("user", "none")
        result = {"patch": {"status": 203, "set_headers": {"x-seen-user": user}}}
    send({"jsonrpc": "2.0", "id": message["id"], "result": result})
    if method == "stop":
        break
