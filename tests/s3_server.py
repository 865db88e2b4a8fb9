"""A real S3 endpoint for the tests, in a process of its own.

``python -m tests.s3_server serve PORT [HOST]``: moto's S3 server app (the one
``python -m moto.server`` runs) on HOST:PORT (127.0.0.1 unless given: benchmarks/cluster.py gives
a network namespace's address), under werkzeug's threaded server, one request at a time.
Serialising matters: moto checks ``If-Match`` / ``If-None-Match`` and then stores, with no lock,
so two concurrent conditional writes could both pass its check; S3 makes each conditional write
atomic, and the lock gives moto the same semantics (tests/integration/test_registry_s3.py checks
that it honours the conditions: a stale ``If-Match`` is a 412).

``python -m tests.s3_server proxy PORT TARGET_PORT``: a plain TCP forwarder from 127.0.0.1:PORT to
the server. Stopping it makes the store unreachable (connection refused) while the data lives on
in the server; starting it again on the same port is the store coming back.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading


def serve(port: int, host: str = "127.0.0.1") -> None:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from moto.server import MotoRequestHandler
    from werkzeug.serving import run_simple

    app = DomainDispatcherApplication(create_backend_app)
    lock = threading.Lock()

    def one_at_a_time(environ, start_response):  # noqa: ANN001, ANN202
        with lock:
            return list(app(environ, start_response))

    run_simple(host, port, one_at_a_time, threaded=True, request_handler=MotoRequestHandler)


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


def proxy(port: int, target: int) -> None:
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(64)
    while True:
        client, _ = listener.accept()
        try:
            upstream = socket.create_connection(("127.0.0.1", target), timeout=5)
        except OSError:
            client.close()
            continue
        upstream.settimeout(None)
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=_pipe, args=(a, b), daemon=True).start()


if __name__ == "__main__":
    mode, *ports = sys.argv[1:]
    if mode == "serve":
        serve(int(ports[0]), *ports[1:2])
    elif mode == "proxy":
        proxy(int(ports[0]), int(ports[1]))
    else:
        raise SystemExit(f"usage: {sys.argv[0]} serve PORT [HOST] | proxy PORT TARGET_PORT")
