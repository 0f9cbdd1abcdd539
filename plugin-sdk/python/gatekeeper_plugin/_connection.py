"""One JSON-RPC 2.0 connection over newline-delimited JSON (docs/protocol.md, "Framing" and
"Messages"), used in both directions at once.

* Incoming requests are answered each on its own asyncio task, in whatever order they finish.
* Outgoing requests (:meth:`Connection.call`) get increasing integer ids; their responses are
  matched by id and complete a future.
* Every line is written whole, under one lock, as compact JSON followed by ``\\n``.

Private to the SDK: plugins use :func:`gatekeeper_plugin.serve` and the
:class:`gatekeeper_plugin.Manager`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

from . import codes
from .errors import RpcError, ServeError
from .models import JsonObject

logger = logging.getLogger("gatekeeper_plugin")

Handler = Callable[[str, JsonObject], Awaitable[JsonObject]]
"""Answers one incoming request: ``(method, params) -> result``; raises to answer an error."""

RequestId = int | str


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


def encode(message: JsonObject) -> bytes:
    """One message as one line: compact JSON, UTF-8, ``\\n``-terminated. Raises ``TypeError`` or
    ``ValueError`` for what JSON cannot carry (sets, NaN, lone surrogates, ...)."""
    text = json.dumps(message, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.encode("utf-8") + b"\n"


def describe(exc: BaseException) -> str:
    """The message an unexpected exception is reported with: ``"Type: message"``."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _is_id(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


class Connection:
    """A JSON-RPC peer over an asyncio stream pair. :meth:`run` reads until the other side
    closes; :meth:`call` sends requests; :meth:`close` ends everything."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        handler: Handler,
        *,
        max_line_bytes: int,
        on_replied: Callable[[str], None] | None = None,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._handler = handler
        self._max_line_bytes = max_line_bytes
        self._on_replied = on_replied
        self._write_lock = asyncio.Lock()
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._next_id = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    # -- reading --------------------------------------------------------------------------

    async def run(self) -> None:
        """Reads and handles lines until the other side closes the connection (returns) or
        breaks the framing (raises :class:`ServeError`: a line over the limit, bytes that are not
        UTF-8)."""
        try:
            while True:
                try:
                    line = await self._reader.readline()
                except ValueError as exc:  # the StreamReader's limit (LimitOverrunError)
                    raise ServeError(
                        f"gatekeeper sent a line over the {self._max_line_bytes}-byte limit"
                    ) from exc
                except OSError as exc:
                    logger.warning("the connection to gatekeeper broke: %s", exc)
                    return
                if not line:
                    return
                if len(line.rstrip(b"\n")) > self._max_line_bytes:
                    raise ServeError(
                        f"gatekeeper sent a line over the {self._max_line_bytes}-byte limit"
                    )
                await self._receive(line)
        finally:
            self._fail_pending("the connection to gatekeeper closed")

    async def _receive(self, line: bytes) -> None:
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ServeError(f"gatekeeper sent bytes that are not UTF-8: {exc}") from exc
        text = text.strip()
        if not text:
            return
        try:
            message = json.loads(text, parse_constant=_reject_constant)
        except ValueError as exc:
            logger.warning("ignoring a line that is not JSON: %s", exc)
            await self._send_error(None, codes.PARSE_ERROR, f"not a JSON-RPC message: {exc}")
            return
        if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
            await self._invalid('`jsonrpc` must be "2.0" in a JSON object')
            return
        method = message.get("method")
        if method is not None:
            if not isinstance(method, str):
                await self._invalid("`method` must be a string")
            elif "id" not in message:
                logger.debug("ignoring notification %s", method)
            elif not _is_id(message["id"]):
                await self._invalid("a request id must be a string or an integer")
            else:
                params = message.get("params")
                self._spawn(message["id"], method, {} if params is None else params)
        elif "id" in message:
            self._complete(message)
        else:
            await self._invalid("neither `method` nor `id` present")

    async def _invalid(self, description: str) -> None:
        logger.warning("ignoring an invalid JSON-RPC message: %s", description)
        await self._send_error(
            None, codes.INVALID_REQUEST, f"invalid JSON-RPC message: {description}"
        )

    def _complete(self, message: JsonObject) -> None:
        request_id = message["id"]
        future = None
        if isinstance(request_id, int) and not isinstance(request_id, bool):
            future = self._pending.pop(request_id, None)
        if future is None:
            if request_id is None and isinstance(message.get("error"), dict):
                logger.warning("gatekeeper reported an error: %s", message["error"])
            else:
                logger.debug("dropping a response to a call no longer waited for: %r", request_id)
            return
        if future.done():
            return
        error = message.get("error")
        if error is not None:
            if isinstance(error, dict):
                code = error.get("code")
                future.set_exception(
                    RpcError(
                        code
                        if isinstance(code, int) and not isinstance(code, bool)
                        else codes.INTERNAL_ERROR,
                        str(error.get("message", "")),
                        error.get("data"),
                    )
                )
            else:
                future.set_exception(RpcError(codes.INTERNAL_ERROR, f"malformed error: {error!r}"))
        else:
            future.set_result(message.get("result"))

    # -- answering ------------------------------------------------------------------------

    def _spawn(self, request_id: RequestId, method: str, params: Any) -> None:
        task = asyncio.create_task(self._answer(request_id, method, params), name=f"rpc:{method}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, request_id: RequestId, method: str, params: Any) -> None:
        try:
            if not isinstance(params, dict):
                raise RpcError.invalid_params("params must be an object")
            result = await self._handler(method, params)
            line = encode({"jsonrpc": "2.0", "id": request_id, "result": result})
            if len(line) - 1 > self._max_line_bytes:
                raise RpcError.internal(
                    f"the result of `{method}` is {len(line) - 1} bytes, over gatekeeper's "
                    f"{self._max_line_bytes}-byte line limit"
                )
        except RpcError as exc:
            logger.warning("answering `%s` with an error: %s", method, exc)
            line = self._error_line(request_id, exc.to_object())
        except Exception as exc:  # noqa: BLE001 - any failure of a hook becomes -32603
            logger.error("`%s` failed", method, exc_info=exc)
            line = self._error_line(
                request_id, {"code": codes.INTERNAL_ERROR, "message": describe(exc)}
            )
        try:
            await self._write(line)
        except (OSError, RuntimeError) as exc:
            logger.debug("could not answer `%s`: %s", method, exc)
            return
        if self._on_replied is not None:
            self._on_replied(method)

    def _error_line(self, request_id: RequestId | None, error: JsonObject) -> bytes:
        try:
            return encode({"jsonrpc": "2.0", "id": request_id, "error": error})
        except (TypeError, ValueError):  # `data` JSON cannot carry
            plain = {"code": error["code"], "message": str(error["message"])}
            return encode({"jsonrpc": "2.0", "id": request_id, "error": plain})

    async def _send_error(self, request_id: RequestId | None, code: int, message: str) -> None:
        try:
            await self._write(self._error_line(request_id, {"code": code, "message": message}))
        except (OSError, RuntimeError) as exc:
            logger.debug("could not send an error: %s", exc)

    # -- calling --------------------------------------------------------------------------

    async def call(self, method: str, params: JsonObject, timeout: float) -> Any:
        """Sends request ``method`` and returns its result. Raises :class:`RpcError`: the other
        side's error, or ``INTERNAL_ERROR`` on timeout, a closed connection, or params that
        cannot be encoded or are over the line limit."""
        self._next_id += 1
        request_id = self._next_id
        try:
            line = encode({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})
        except (TypeError, ValueError) as exc:
            raise RpcError.internal(f"`{method}`: cannot encode the params as JSON: {exc}") from exc
        if len(line) - 1 > self._max_line_bytes:
            raise RpcError.internal(
                f"`{method}`: the request is {len(line) - 1} bytes, over gatekeeper's "
                f"{self._max_line_bytes}-byte line limit"
            )
        if self._closed:
            raise RpcError.internal(f"`{method}`: the connection to gatekeeper is closed")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            try:
                await self._write(line)
            except (OSError, RuntimeError) as exc:
                raise RpcError.internal(f"`{method}`: could not send: {exc}") from exc
            try:
                return await asyncio.wait_for(future, timeout)
            except TimeoutError:
                raise RpcError.internal(
                    f"`{method}`: no answer from gatekeeper within {timeout:g} s"
                ) from None
        finally:
            self._pending.pop(request_id, None)

    # -- writing and closing --------------------------------------------------------------

    async def _write(self, line: bytes) -> None:
        async with self._write_lock:
            if self._closed or self._writer.is_closing():
                raise RuntimeError("the connection is closed")
            self._writer.write(line)
            await self._writer.drain()

    def _fail_pending(self, reason: str) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(RpcError.internal(reason))
        self._pending.clear()

    async def close(self) -> None:
        """Cancels the requests still being answered, fails the calls still waiting, and closes
        the stream (after what was already written is flushed)."""
        if self._closed:
            return
        self._closed = True
        self._fail_pending("the connection to gatekeeper closed")
        current = asyncio.current_task()
        tasks = [task for task in self._tasks if task is not current]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=1.0)
        try:
            self._writer.close()
            await asyncio.wait_for(self._writer.wait_closed(), 1.0)
        except (OSError, TimeoutError):
            pass
