"""The exports of the ``tina4:wasm/handler`` world, dispatching to the
routes the app registered with the decorators."""

import traceback

import wit_world
from wit_world.imports import tina4_wasm_types as _types

from . import (
    DECLARED_TIMERS, PRESENCE_HANDLERS, ROUTES, TIMER_HANDLERS, Connection, Request, Response,
    Tina4Error, log, run_to_completion, schedule_timer,
)

_EVENTS = {
    _types.WsEvent_Open: "open",
    _types.WsEvent_Text: "message",
    _types.WsEvent_Binary: "binary",
    _types.WsEvent_Close: "close",
}


def _error_response(status, message):
    return Response()({"error": message}, status)


class WitWorld(wit_world.WitWorld):
    def routes(self):
        # Called as the app loads: the timers it declared start now.
        while DECLARED_TIMERS:
            name, ms, repeat, once_in_cluster = DECLARED_TIMERS.pop(0)
            try:
                schedule_timer(name, ms, repeat, once_in_cluster)
            except Tina4Error as err:
                log.error(f"timer {name}: {err}")
        return [route for route, _ in ROUTES]

    def handle_http(self, route, request):
        try:
            spec, handler = ROUTES[route]
            if not isinstance(spec.kind, _types.RouteKind_Http):
                raise IndexError(route)
        except IndexError:
            log.error(f"no HTTP route {route}")
            answer = _error_response(500, "internal error")
        else:
            try:
                answer = run_to_completion(handler(Request(request), Response()))
                if not isinstance(answer, Response):
                    answer = Response()(answer)
            except Tina4Error as err:
                if err.status >= 500:
                    log.error(f"{spec.path}: {err}")
                answer = _error_response(err.status, str(err) if err.status < 500 else "internal error")
            except Exception:
                log.error(f"{spec.path}: {traceback.format_exc()}")
                answer = _error_response(500, "internal error")
        return _types.HttpResponse(status=answer.status, headers=answer.headers, body=answer.body)

    def on_websocket(self, route, conn, event):
        try:
            spec, handler = ROUTES[route]
        except IndexError:
            log.error(f"no WebSocket route {route}")
            return
        data = None if isinstance(event, _types.WsEvent_Open) else event.value
        if isinstance(event, _types.WsEvent_Close):
            data = {"code": data.code, "reason": data.reason}
        try:
            run_to_completion(handler(Connection(conn), _EVENTS[type(event)], data))
        except Exception:
            log.error(f"{spec.path}: {traceback.format_exc()}")

    def on_presence(self, route, change):
        handler = PRESENCE_HANDLERS.get(route)
        if handler is None:
            return
        said = {"path": change.path, "key": change.key, "value": change.value, "joined": change.joined}
        try:
            run_to_completion(handler(said))
        except Exception:
            log.error(f"{change.path}: {traceback.format_exc()}")

    def on_timer(self, name, tick):
        handler = TIMER_HANDLERS.get(name)
        if handler is None:
            log.warn(f"timer {name} fired, and nothing handles it")
            return
        try:
            run_to_completion(handler(tick))
        except Exception:
            log.error(f"timer {name}: {traceback.format_exc()}")
