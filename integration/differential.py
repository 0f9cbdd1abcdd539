"""Differential HTTP tests in the manner of the HTTP Garden (integration/differential.bats).

Two parts:

* ``backend``: a recording backend on 127.0.0.1 that accepts anything, writes the exact bytes of
  each connection to ``DIR/conn-N.bin`` and answers every request it can parse with ``200 ok``
  (keep-alive). When ``DIR/response.bin`` exists it sends those bytes instead, as a hostile
  backend would, and closes.
* ``run``: sends every case of the corpus (a JSON file) to gatekeeper over a raw socket, reads
  what the client gets back, parses what the backend received with a strict HTTP/1.1 parser,
  and checks the case's expectation. The rule for every request case: gatekeeper either rejects
  it (a 4xx/5xx, nothing forwarded) or forwards requests whose framing the strict parser reads
  exactly as the case says, with no byte left over (nothing smuggled). Prints one line per
  case; exits 1 when any case fails.

Corpus fields (see http-corpus.json): ``name``; ``request`` (text with escapes, or a list of
pieces sent 0.2 s apart); ``expect``: ``reject`` (``statuses``: the allowed statuses, default
any 4xx), ``forward`` (``backend``: one object per request the backend must get, with
``method``, ``path``, ``body``, ``headers`` (a subset, names lower-case); ``client``: the
statuses the client must get, default all 200) or ``either`` (a rejection, or the forwarding
described); ``response`` (bytes the hostile backend sends) with ``client_statuses`` (allowed
statuses the client gets; 0 means the connection closed without an answer) and ``client_body``
(the body when the status is 200) and ``client_headers`` (headers then, ``null``: absent).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import threading
import time
from pathlib import Path

SOCKET_TIMEOUT = 5.0
IDLE = 0.25
"""How long the client waits for more bytes before deciding gatekeeper has answered all."""


class Unparsable(Exception):
    """Bytes a strict HTTP/1.1 parser refuses."""


def decode(text: str) -> bytes:
    return text.encode("utf-8").decode("unicode_escape").encode("latin1")


# ---------------------------------------------------------------------------------------------
# A strict HTTP/1.1 parser (RFC 9112): CRLF line endings, no obs-fold, no whitespace before the
# colon, at most one of Content-Length (exactly one, digits) and Transfer-Encoding (chunked).


def _line(data: bytes, at: int) -> tuple[bytes, int]:
    end = data.find(b"\r\n", at)
    if end < 0:
        raise IndexError("incomplete")
    line = data[at:end]
    if b"\n" in line or b"\r" in line:
        raise Unparsable(f"bare CR or LF in {line!r}")
    return line, end + 2


def _head(data: bytes, at: int) -> tuple[bytes, list[tuple[str, str]], int]:
    start, at = _line(data, at)
    headers = []
    while True:
        line, at = _line(data, at)
        if not line:
            return start, headers, at
        if line[:1] in (b" ", b"\t"):
            raise Unparsable(f"obs-fold: {line!r}")
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip() or b" " in name:
            raise Unparsable(f"bad header line {line!r}")
        if any(b < 0x21 or b > 0x7E for b in name):
            raise Unparsable(f"bad header name {name!r}")
        headers.append((name.decode("latin1").lower(), value.strip(b" \t").decode("latin1")))


def _body(data: bytes, at: int, headers, *, response_to_head=False, status=200) -> tuple[bytes, int, bool]:
    """The body from `at`: (body, next position, close-delimited)."""
    lengths = [v for n, v in headers if n == "content-length"]
    codings = [v for n, v in headers if n == "transfer-encoding"]
    if response_to_head or status in (204, 304) or 100 <= status < 200:
        return b"", at, False
    if codings:
        if lengths:
            raise Unparsable("Content-Length next to Transfer-Encoding")
        if [c.strip().lower() for c in ",".join(codings).split(",")] != ["chunked"]:
            raise Unparsable(f"transfer coding {codings}")
        body = b""
        while True:
            line, at = _line(data, at)
            size_text = line.split(b";", 1)[0].strip()
            if not size_text or any(chr(b) not in "0123456789abcdefABCDEF" for b in size_text):
                raise Unparsable(f"chunk size {line!r}")
            size = int(size_text, 16)
            if size == 0:
                while True:  # trailers
                    trailer, at = _line(data, at)
                    if not trailer:
                        return body, at, False
            if len(data) < at + size + 2:
                raise IndexError("incomplete")
            body += data[at : at + size]
            if data[at + size : at + size + 2] != b"\r\n":
                raise Unparsable("chunk without CRLF")
            at += size + 2
    if lengths:
        if len(lengths) != 1 or not lengths[0].isdigit():
            raise Unparsable(f"Content-Length {lengths}")
        size = int(lengths[0])
        if len(data) < at + size:
            raise IndexError("incomplete")
        return data[at : at + size], at + size, False
    return None, at, True


def parse_requests(data: bytes) -> tuple[list[dict], str | None]:
    """The complete requests in `data`, and the problem (unparsable, or bytes after the last
    complete request that do not start another one) or None."""
    requests, at = [], 0
    while at < len(data):
        try:
            start, headers, body_at = _head(data, at)
            parts = start.split(b" ")
            if len(parts) != 3 or parts[2] != b"HTTP/1.1":
                raise Unparsable(f"request line {start!r}")
            body, at, close_delimited = _body(data, body_at, headers)
            if close_delimited:
                body = b""
        except IndexError:
            return requests, f"incomplete request after {len(requests)}: {data[at:at + 80]!r}"
        except Unparsable as e:
            return requests, f"unparsable: {e}"
        requests.append({
            "method": parts[0].decode("latin1"), "path": parts[1].decode("latin1"),
            "headers": headers, "body": body.decode("latin1"),
        })
    return requests, None


# ---------------------------------------------------------------------------------------------
# The recording backend.


def serve_backend(directory: Path, port_file: Path) -> None:
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    port_file.write_text(str(listener.getsockname()[1]))
    counter = iter(range(1, 1 << 30))

    def handle(conn: socket.socket, number: int) -> None:
        conn.settimeout(30)
        record = directory / f"conn-{number}.bin"
        data, answered = b"", 0
        with conn:
            while True:
                try:
                    chunk = conn.recv(65536)
                except OSError:
                    return
                if not chunk:
                    return
                # Opened per chunk: the runner deletes the records between cases, and a pooled
                # connection's next request then starts a new file.
                with open(record, "ab") as out:
                    out.write(chunk)
                data += chunk
                requests, problem = parse_requests(data)
                hostile = directory / "response.bin"
                if requests and hostile.exists():
                    conn.sendall(hostile.read_bytes())
                    return
                for _ in requests[answered:]:
                    conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                answered = len(requests)
                if problem and problem.startswith("unparsable"):
                    conn.sendall(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    return

    while True:
        conn, _ = listener.accept()
        threading.Thread(target=handle, args=(conn, next(counter)), daemon=True).start()


# ---------------------------------------------------------------------------------------------
# The client side.


def read_responses(sock: socket.socket, head_request: bool = False, want: int = 0) -> tuple[list[tuple[int, bytes, list]], bool]:
    """Every response gatekeeper sends until it closes or stays idle (or, with `want`, until
    that many complete responses arrived); and whether it closed."""
    data, closed = b"", False
    sock.settimeout(IDLE)
    deadline = time.monotonic() + SOCKET_TIMEOUT
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            break
        except ConnectionResetError:
            closed = True
            break
        if not chunk:
            closed = True
            break
        data += chunk
        if want and data.count(b"\r\n\r\n") >= want and len(_complete(data)) >= want:
            break
    responses, at = [], 0
    while at < len(data):
        try:
            start, headers, body_at = _head(data, at)
            status = int(start.split(b" ")[1])
            body, at, close_delimited = _body(data, body_at, headers, response_to_head=head_request, status=status)
            if close_delimited:
                body, at = data[body_at:], len(data)
        except IndexError:
            # The connection ended inside the response: a cut response (status 0 for the
            # corpus), which a proxy can do no better than once the head is sent.
            responses.append((0, data[at:], []))
            break
        except (Unparsable, ValueError) as e:
            responses.append((-1, f"unparsable response: {e}: {data[at:at + 120]!r}".encode(), []))
            break
        if 100 <= status < 200 and status != 101:
            continue
        responses.append((status, body, headers))
    return responses, closed


RESPONSES = {
    "FLOOD_100": b"HTTP/1.1 100 Continue\r\n\r\n" * 2000 + b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
    "HEADERS_200K": b"HTTP/1.1 200 OK\r\nx-big: " + b"a" * 200_000 + b"\r\ncontent-length: 0\r\n\r\n",
}
"""Responses too big to write in the corpus, by name."""


def _complete(data: bytes) -> list:
    """The complete final responses at the start of `data`."""
    done, at = [], 0
    while at < len(data):
        try:
            start, headers, body_at = _head(data, at)
            status = int(start.split(b" ")[1])
            _, at, close_delimited = _body(data, body_at, headers, status=status)
        except (IndexError, Unparsable, ValueError):
            break
        if close_delimited:
            break
        if not 100 <= status < 200:
            done.append(status)
    return done


def run_case(case: dict, port: int, directory: Path) -> str | None:
    """None when the case holds, else what went wrong."""
    for stale in directory.glob("conn-*.bin"):
        stale.unlink()
    hostile = directory / "response.bin"
    if "response" in case:
        hostile.write_bytes(RESPONSES.get(case["response"]) or decode(case["response"]))
    elif hostile.exists():
        hostile.unlink()
    pieces = case["request"] if isinstance(case["request"], list) else [case["request"]]
    sock = socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT)
    try:
        for i, piece in enumerate(pieces):
            if i:
                time.sleep(0.2)
            try:
                sock.sendall(decode(piece))
            except OSError:
                break
        responses, _closed = read_responses(sock, head_request=pieces[0].startswith("HEAD "))
    finally:
        sock.close()
        if hostile.exists():
            hostile.unlink()
    time.sleep(0.05)
    received = b"".join(p.read_bytes() for p in sorted(directory.glob("conn-*.bin")))
    forwarded, problem = parse_requests(received)
    statuses = [s for s, _, _ in responses]
    seen = f"client got {statuses}, backend got {len(forwarded)} request(s)"

    if "response" in case:
        allowed = case.get("client_statuses", [502])
        got = statuses[0] if statuses else 0
        if got not in allowed:
            return f"{seen}: expected the client to get one of {allowed}"
        if got == 200 and "client_body" in case and responses[0][1] != decode(case["client_body"]):
            return f"{seen}: body {responses[0][1][:80]!r}, expected {case['client_body']!r}"
        for name, value in case.get("client_headers", {}).items() if got == 200 else ():
            values = [v for n, v in responses[0][2] if n == name]
            if (value is None and values) or (value is not None and ", ".join(values) != value):
                return f"{seen}: the client got {name}: {values}, expected {value!r}"
        if len(forwarded) != 1:
            return f"{seen}: expected the backend to get exactly one request"
        return None

    if problem and not problem.startswith("incomplete") or (problem and forwarded):
        return f"{seen}: the backend could not read what gatekeeper forwarded ({problem})"
    expect = case["expect"]
    rejected = not forwarded and statuses and all(s >= 400 for s in statuses[:1])
    if expect == "reject" or (expect == "either" and not forwarded):
        allowed = case.get("statuses")
        if forwarded:
            return f"{seen}: expected a rejection, but gatekeeper forwarded {forwarded}"
        if not statuses:
            return None if case.get("close_ok") else f"{seen}: no answer (expected a 4xx)"
        if not rejected or (allowed and statuses[0] not in allowed) or (not allowed and not 400 <= statuses[0] < 500):
            return f"{seen}: expected a rejection with {allowed or '4xx'}"
        return None
    wanted = case.get("backend", [{}])
    if len(forwarded) != len(wanted):
        return f"{seen}: expected {len(wanted)} forwarded request(s): {forwarded}"
    for got, want in zip(forwarded, wanted):
        for key in ("method", "path", "body"):
            if key in want and got[key] != decode(want[key]).decode("latin1"):
                return f"{seen}: backend {key} {got[key]!r}, expected {want[key]!r}"
        for name, value in want.get("headers", {}).items():
            values = [v for n, v in got["headers"] if n == name]
            if value is None and values:
                return f"{seen}: the backend got {name}: {values}, expected none"
            if value is not None and ", ".join(values) != value:
                return f"{seen}: backend {name}: {values}, expected {value!r}"
    client = case.get("client", [200] * len(wanted))
    if statuses != client:
        return f"{seen}: expected the client to get {client}"
    return None


def alive(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT) as sock:
            sock.sendall(b"GET /echo/alive HTTP/1.1\r\nHost: a\r\n\r\n")
            responses, _ = read_responses(sock, want=1)
            return bool(responses) and responses[0][0] in (200, 502)
    except OSError:
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    backend = commands.add_parser("backend")
    backend.add_argument("--dir", type=Path, required=True)
    backend.add_argument("--port-file", type=Path, required=True)
    run = commands.add_parser("run")
    run.add_argument("--port", type=int, required=True)
    run.add_argument("--dir", type=Path, required=True)
    run.add_argument("--corpus", type=Path, required=True)
    run.add_argument("--direction", choices=["request", "response"], required=True)
    args = parser.parse_args()
    if args.command == "backend":
        args.dir.mkdir(parents=True, exist_ok=True)
        serve_backend(args.dir, args.port_file)
        return 0
    cases = json.loads(args.corpus.read_text())["cases"]
    cases = [c for c in cases if ("response" in c) == (args.direction == "response")]
    failed = 0
    for case in cases:
        problem = run_case(case, args.port, args.dir)
        if problem is None and not alive(args.port):
            problem = "gatekeeper no longer answers"
        print(("ok    " if problem is None else "FAIL  ") + case["name"] + ("" if problem is None else f"\n      {problem}"))
        failed += problem is not None
    print(f"{len(cases) - failed} of {len(cases)} cases hold")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
