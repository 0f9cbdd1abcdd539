#!/usr/bin/env python3
"""A small HTTP/1.1 backend for the integration tests: answers every request with a JSON echo of
what it received (method, path, query, headers, body length, its own name).

    backend.py --port-file FILE [--name NAME] [--port PORT] [--health-file FILE]

Binds 127.0.0.1 on a free port (or PORT) and writes the port to FILE once it listens.
Paths: /slow?ms=N sleeps N milliseconds first; /status/N answers with status N; with
--health-file, /health answers with the status written in that file (200 while it is missing or
empty), so a test can make the backend's health check fail and pass again.

Body routes (request bodies with Content-Length or chunked; read and written in 256 KiB chunks,
never held whole unless said so):
  /sink            reads the request body and answers {"bytes": N, "transfer_encoding": ...}
  /sink-count      answers {"sink_requests": N}: how many requests /sink got
  /bytes?n=N       answers N zero bytes (Content-Length; add &chunked=1 for chunked encoding)
  /body            answers with the request body as received (held in memory: small bodies),
                   with x-request-content-length set to the request's Content-Length header

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
        if self.body_route(url):
            return
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
        if url.path == "/health" and self.server.health_file:
            try:
                with open(self.server.health_file) as f:
                    status = int(f.read().strip() or 200)
            except FileNotFoundError:
                pass
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

    # ---- body routes ---------------------------------------------------------------------

    CHUNK = 256 * 1024

    def body_route(self, url):
        """Serves the body routes; False for any other path."""
        if url.path.endswith("/sink"):
            self.server.sink_requests = getattr(self.server, "sink_requests", 0) + 1
            total = sum(len(chunk) for chunk in self.request_chunks())
            self.send_json({"bytes": total,
                            "transfer_encoding": self.headers.get("transfer-encoding")})
        elif url.path.endswith("/sink-count"):
            self.send_json({"sink_requests": getattr(self.server, "sink_requests", 0)})
        elif url.path.endswith("/body"):
            body = b"".join(self.request_chunks())
            self.send_response(200)
            self.send_header("content-type", "application/octet-stream")
            self.send_header("content-length", str(len(body)))
            self.send_header("x-request-content-length",
                             self.headers.get("content-length") or "none")
            self.end_headers()
            self.wfile.write(body)
        elif url.path.endswith("/bytes"):
            for _ in self.request_chunks():
                pass
            query = parse_qs(url.query)
            n = int(query.get("n", ["0"])[0])
            chunked = query.get("chunked", ["0"])[0] == "1"
            self.send_response(200)
            self.send_header("content-type", "application/octet-stream")
            if chunked:
                self.send_header("transfer-encoding", "chunked")
            else:
                self.send_header("content-length", str(n))
            self.end_headers()
            block = bytes(self.CHUNK)
            left = n
            while left > 0:
                piece = block if left >= len(block) else block[:left]
                if chunked:
                    self.wfile.write(b"%x\r\n" % len(piece) + piece + b"\r\n")
                else:
                    self.wfile.write(piece)
                left -= len(piece)
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
        else:
            return False
        return True

    def request_chunks(self):
        """Yields the request body in chunks (Content-Length or chunked encoding)."""
        if "chunked" in (self.headers.get("transfer-encoding") or "").lower():
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return
                while size > 0:
                    chunk = self.rfile.read(min(size, self.CHUNK))
                    if not chunk:
                        return
                    size -= len(chunk)
                    yield chunk
                self.rfile.readline()
        else:
            left = int(self.headers.get("content-length") or 0)
            while left > 0:
                chunk = self.rfile.read(min(left, self.CHUNK))
                if not chunk:
                    return
                left -= len(chunk)
                yield chunk

    def send_json(self, value):
        payload = json.dumps(value).encode()
        self.send_response(200)
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
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--health-file")
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Echo)
    server.daemon_threads = True
    server.name = args.name
    server.health_file = args.health_file
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(server.server_address[1]))
    os.rename(tmp, args.port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
