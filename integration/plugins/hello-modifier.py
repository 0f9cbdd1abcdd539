#!/usr/bin/env python3
"""A modifier plugin written from docs/protocol.md alone, with no SDK: it adds `x-hello` to every
request. The integration tests run it to prove the spec is enough to write a plugin."""
import json, os, socket

sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sock.connect(os.environ["GATEKEEPER_SOCKET"])
reader, writer = sock.makefile("r"), sock.makefile("w")

def send(message):
    writer.write(json.dumps(message, separators=(",", ":")) + "\n")
    writer.flush()

send({"jsonrpc": "2.0", "id": 1, "method": "handshake",
      "params": {"token": os.environ["GATEKEEPER_TOKEN"], "protocol_version": 1,
                 "hooks": ["modify_request"]}})

for line in reader:
    message = json.loads(line)
    if "method" not in message:          # a response to our handshake
        continue
    method, params = message["method"], message.get("params", {})
    result = {}
    if method == "modify_request":
        request = params["request"]
        request["headers"].append(["x-hello", "from python"])
        result = {"request": request}
    send({"jsonrpc": "2.0", "id": message["id"], "result": result})
    if method == "stop":
        break
