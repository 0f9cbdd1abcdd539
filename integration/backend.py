#!/usr/bin/env python3
"""A small HTTP/1.1 backend for the integration tests: answers every request with a JSON echo of
what it received (method, path, query, headers, body length, its own name).

    backend.py --port-file FILE [--name NAME]

Binds 127.0.0.1 on a free port and writes the port to FILE once it listens.
Paths: /slow?ms=N sleeps N milliseconds first; /status/N answers with status N.
Headers and upgrades (headers.bats, websocket.bats): /hdr/list answers {"headers": [[name, value],
...]} with every request header in order, duplicates kept; /hdr/respond?h=Name:Value&h=... also
sends those response headers, in order; /ws is a WebSocket echo server (its 101 carries
`x-backend-saw`: the request header names it received), or the plain echo when the request does
not ask for a WebSocket.
"""
import argparse
import json
import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, parse_qsl, urlsplit

import wsproto


class Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "echo-backend"

    def handle_any(self):
        url = urlsplit(self.path)
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        if header_routes(self, url):
            return
        if url.path.startswith("/slow"):
            ms = int(parse_qs(url.query).get("ms", ["1000"])[0])
            time.sleep(ms / 1000)
        status = 200
        if url.path.startswith("/status/"):
            status = int(url.path.rsplit("/", 1)[-1])
        payload = json.dumps({
            "backend": self.server.name,
            "method": self.command,
            "path": url.path,
            "query": url.query,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body_length": len(body),
        }).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = handle_any

    def log_message(self, *args):
        pass


def header_routes(handler, url):
    """The /hdr/* and /ws routes; True when it answered."""
    if url.path == "/ws":
        return serve_websocket(handler)
    if url.path not in ("/hdr/list", "/hdr/respond"):
        return False
    payload = json.dumps({"headers": [[k.lower(), v] for k, v in handler.headers.items()]})
    handler.send_response(200)
    if url.path == "/hdr/respond":
        for key, spec in parse_qsl(url.query):
            if key == "h":
                name, _, value = spec.partition(":")
                handler.send_header(name, value)
    handler.send_header("content-type", "application/json")
    handler.send_header("content-length", str(len(payload)))
    handler.end_headers()
    handler.wfile.write(payload.encode())
    return True


def serve_websocket(handler):
    """Completes a WebSocket handshake and echoes text and binary frames until a close."""
    key = handler.headers.get("sec-websocket-key")
    if handler.headers.get("upgrade", "").lower() != "websocket" or not key:
        return False
    handler.send_response(101)
    handler.send_header("Upgrade", "websocket")
    handler.send_header("Connection", "Upgrade")
    handler.send_header("Sec-WebSocket-Accept", wsproto.accept_key(key))
    handler.send_header("X-Backend-Saw", ",".join(k.lower() for k in handler.headers.keys()))
    handler.end_headers()
    handler.wfile.flush()
    handler.close_connection = True
    while True:
        try:
            opcode, payload = wsproto.read_frame(handler.rfile)
        except (EOFError, OSError):
            return True
        if opcode == wsproto.CLOSE:
            handler.wfile.write(wsproto.frame(wsproto.CLOSE, payload[:2], masked=False))
            return True
        if opcode == wsproto.PING:
            handler.wfile.write(wsproto.frame(wsproto.PONG, payload, masked=False))
        elif opcode in (wsproto.TEXT, wsproto.BINARY):
            handler.wfile.write(wsproto.frame(opcode, payload, masked=False))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--name", default="backend")
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    server.daemon_threads = True
    server.name = args.name
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(server.server_address[1]))
    os.rename(tmp, args.port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
