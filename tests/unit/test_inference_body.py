"""Reading a request body straight from gunicorn's socket (`inference_service.decoders.media`):
the same bytes as gunicorn's own ``Body.read``, whatever gunicorn had already buffered, and the
connection left where gunicorn expects it (body consumed, a pipelined request kept)."""

from __future__ import annotations

import socket
import threading

import pytest
from gunicorn.http.body import Body, LengthReader
from gunicorn.http.unreader import SocketUnreader

from inference_service.decoders import read_body
from inference_service.decoders.media import _is_gunicorn_body
from shared.web.errors import ApiError

BODY = bytes(range(256)) * 4096 + b"tail"  # 1 MiB and a bit: many recv() calls
NEXT = b"POST /next HTTP/1.1\r\n\r\n"


class Peer:
    """The client's end: sends `data` from a thread; `close` waits for it, then closes both
    ends."""

    def __init__(self, ours: socket.socket, sock: socket.socket, data: bytes) -> None:
        self.ours, self.sock = ours, sock
        self.sender = threading.Thread(target=sock.sendall, args=(data,), daemon=True)
        self.sender.start()

    def shutdown(self, how: int) -> None:
        self.sock.shutdown(how)

    def close(self) -> None:
        self.sender.join(timeout=10)
        self.sock.close()
        self.ours.close()


def gunicorn_body(sent: bytes, length: int, buffered: int) -> tuple[Body, Peer]:
    """gunicorn's body reader for a `length`-byte body of which the worker already holds
    `buffered` bytes (read with the headers), the rest of `sent` still in the socket."""
    ours, peer = socket.socketpair()
    unreader = SocketUnreader(ours)
    unreader.unread(sent[:buffered])
    return Body(LengthReader(unreader, length)), Peer(ours, peer, sent[buffered:])


@pytest.mark.parametrize("buffered", [0, 100, len(BODY), len(BODY) + len(NEXT)])
def test_a_body_is_read_whole_and_a_pipelined_request_is_kept(buffered: int) -> None:
    stream, peer = gunicorn_body(BODY + NEXT, len(BODY), buffered)
    environ = {"CONTENT_LENGTH": str(len(BODY)), "wsgi.input": stream}
    assert _is_gunicorn_body(stream, len(BODY))  # the socket path, not gunicorn's Body.read
    assert read_body(environ, limit=10 * len(BODY)) == BODY
    assert stream.reader.length == 0
    assert stream.read(10) == b""  # gunicorn sees the body consumed (keep-alive goes on)
    assert stream.reader.unreader.read(len(NEXT)) == NEXT  # the next request is intact
    peer.close()


def test_a_body_cut_short_is_a_400_naming_what_arrived() -> None:
    stream, peer = gunicorn_body(BODY[:5000], len(BODY), 1000)
    threading.Timer(0.2, peer.shutdown, args=(socket.SHUT_WR,)).start()
    environ = {"CONTENT_LENGTH": str(len(BODY)), "wsgi.input": stream}
    with pytest.raises(ApiError) as err:
        read_body(environ, limit=10 * len(BODY))
    assert err.value.status == 400
    assert f"after 5000 of {len(BODY)} bytes" in str(err.value)
    peer.close()


def test_a_body_partly_read_already_goes_through_gunicorn() -> None:
    stream, peer = gunicorn_body(BODY, len(BODY), 0)
    head = stream.read(10)
    assert not _is_gunicorn_body(stream, len(BODY) - 10)
    rest = read_body({"CONTENT_LENGTH": str(len(BODY) - 10), "wsgi.input": stream}, 10 * len(BODY))
    assert head + rest == BODY
    peer.close()
