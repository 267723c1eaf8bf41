"""A header-read timeout for uvicorn: a request line and headers not complete within
CACHEDMODEL_HEADER_TIMEOUT_SECONDS (default 10) are answered 408 and the connection is closed.

uvicorn has no such timeout: a client sending its headers a byte a second (slowloris) holds a
connection for as long as it likes, and its keep-alive timeout is cancelled by every byte. The body
has its own deadline (cachedmodel.service.limits); this is the phase before it, so it lives in the
HTTP protocol: `header_timeout_protocol(seconds)` is a subclass of uvicorn's protocol (httptools, or
h11 where httptools is missing, as uvicorn's "auto" picks) for uvicorn's `http=` option, which
`python -m cachedmodel.service` passes.

- One timer per connection while a head is being read: armed at connect (a client that connects and
  sends nothing is closed, without an answer, like uvicorn's idle keep-alive connections), and on a
  keep-alive connection when bytes of a next request arrive; cancelled as soon as the headers are
  complete. So a new connection costs one timer (armed, then cancelled by its first head), and a
  head that arrives in one read on a kept-alive connection (every ordinary request) none: the cost
  on the request path is a few attribute reads and three thin callback overrides (no difference
  measurable against uvicorn's own protocol, ~35 us per request through it).
- Only the head is timed: once the headers are complete the body has its own deadline and the
  model takes as long as it takes. While a response is still being made on the connection
  (pipelining), the next head waits for us, not for the client: the timer looks again later.
- Idle keep-alive connections stay uvicorn's business (its keep-alive timeout, 5 s).
"""
from __future__ import annotations

import asyncio

from cachedmodel.service.limits import DEFAULT_HEADER_TIMEOUT_SECONDS, error_body

try:  # uvicorn's "auto": httptools when it is installed (the image has it), else h11
    import httptools  # noqa: F401
except ImportError:  # pragma: no cover - the image and the dev environment have httptools
    from uvicorn.protocols.http.h11_impl import H11Protocol as _Base
    _HTTPTOOLS = False
else:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _Base
    _HTTPTOOLS = True


# Draining (after SIGTERM, see cachedmodel.service.__main__): every request still read is answered, with
# `connection: close`, so that a keep-alive client moves to another pod after an answer instead of
# finding its connection closed under a request it just sent ("Server disconnected").
DRAINING = False


def start_draining() -> None:
    global DRAINING
    DRAINING = True


def _answer_408(protocol, seconds: float) -> bytes:
    payload = error_body("RequestTimeout", f"request headers not received within {seconds:g} seconds")
    head = [b"HTTP/1.1 408 Request Timeout\r\n"]
    for name, value in protocol.server_state.default_headers:
        head += [name, b": ", value, b"\r\n"]
    head += [b"content-type: application/json\r\ncontent-length: ", str(len(payload)).encode(),
             b"\r\nconnection: close\r\n\r\n", payload]
    return b"".join(head)


class _HeaderTimeout:
    """The timer, common to both parsers; `_head_pending()` (after a read) says whether a head is
    incomplete, `_head_started` whether any byte of one arrived."""

    header_timeout: float = DEFAULT_HEADER_TIMEOUT_SECONDS
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:
        super().connection_made(transport)  # the parser's protocol (next in the MRO)
        self._arm()

    def connection_lost(self, exc) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._head_timer = self.loop.call_later(self.header_timeout, self._head_timed_out)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _after_read(self) -> None:
        if DRAINING and self.cycle is not None and not self.cycle.response_started:
            self.cycle.keep_alive = False  # answered with `connection: close`, then closed
        if self._head_pending() and not self.transport.is_closing():
            if self._head_timer is None:
                self._arm()
        elif self._head_timer is not None:
            self._disarm()

    def _head_timed_out(self) -> None:
        self._head_timer = None
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        cycle = self.cycle
        if (cycle is not None and not cycle.response_complete) or getattr(self, "pipeline", None):
            self._arm()  # a response is still being made here: reading the next head waits for it
            return
        if self._head_started:
            transport.write(_answer_408(self, self.header_timeout))
        transport.close()


if _HTTPTOOLS:
    class HeaderTimeoutProtocol(_HeaderTimeout, _Base):
        """uvicorn's httptools protocol with a header-read timeout. The parser's callbacks say where a
        read left the parser: `_reading_head` (between on_message_complete and on_headers_complete),
        `_head_started` (on_message_begin of that next message), `_heads` (headers completed)."""

        _reading_head = True
        _head_started = False
        _heads = 0
        _data_in_head = False

        def data_received(self, data: bytes) -> None:
            in_head, heads = self._reading_head, self._heads
            _Base.data_received(self, data)
            self._data_in_head = in_head and self._heads == heads
            self._after_read()

        def _head_pending(self) -> bool:
            # bytes of a head arrived and no headers completed since (leading blank lines count), or a
            # read that finished a message went on into the next one
            return self._reading_head and (self._head_started or self._data_in_head)

        def on_message_begin(self) -> None:
            self._head_started = True
            _Base.on_message_begin(self)

        def on_headers_complete(self) -> None:
            self._reading_head = False
            self._heads += 1
            _Base.on_headers_complete(self)

        def on_message_complete(self) -> None:
            self._reading_head, self._head_started = True, False
            _Base.on_message_complete(self)
else:  # pragma: no cover
    import h11

    class HeaderTimeoutProtocol(_HeaderTimeout, _Base):
        """uvicorn's h11 protocol with a header-read timeout: h11 says where it is itself."""

        def data_received(self, data: bytes) -> None:
            _Base.data_received(self, data)
            self._after_read()

        def _head_pending(self) -> bool:
            return self.conn.their_state is h11.IDLE and bool(self.conn.trailing_data[0])

        @property
        def _head_started(self) -> bool:
            return self.conn.their_state is h11.IDLE and bool(self.conn.trailing_data[0].strip())


def header_timeout_protocol(seconds: float) -> type:
    """The protocol class for uvicorn's `http=` option, with a header-read timeout of `seconds`."""
    return type("HeaderTimeoutProtocol", (HeaderTimeoutProtocol,), {"header_timeout": seconds,
                                                                    "__module__": __name__})
