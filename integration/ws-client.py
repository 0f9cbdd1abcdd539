#!/usr/bin/env python3
"""A WebSocket client for the tests (stdlib only): opens a WebSocket to ws://HOST:PORT/PATH, sends
each MESSAGE as a text frame and checks that the same text comes back, then closes.

    ws-client.py HOST:PORT PATH [--header 'Name: value']... [--pause FILE] MESSAGE...

A MESSAGE `@N` stands for N bytes of text. Prints one JSON line: {"status": 101, "headers":
{lower-case name: value}, "echoed": [true, ...], "closed": true}. Exits 0 when the handshake
succeeded and every message was echoed; 1 otherwise (a refused handshake prints its status and
body). Every socket operation times out after 5 s. With --pause FILE, after the first message
it creates FILE.ready and waits (at most 20 s) until FILE exists before sending the others.
"""
import argparse
import base64
import json
import os
import socket
import sys
import time

from wsproto import CLOSE, TEXT, accept_key, frame, read_frame


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("address")
    parser.add_argument("path")
    parser.add_argument("--header", action="append", default=[])
    parser.add_argument("--pause")
    parser.add_argument("messages", nargs="*")
    args = parser.parse_intermixed_args()
    host, port = args.address.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=5)
    rfile = sock.makefile("rb")
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {args.path} HTTP/1.1\r\nHost: {args.address}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        + "".join(h + "\r\n" for h in args.header)
        + "\r\n"
    )
    sock.sendall(request.encode())
    status_line = rfile.readline().decode("latin-1").strip()
    status = int(status_line.split()[1])
    headers = {}
    while True:
        line = rfile.readline().decode("latin-1").rstrip("\r\n")
        if not line:
            break
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    result = {"status": status, "headers": headers}
    if status != 101:
        length = int(headers.get("content-length", "0"))
        result["body"] = rfile.read(length).decode("utf-8", "replace")
        print(json.dumps(result))
        return 1
    ok = headers.get("sec-websocket-accept") == accept_key(key)
    result["accept_ok"] = ok
    echoed = []
    for message in args.messages:
        text = ("x" * int(message[1:])) if message.startswith("@") else message
        sock.sendall(frame(TEXT, text.encode(), masked=True))
        opcode, payload = read_frame(rfile)
        echoed.append(opcode == TEXT and payload == text.encode())
        if args.pause and len(echoed) == 1:
            with open(args.pause + ".ready", "w") as ready:
                ready.write("ready\n")
            for _ in range(200):
                if os.path.exists(args.pause):
                    break
                time.sleep(0.1)
    sock.sendall(frame(CLOSE, b"\x03\xe8", masked=True))
    opcode, _ = read_frame(rfile)
    result["echoed"] = echoed
    result["closed"] = opcode == CLOSE
    print(json.dumps(result))
    return 0 if ok and all(echoed) and result["closed"] else 1


if __name__ == "__main__":
    sys.exit(main())
