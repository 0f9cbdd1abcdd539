#!/usr/bin/env python3
"""token-auth: an example gatekeeper modifier plugin (Python, with the SDK in plugin-sdk/python).

Answers 401 with ``WWW-Authenticate: Bearer`` unless the request carries
``Authorization: Bearer <token>`` with a token listed in the file named by the config key
``tokens_file`` (one token per line, ``#`` starts a comment). The file is re-read when it
changes: on a request, at most every ``reload_interval`` seconds (default 0.5), the plugin looks
at the file's mtime, size and inode and reads it again if any of them changed. No thread, no
watcher. With ``strip = true`` the Authorization header is removed before the request is
forwarded.

Decisions are cached by gatekeeper: each result says "the same Authorization header gets the
same decision for ``cache_ttl`` seconds" (default 30; 0 turns caching off), so a client sending
the same token again is answered without calling the plugin. A token removed from the file is
therefore refused within ``cache_ttl`` (plus ``reload_interval``) seconds.

See README.md for the config keys and how to run it.
"""

from __future__ import annotations

import hmac
import logging
import os
import sys
import time
from pathlib import Path

# Use the SDK from this repository (plugin-sdk/python) so the example runs without
# `pip install`; with the SDK installed (`pip install ./plugin-sdk/python`) this line is harmless.
_SDK = Path(__file__).resolve().parents[2] / "python"
if _SDK.is_dir():
    sys.path.insert(0, str(_SDK))

from gatekeeper_plugin import ModifierPlugin, RpcError, cached, header, remove_header, serve  # noqa: E402

log = logging.getLogger("token-auth")


def parse_bool(value: object, key: str) -> bool:
    """A config flag: a TOML boolean, or a string from the command line (a bare flag is true)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "1", "yes", "on"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("false", "0", "no", "off"):
        return False
    raise RpcError.invalid_params(f"config `{key}` must be true or false, not {value!r}")


def parse_tokens(text: str) -> frozenset[str]:
    """Tokens of a tokens file: one per line; blank lines and `#` comments are skipped."""
    tokens = set()
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            tokens.add(line)
    return frozenset(tokens)


class TokenFile:
    """The tokens of a file, re-read when its (mtime, size, inode) changes, checked at most
    every `interval` seconds, when asked."""

    def __init__(self, path: str, interval: float) -> None:
        self.path = path
        self.interval = interval
        self.tokens: frozenset[str] = frozenset()
        self._stamp: tuple[int, int, int] | None = None
        self._checked = 0.0

    def load(self) -> None:
        """Reads the file now; raises OSError when it cannot be read."""
        st = os.stat(self.path)
        with open(self.path, encoding="utf-8") as f:
            self.tokens = parse_tokens(f.read())
        self._stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        self._checked = time.monotonic()
        log.info("loaded %d token(s) from %s", len(self.tokens), self.path)

    def current(self) -> frozenset[str]:
        """The tokens, after re-reading the file if it changed (checked at most every
        `interval` seconds). A file that disappears or cannot be read revokes every token
        until it is back (fail closed)."""
        now = time.monotonic()
        if now - self._checked < self.interval:
            return self.tokens
        self._checked = now
        try:
            st = os.stat(self.path)
            if (st.st_mtime_ns, st.st_size, st.st_ino) != self._stamp:
                self.load()
        except OSError as exc:
            if self._stamp is not None:
                log.warning("cannot read %s (%s): refusing every token until it is back", self.path, exc)
            self.tokens, self._stamp = frozenset(), None
        return self.tokens


def bearer_token(value: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` value (scheme case-insensitive)."""
    if not value:
        return None
    scheme, _, token = value.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def is_valid(token: str, tokens: frozenset[str]) -> bool:
    """Whether `token` is one of `tokens`, compared in constant time per token."""
    found = False
    for known in tokens:
        found |= hmac.compare_digest(token.encode(), known.encode())
    return found


def unauthorized(challenge: str) -> dict:
    return {
        "response": {
            "status": 401,
            "headers": [
                ["www-authenticate", challenge],
                ["content-type", "text/plain; charset=utf-8"],
            ],
            "body": "unauthorized\n",
        }
    }


class TokenAuth(ModifierPlugin):
    def __init__(self) -> None:
        super().__init__()
        self.file: TokenFile | None = None
        self.strip = False
        self.cache_ms = 30_000

    async def configure(self, config: dict) -> None:
        path = config.get("tokens_file")
        if not isinstance(path, str) or not path:
            raise RpcError.invalid_params("config `tokens_file` (path of the tokens file) is required")
        interval = config.get("reload_interval", 0.5)
        try:
            interval = float(interval)
        except (TypeError, ValueError):
            raise RpcError.invalid_params(f"config `reload_interval` must be a number of seconds, not {interval!r}") from None
        self.strip = parse_bool(config.get("strip", False), "strip")
        cache_ttl = config.get("cache_ttl", 30)
        try:
            cache_ttl = float(cache_ttl)
        except (TypeError, ValueError):
            raise RpcError.invalid_params(f"config `cache_ttl` must be a number of seconds, not {cache_ttl!r}") from None
        self.cache_ms = int(max(cache_ttl, 0.0) * 1000)
        self.file = TokenFile(path, max(interval, 0.0))
        try:
            self.file.load()
        except OSError as exc:
            raise RpcError.invalid_params(f"cannot read tokens_file {path}: {exc}") from None

    async def modify_request(self, request):
        decision = self.decide(request)
        if self.cache_ms <= 0:
            return decision
        # The decision depends on the Authorization header only: gatekeeper may reuse it.
        return cached(decision, self.cache_ms, ["header:authorization"])

    def decide(self, request):
        token = bearer_token(header(request["headers"], "authorization"))
        if token is None:
            return unauthorized("Bearer")
        if not is_valid(token, self.file.current()):
            return unauthorized('Bearer error="invalid_token"')
        if not self.strip:
            return {}
        remove_header(request["headers"], "authorization")
        return {"request": request}


if __name__ == "__main__":
    serve(TokenAuth())
