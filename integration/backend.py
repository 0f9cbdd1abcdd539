#!/usr/bin/env python3
"""A small HTTP/1.1 backend for the integration tests: answers every request with a JSON echo of
what it received (method, path, query, headers, body length, its own name).

    backend.py --port-file FILE [--name NAME] [--port PORT] [--health-file FILE]

Binds 127.0.0.1 on a free port (or PORT) and writes the port to FILE once it listens.
Paths: /slow?ms=N sleeps N milliseconds first; /status/N answers with status N; with
--health-file, /health answers with the status written in that file (200 while it is missing or
empty), so a test can make the backend's health check fail and pass again.
"""
import argparse
import json
import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "echo-backend"

    def handle_any(self):
        url = urlsplit(self.path)
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
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

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = handle_any

    def log_message(self, *args):
        pass


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
