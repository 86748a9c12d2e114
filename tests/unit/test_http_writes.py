"""One socket write per HTTP response (`agent_tools.http_writes`): a response's head goes out with its body."""

from __future__ import annotations

import asyncio

import h11

from agent_tools.http_writes import HeadWithBody


class Wire:
    """A transport that records each write (what would be one send() system call)."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data) -> None:
        if data:
            self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default=None):
        return ("127.0.0.1", 8765) if name == "sockname" else default


def _head_and_body(body: bytes) -> tuple[bytes, bytes]:
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(b"POST /mcp HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n")
    conn.next_event()
    head = conn.send(h11.Response(status_code=200, headers=[("content-length", str(len(body)))]))
    return head, conn.send(h11.Data(data=body))


async def test_a_response_head_and_body_go_out_in_one_write():
    wire = Wire()
    t = HeadWithBody(wire)
    head, body = _head_and_body(b'{"jsonrpc":"2.0","id":1,"result":{}}')
    t.write(head)
    assert wire.writes == []  # held for the body
    t.write(body)
    t.write(b"")  # h11's end of a message with a length
    assert wire.writes == [head + body]
    await asyncio.sleep(0)
    assert wire.writes == [head + body]  # nothing sent twice
    assert t.get_extra_info("sockname") == ("127.0.0.1", 8765)  # the rest is the real transport's


async def test_a_head_without_its_body_in_the_same_turn_is_sent_at_the_end_of_it():
    wire = Wire()
    t = HeadWithBody(wire)
    head, body = _head_and_body(b"data: x\n\n")
    t.write(head)
    await asyncio.sleep(0)  # the loop's turn ends: e.g. a streamed response's first event is not ready yet
    assert wire.writes == [head]
    t.write(body)
    assert wire.writes == [head, body]


async def test_closing_sends_a_held_head_first_and_other_writes_pass_through():
    wire = Wire()
    t = HeadWithBody(wire)
    t.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    t.close()
    assert wire.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"] and wire.closed
    other = Wire()
    HeadWithBody(other).write(b"not a head")
    assert other.writes == [b"not a head"]
