"""A deliberately small HTTP/1.1 server on trio: the confmaster's operator API and every
service's /metrics.

One request per connection (Connection: close): the API and scrapes are low-volume and
curl-friendly, and this keeps the parser tiny. Request bodies are JSON; replies are JSON,
or raw bytes of a given content type (Prometheus text).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import trio

from tessera.errors import ConfigError
from tessera.security import secret_matches

log = logging.getLogger("tessera.http")

MAX_REQUEST_BYTES = 1 << 20
_REASONS = {
    200: "OK",
    201: "Created",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    421: "Misdirected Request",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    authorization: str = ""  # the Authorization header, if any


@dataclass(frozen=True)
class Response:
    """`body` is sent as JSON, unless it is bytes: then as is, with `content_type`."""

    status: int
    body: Any
    content_type: str = "application/json"


Handler = Callable[[Request], Awaitable[Response]]


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def serve_http(
    handler: Handler,
    host: str,
    port: int,
    secret: str | None = None,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `handler`; with a `secret`, requests without `Authorization: Bearer <secret>`
    get 401 and never reach it."""
    try:
        listeners = await trio.open_tcp_listeners(port, host=host)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    bound = listeners[0].socket.getsockname()[1]

    async def connection(stream: trio.SocketStream) -> None:
        async with stream:
            try:
                with trio.fail_after(30):
                    request = await _read_request(stream)
                    if secret is not None and not bearer_matches(request.authorization, secret):
                        await _write_response(stream, _UNAUTHORIZED)
                        return
                    try:
                        response = await handler(request)
                    except HttpError as exc:
                        response = Response(exc.status, {"error": str(exc)})
                    await _write_response(stream, response)
            except HttpError as exc:
                await _write_response(stream, Response(exc.status, {"error": str(exc)}))
            except (trio.BrokenResourceError, trio.TooSlowError, trio.ClosedResourceError):
                return

    async with trio.open_nursery() as nursery:
        task_status.started(bound)
        await trio.serve_listeners(connection, listeners, handler_nursery=nursery)


_UNAUTHORIZED = Response(
    401,
    {
        "error": "this confmaster requires the cluster secret: "
        "send Authorization: Bearer <secret> (confmaster-cli: --cluster-secret-file "
        "or $TESSERA_CLUSTER_SECRET)"
    },
)


def bearer_matches(authorization: str, secret: str) -> bool:
    scheme, _, token = authorization.partition(" ")
    return scheme.lower() == "bearer" and secret_matches(token.strip().encode(), secret)


async def _read_request(stream: trio.SocketStream) -> Request:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive_some(65536)
        if not chunk:
            raise trio.BrokenResourceError
        data += chunk
        if len(data) > MAX_REQUEST_BYTES:
            raise HttpError(400, "request too large")
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    try:
        method, target, _version = lines[0].split(" ", 2)
    except ValueError:
        raise HttpError(400, "malformed request line") from None
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    try:
        length = int(headers.get("content-length", "0") or 0)
    except ValueError:
        raise HttpError(400, "bad Content-Length") from None
    if length < 0 or length > MAX_REQUEST_BYTES:
        raise HttpError(400, "request body too large")
    while len(body) < length:
        chunk = await stream.receive_some(65536)
        if not chunk:
            raise trio.BrokenResourceError
        body += chunk
    parsed = urlsplit(target)
    try:
        payload = json.loads(body) if body.strip() else None
    except json.JSONDecodeError as exc:
        raise HttpError(400, f"body is not JSON: {exc}") from None
    return Request(
        method.upper(),
        parsed.path.rstrip("/") or "/",
        parse_qs(parsed.query),
        payload,
        headers.get("authorization", ""),
    )


async def _write_response(stream: trio.SocketStream, response: Response) -> None:
    if isinstance(response.body, bytes):
        body = response.body
    else:
        body = json.dumps(response.body, indent=1, sort_keys=True).encode() + b"\n"
    head = (
        f"HTTP/1.1 {response.status} {_REASONS.get(response.status, 'Status')}\r\n"
        f"Content-Type: {response.content_type}\r\nContent-Length: {len(body)}\r\n"
        + ('WWW-Authenticate: Bearer realm="tessera"\r\n' if response.status == 401 else "")
        + "Connection: close\r\n\r\n"
    ).encode()
    await stream.send_all(head + body)
