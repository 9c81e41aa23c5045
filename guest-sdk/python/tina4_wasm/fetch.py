"""HTTP requests to other services, through the standard
``wasi:http/outgoing-handler``::

    from tina4_wasm import fetch, FetchError

    reply = fetch("https://shop.example.com/orders/7")
    order = reply.json()
    fetch("https://hooks.example.com/notify", method="POST", json={"order": 7})

The host sends a request only where the app's ``<app>.toml`` lists its
destination in ``allowed_outbound_hosts``; anything else raises
:class:`FetchError` with its ``kind``. A request waits at most until the
app's timeout, and never past the deadline of the event that sent it.
"""

import json as _json

from componentize_py_types import Err as _Err
from wit_world.imports import outgoing_handler as _handler
from wit_world.imports import streams as _streams
from wit_world.imports import wasi_http_types as _http

_METHODS = {
    "GET": _http.Method_Get, "HEAD": _http.Method_Head, "POST": _http.Method_Post,
    "PUT": _http.Method_Put, "DELETE": _http.Method_Delete, "PATCH": _http.Method_Patch,
    "OPTIONS": _http.Method_Options,
}

_KINDS = {
    _http.ErrorCode_HttpRequestDenied: ("denied", "not in allowed_outbound_hosts"),
    _http.ErrorCode_DestinationIpProhibited: (
        "prohibited", "an internal address no entry names"),
    _http.ErrorCode_DnsTimeout: ("timeout", "timed out"),
    _http.ErrorCode_ConnectionTimeout: ("timeout", "timed out"),
    _http.ErrorCode_ConnectionReadTimeout: ("timeout", "timed out"),
    _http.ErrorCode_ConnectionWriteTimeout: ("timeout", "timed out"),
    _http.ErrorCode_HttpResponseTimeout: ("timeout", "timed out"),
    _http.ErrorCode_HttpResponseBodySize: ("too-large", "response larger than {} bytes"),
    _http.ErrorCode_ConnectionLimitReached: ("busy", "too many requests in flight"),
}


class FetchError(Exception):
    """A request that got no answer. ``kind`` is ``denied``, ``prohibited``,
    ``timeout``, ``too-large``, ``busy``, ``invalid-url`` or ``failed``."""

    def __init__(self, kind, message):
        super().__init__(f"request {kind}: {message}")
        self.kind = kind


def _error(code):
    kind, message = _KINDS.get(type(code), ("failed", type(code).__name__.replace("ErrorCode_", "")))
    return FetchError(kind, message.format(getattr(code, "value", "")))


class Reply:
    """An answer: ``status``, ``headers`` (lower-case names) and ``body`` (bytes)."""

    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def text(self):
        return self.body.decode("utf-8", "replace")

    def json(self):
        return _json.loads(self.body)


def fetch(url, method="GET", headers=None, body=b"", json=None):
    """Sends a request and reads the whole answer; raises :class:`FetchError`."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in ("http", "https"):
        raise FetchError("invalid-url", f"{url!r} needs http:// or https://")
    cut = min([i for i in (rest.find("/"), rest.find("?")) if i >= 0], default=len(rest))
    authority, path = rest[:cut], rest[cut:] or "/"
    if path.startswith("?"):
        path = "/" + path
    pairs = [(name.lower(), str(value).encode()) for name, value in (headers or {}).items()]
    if json is not None:
        body = _json.dumps(json).encode()
        pairs.append(("content-type", b"application/json"))
    elif isinstance(body, str):
        body = body.encode()
    if body and not any(name == "content-length" for name, _ in pairs):
        pairs.append(("content-length", str(len(body)).encode()))
    try:
        request = _http.OutgoingRequest(_http.Fields.from_list(pairs))
        method = method.upper()
        request.set_method(_METHODS[method]() if method in _METHODS else _http.Method_Other(method))
        request.set_scheme(_http.Scheme_Https() if scheme.lower() == "https" else _http.Scheme_Http())
        request.set_authority(authority)
        request.set_path_with_query(path)
        outgoing = request.body()
    except _Err:
        raise FetchError("invalid-url", f"{url!r} cannot be sent") from None
    try:
        pending = _handler.handle(request, None)
    except _Err as err:
        raise _error(err.value) from None
    # Written after sending, so a large body streams to the host.
    try:
        stream = outgoing.write()
        for at in range(0, len(body), 4096):
            stream.blocking_write_and_flush(body[at:at + 4096])
        stream.__exit__(None, None, None)
    except _Err:
        pass  # a refused request stops reading; its error comes below
    try:
        _http.OutgoingBody.finish(outgoing, None)
    except _Err:
        pass
    pending.subscribe().block()
    # Ok(Ok(response)) or Ok(Err(code)) once ready; Err if taken before.
    answer = pending.get()
    if answer is None or isinstance(answer, _Err):
        raise FetchError("failed", "no answer")
    if isinstance(answer.value, _Err):
        raise _error(answer.value.value)
    return _read(answer.value.value)


def _read(response):
    status = response.status()
    headers = [(name, value.decode("latin-1")) for name, value in response.headers().entries()]
    incoming = response.consume()
    stream = incoming.stream()
    chunks = []
    while True:
        try:
            chunks.append(stream.blocking_read(65536))
        except _Err as err:
            if isinstance(err.value, _streams.StreamError_Closed):
                break
            code = _http.http_error_code(err.value.value)
            raise (_error(code) if code is not None else FetchError("failed", "the body broke off")) from None
    stream.__exit__(None, None, None)
    _http.IncomingBody.finish(incoming)
    return Reply(status, headers, b"".join(chunks))
