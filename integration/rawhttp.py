"""Raw HTTP/1.1 over a socket, for the suites that send what curl will not (limits.bats,
hostile.bats): `connect(port)`, `read_response(sock)` and `closed(sock)`. Every socket operation
times out after 10 s."""
import socket


def connect(port):
    """A socket to 127.0.0.1:port."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.settimeout(10)
    return sock


def read_response(sock):
    """Reads one response: (status line, body bytes). The status line is "" when the connection
    closed before a response head arrived; the body is read up to its Content-Length."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data.split(b"\r\n")[0].decode("latin1"), b""
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head.split(b"\r\n")[0].decode("latin1"), body


def closed(sock, wait=10):
    """Whether the server closed the connection (waiting at most `wait` seconds)."""
    sock.settimeout(wait)
    try:
        return sock.recv(1) == b""
    except socket.timeout:
        return False
    except ConnectionResetError:
        return True
