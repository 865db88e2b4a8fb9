"""The container healthcheck command (shared/web/healthcheck.py) against a real HTTP server."""

from __future__ import annotations

import http.server
import threading

from shared.redis_embedded import free_port
from shared.web.healthcheck import main


def test_healthcheck_command_exit_codes(tmp_path) -> None:
    """0 for a 2xx, 1 for an error status or nothing listening, 2 for a usage error."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            self.send_response(200 if self.path == "/healthz" else 503)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert main([f"{base}/healthz"]) == 0
        assert main([f"{base}/readyz"]) == 1
        assert main([f"http://127.0.0.1:{free_port()}/healthz"]) == 1
        assert main([]) == 2
    finally:
        server.shutdown()
