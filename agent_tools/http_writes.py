"""One socket write per HTTP response: uvicorn's h11 protocol with a response's head sent together with its body.

uvicorn writes a response's status line and headers when the app starts the response, then its body, each with
its own `transport.write`: two send() system calls and two TCP segments for every JSON-RPC answer. On this
machine a loopback send() costs the sender the whole network stack (the receiver's wake-up included), so the
head is held back until the body's write and both go out as one; a head whose body does not follow in the same
turn of the event loop (a streamed response, an empty one the app has not finished) is sent at the end of that
turn, so nothing waits longer than the work already queued on the loop.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol


class HeadWithBody:
    """A transport that holds a response's head (`HTTP/1.1 ...\\r\\n\\r\\n`) until the next write or the end of
    the loop's turn; every other call goes to the real transport (a close or `write_eof` sends the head first,
    an abort drops it with the connection)."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._head: bytes | None = None
        self._loop = asyncio.get_running_loop()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._head is not None:
            data, self._head = self._head + bytes(data), None
        elif bytes(data[:5]) == b"HTTP/" and bytes(data[-4:]) == b"\r\n\r\n":
            self._head = bytes(data)
            self._loop.call_soon(self.flush)
            return
        self._transport.write(data)

    def writelines(self, lines: Any) -> None:
        self.write(b"".join(lines))

    def flush(self) -> None:
        """Send a held head now (nothing when none is held)."""
        if self._head is not None:
            head, self._head = self._head, None
            self._transport.write(head)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def abort(self) -> None:
        self._head = None
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class OneWriteH11Protocol(H11Protocol):
    """uvicorn's h11 protocol over `HeadWithBody` (`uvicorn.run(..., http=OneWriteH11Protocol)`)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(HeadWithBody(transport))  # type: ignore[arg-type]
