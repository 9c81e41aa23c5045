"""tina4-wasm for Python: the tina4-python API, compiled to a component.

    from tina4_wasm import websocket, get

    @websocket("/ws/echo")
    async def echo(connection, event, data):
        if event == "message":
            await connection.send(f"Echo: {data}")

    @get("/hello/{name}")
    async def hello(request, response):
        return response({"hello": request.params["name"]})

Handlers may be plain functions or ``async def``. Every call into the host
completes at once, so ``await connection.send(...)`` and
``connection.send(...)`` do the same; a handler that awaits anything else
(a sleep, a socket) is an error, since a handler runs to completion.
Routes are registered when the app module is imported (at build time);
``tina4-wasm build`` wires :mod:`tina4_wasm.world` to the ``handler-http``
world (the ``handler`` world with outgoing HTTP, for :func:`fetch`).
"""

import inspect
import json

from wit_world.imports import logging as _logging
from wit_world.imports import templates as _templates
from wit_world.imports import tina4_wasm_types as _types
from wit_world.imports import storage as _storage
from wit_world.imports import timers as _timers
from wit_world.imports import websocket as _host
from componentize_py_types import Err as _Err

from .fetch import FetchError, Reply, fetch

__all__ = [
    "BadRequest", "Connection", "FetchError", "Reply", "Request", "Response", "Tina4Error", "fetch",
    "after", "cancel_timer", "close_connection", "kv", "delete", "every", "get", "history", "log",
    "members", "on_timer", "patch", "post", "presence", "push_to_websocket", "put",
    "schedule_timer", "secured", "send_to_connection", "sse", "template", "websocket",
]


class Tina4Error(Exception):
    """A call the host refused. ``kind`` is ``unknown-connection``,
    ``not-permitted``, ``too-large`` or ``invalid``."""

    status = 500

    def __init__(self, kind, message):
        super().__init__(message)
        self.kind = kind


class BadRequest(Tina4Error):
    """Raised by a route handler to answer 400 with ``{"error": message}``."""

    status = 400

    def __init__(self, message):
        super().__init__("bad-request", message)


_HOST_ERRORS = {
    _types.Error_UnknownConnection: ("unknown-connection", "no open connection {}"),
    _types.Error_NotPermitted: ("not-permitted", "not permitted: {}"),
    _types.Error_TooLarge: ("too-large", "message larger than the {}-byte limit"),
    _types.Error_Invalid: ("invalid", "invalid argument: {}"),
    _storage.StorageError_NotPermitted: ("not-permitted", "this app has no storage grant"),
    _storage.StorageError_Quota: ("quota", "over quota: {}"),
    _storage.StorageError_Invalid: ("invalid", "invalid argument: {}"),
    _storage.StorageError_Unavailable: ("unavailable", "unavailable: {}"),
}


def _call(fn, *args):
    """Calls a host function, turning its error variant into a Tina4Error."""
    try:
        return fn(*args)
    except _Err as err:
        kind, message = _HOST_ERRORS[type(err.value)]
        detail = getattr(err.value, "value", "")
        raise Tina4Error(kind, message.format(detail)) from None


class _Done:
    """What a host call returns: already done, and awaitable for the
    tina4-python style ``await connection.send(...)``."""

    __slots__ = ()

    def __await__(self):
        return None
        yield  # a generator: awaiting it finishes at once


_DONE = _Done()


class _Count(int):
    """A count that may also be awaited (``await push_to_websocket(...)``)."""

    def __await__(self):
        return int(self)
        yield


def _log(level, message):
    _logging.log(level, str(message))


class log:
    """Lines in the host's log, tagged with this app."""

    trace = staticmethod(lambda message: _log(_logging.Level.TRACE, message))
    debug = staticmethod(lambda message: _log(_logging.Level.DEBUG, message))
    info = staticmethod(lambda message: _log(_logging.Level.INFO, message))
    warn = staticmethod(lambda message: _log(_logging.Level.WARN, message))
    error = staticmethod(lambda message: _log(_logging.Level.ERROR, message))


def _fields(pairs):
    """Name/value pairs as a dict (the first value of a repeated name wins)."""
    out = {}
    for name, value in pairs:
        out.setdefault(name, value)
    return out


class _Routed:
    """What a routed request or connection carries from the client."""

    def __init__(self, source):
        #: The concrete, percent-decoded path, e.g. ``/ws/chat/lobby``.
        self.path = source.path
        #: Path parameters, e.g. ``{"room": "lobby"}``.
        self.params = _fields(source.params)
        #: Query string pairs (the first of a repeated name).
        self.query = _fields(source.query)
        #: Headers, names lower-case (for a connection, selected ones of its upgrade).
        self.headers = _fields(source.headers)
        #: On a secured route, the verified token's claims; else None.
        self.claims = None if source.claims is None else json.loads(source.claims)


class Connection(_Routed):
    """One open WebSocket connection: the ``connection`` argument of a
    handler. Broadcasts and counts stay on its concrete ``path``."""

    def __init__(self, conn):
        super().__init__(conn)
        #: Opaque, unique across the cluster.
        self.id = conn.id

    def send(self, message):
        """Sends text (str) or binary (bytes) to this connection only."""
        if isinstance(message, (bytes, bytearray)):
            _call(_host.send_binary, self.id, bytes(message))
        else:
            _call(_host.send, self.id, str(message))
        return _DONE

    def send_json(self, value):
        """Sends a value as JSON text to this connection only."""
        return self.send(json.dumps(value))

    def broadcast(self, message, exclude_self=False):
        """Sends to every connection on this path, this one included unless
        ``exclude_self``. Text (str), binary (bytes), or JSON for any other value."""
        exclude = self.id if exclude_self else None
        if isinstance(message, (bytes, bytearray)):
            _call(_host.broadcast_binary, self.path, bytes(message), exclude)
        else:
            text = message if isinstance(message, str) else json.dumps(message)
            _call(_host.broadcast, self.path, text, exclude)
        return _DONE

    def close(self, code=1000, reason=""):
        """Closes the connection from the server side."""
        _call(_host.close, self.id, code, reason)
        return _DONE

    def connection_count(self):
        """How many connections are open on this path, cluster-wide."""
        return _call(_host.count, self.path)

    def set_attachment(self, value):
        """Keeps a JSON value with the connection, held by the host: it
        survives hot swaps and is gone after the connection's close event."""
        _call(_host.set_attachment, self.id, json.dumps(value).encode())

    def attachment(self, default=None):
        """The value last kept with ``set_attachment``, or ``default``."""
        raw = _call(_host.attachment, self.id)
        return default if raw is None else json.loads(raw)

    def history(self, limit=50):
        """The newest ``limit`` messages this path keeps (``@history``),
        oldest first: dicts with ``offset`` and ``text`` (or ``data``, bytes)."""
        kept = []
        for message in _call(_host.history, self.path, 0, limit):
            if isinstance(message.message, _types.Message_Text):
                kept.append({"offset": message.offset, "text": message.message.value})
            else:
                kept.append({"offset": message.offset, "data": bytes(message.message.value)})
        return kept


    def set_presence(self, key, value=""):
        """Says who this connection is on a path whose route keeps presence
        (``@presence``): ``key`` names the user (several tabs may share it),
        ``value`` what others may see (a string, or JSON for anything else)."""
        text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
        _call(_host.set_presence, self.id, str(key), text)
        return _DONE

    def presence(self):
        """The members of this path on every instance: dicts with ``id``,
        ``key`` and ``value``."""
        return members(self.path)


class Request(_Routed):
    """An HTTP request: the ``request`` argument of a route handler."""

    def __init__(self, request):
        super().__init__(request)
        #: Upper-case method name, e.g. ``"POST"``.
        self.method = request.method.name
        #: The body's bytes.
        self.raw_body = request.body

    def text(self):
        """The body as text."""
        return self.raw_body.decode("utf-8", errors="replace")

    def json(self):
        """The body parsed as JSON; a body that is not JSON answers 400."""
        try:
            return json.loads(self.raw_body)
        except ValueError as err:
            raise BadRequest(f"the body is not JSON: {err}") from None

    @property
    def body(self):
        """The body: parsed JSON when it is JSON, else its text (tina4-python's ``request.body``)."""
        try:
            return json.loads(self.raw_body)
        except ValueError:
            return self.text()


class Response:
    """Builds the answer: the ``response`` argument of a route handler.

    ``response(value, status=200)`` answers with JSON for a dict or list,
    HTML for a str and bytes as they are, as tina4-python's ``response`` does.
    """

    def __init__(self, status=200, headers=None, body=b""):
        self.status = status
        self.headers = list(headers or [])
        self.body = body

    def __call__(self, value=None, status=200, content_type=None):
        if isinstance(value, (bytes, bytearray)):
            body, kind = bytes(value), "application/octet-stream"
        elif isinstance(value, str):
            body, kind = value.encode(), "text/html; charset=utf-8"
        else:
            body, kind = json.dumps(value).encode(), "application/json"
        headers = [(n, v) for n, v in self.headers if n != "content-type"]
        return Response(status, headers + [("content-type", content_type or kind)], body)

    def json(self, value, status=200):
        """Answers with ``value`` as JSON."""
        return self(value, status, "application/json")

    def html(self, page, status=200):
        """Answers with an HTML page."""
        return self(page, status, "text/html; charset=utf-8")

    def text(self, text, status=200):
        """Answers with plain text."""
        return self(text, status, "text/plain; charset=utf-8")

    def render(self, name, status=200, **context):
        """Answers with the template ``name`` rendered with ``context``."""
        return self.html(template(name, **context), status)

    def header(self, name, value):
        """A copy of this response with one more header."""
        return Response(self.status, self.headers + [(name.lower(), str(value))], self.body)


def template(name, **context):
    """Renders a template from the app's templates folder (Jinja syntax)."""
    return _call(_templates.render, name, json.dumps(context))


def push_to_websocket(path, message):
    """Sends text to every connection on ``path`` (JSON for a dict or list);
    returns how many it reached."""
    text = message if isinstance(message, str) else json.dumps(message)
    return _Count(_call(_host.push, path, text))


def send_to_connection(connection_id, message):
    """Sends text to one connection by id."""
    _call(_host.send, connection_id, str(message))
    return _DONE


def close_connection(connection_id, code=1000, reason=""):
    """Closes one connection by id."""
    _call(_host.close, connection_id, code, reason)
    return _DONE


def members(path):
    """The members of ``path`` on every instance: dicts with ``id``, ``key``
    and ``value``."""
    return [
        {"id": m.conn, "key": m.key, "value": m.value}
        for m in _call(_host.presence, path)
    ]


#: The routes, in the order the host numbers them: (route, handler).
ROUTES = []

#: Presence handlers (``@presence(on_change=...)``), by route index.
PRESENCE_HANDLERS = {}


def _route(kind, path):
    def register(handler):
        if not callable(handler):
            raise TypeError(f"the handler for {path} is not callable")
        on_change = getattr(handler, "_tina4_on_presence", None)
        if on_change is not None:
            PRESENCE_HANDLERS[len(ROUTES)] = on_change
        ROUTES.append((_types.Route(
            kind=kind,
            path=path,
            secured=getattr(handler, "_tina4_secured", False),
            history=getattr(handler, "_tina4_history", None),
            presence=getattr(handler, "_tina4_presence", None),
        ), handler))
        return handler

    return register


def _http(method):
    return lambda path: _route(_types.RouteKind_Http(method), path)


get = _http(_types.Method.GET)
post = _http(_types.Method.POST)
put = _http(_types.Method.PUT)
patch = _http(_types.Method.PATCH)
delete = _http(_types.Method.DELETE)


def websocket(path):
    """``handler(connection, event, data)``; event is ``"open"``,
    ``"message"``, ``"binary"`` or ``"close"``."""
    return _route(_types.RouteKind_Websocket(), path)


def sse(path):
    """A Server-Sent Events stream on ``path``, in the same path group as
    WebSocket connections there: ``handler(connection, event, data)`` gets
    ``"open"`` and ``"close"`` (the client cannot send)."""
    return _route(_types.RouteKind_Sse(), path)


def history(max_messages, max_age_secs=0):
    """Keeps each path's recent messages (WebSocket and SSE routes) so a
    client that reconnects gets what it missed: at most ``max_messages``,
    none older than ``max_age_secs`` (0: no age limit). Put it below the
    route decorator, as ``@secured``."""
    def mark(handler):
        handler._tina4_history = _types.History(max_messages=max_messages, max_age_secs=max_age_secs)
        return handler

    return mark


def presence(claim=None, announce=False, on_change=None):
    """Keeps who is on each path (WebSocket and SSE routes): keys set with
    ``connection.set_presence``, or taken from the token's ``claim`` on a
    secured route. ``announce`` sends the path's clients a notice of each
    join and leave; ``on_change(change)`` hears them (a dict with ``path``,
    ``key``, ``value``, ``joined``), once in the cluster. Put it below the
    route decorator, as ``@secured``."""
    def mark(handler):
        handler._tina4_presence = _types.Presence(
            claim=claim, announce=bool(announce), events=on_change is not None)
        handler._tina4_on_presence = on_change
        return handler

    return mark


#: What each timer does, by name.
TIMER_HANDLERS = {}

#: Timers declared as the module was evaluated: scheduled as the app loads.
DECLARED_TIMERS = []


def schedule_timer(name, ms, repeat=False, once_in_cluster=False):
    """Schedules (or replaces) the timer ``name``: after ``ms``, and every
    ``ms`` if ``repeat`` (with ``once_in_cluster``, on one instance of the
    cluster per period). Raises ``Tina4Error`` when the host refuses
    (``invalid``: too soon, ``too-large``: too many timers,
    ``not-permitted``: none granted)."""
    _call(_timers.schedule, str(name), int(ms), bool(repeat), bool(once_in_cluster))
    return _DONE


def cancel_timer(name):
    """Cancels the timer ``name``; False if there was none."""
    return _timers.cancel(str(name))


def on_timer(name):
    """``handler(tick)`` runs when the timer ``name`` fires; ``tick``
    counts its firings (for ``once_in_cluster``, the period's number)."""
    def register(handler):
        TIMER_HANDLERS[name] = handler
        return handler

    return register


def every(name, ms, once_in_cluster=False):
    """``handler(tick)`` runs every ``ms`` from when the app loads."""
    def register(handler):
        TIMER_HANDLERS[name] = handler
        DECLARED_TIMERS.append((name, ms, True, once_in_cluster))
        return handler

    return register


def after(name, ms):
    """``handler(tick)`` runs once, ``ms`` after the app loads."""
    def register(handler):
        TIMER_HANDLERS[name] = handler
        DECLARED_TIMERS.append((name, ms, False, False))
        return handler

    return register


def secured(handler):
    """Only clients with a valid token reach this route. Put it below the
    route decorator: ``@get(...)`` then ``@secured``."""
    handler._tina4_secured = True
    return handler


def run_to_completion(result):
    """The value of a handler's result, driving an ``async def`` handler to its end."""
    if not inspect.iscoroutine(result):
        return result
    try:
        result.send(None)
    except StopIteration as done:
        return done.value
    result.close()
    raise RuntimeError("the handler awaited something that is not a tina4 call; handlers run to completion")


class kv:
    """Key-value storage of the app's own, kept by the host (a grant:
    ``[storage]`` in the app's ``.toml``). A refusal raises ``Tina4Error``
    with ``kind`` ``not-permitted``, ``quota``, ``invalid`` or
    ``unavailable``."""

    @staticmethod
    def get(key, default=None):
        """The text ``key`` holds, or ``default``."""
        raw = _call(_storage.get, str(key))
        return default if raw is None else bytes(raw).decode()

    @staticmethod
    def get_bytes(key, default=None):
        """The bytes ``key`` holds, or ``default``."""
        raw = _call(_storage.get, str(key))
        return default if raw is None else bytes(raw)

    @staticmethod
    def get_json(key, default=None):
        """The JSON value ``key`` holds, or ``default``."""
        raw = _call(_storage.get, str(key))
        return default if raw is None else json.loads(bytes(raw))

    @staticmethod
    def set(key, value, ttl_ms=None):
        """Sets ``key``: str, bytes, or JSON for anything else; for
        ``ttl_ms`` if given."""
        if isinstance(value, (bytes, bytearray)):
            raw = bytes(value)
        elif isinstance(value, str):
            raw = value.encode()
        else:
            raw = json.dumps(value, separators=(",", ":")).encode()
        _call(_storage.set, str(key), raw, ttl_ms)
        return _DONE

    @staticmethod
    def delete(key):
        """Removes ``key``; whether it had a value."""
        return _call(_storage.delete, str(key))

    @staticmethod
    def keys(prefix="", limit=100):
        """The keys that start with ``prefix``, in order (at most ``limit``)."""
        return list(_call(_storage.keys, str(prefix), int(limit)))

    @staticmethod
    def increment(key, delta=1):
        """Adds ``delta`` to the integer ``key`` holds (0 if none); the new value."""
        return _call(_storage.increment, str(key), int(delta))
