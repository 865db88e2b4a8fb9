"""``python -m shared.web.healthcheck URL``: exit 0 when URL answers 2xx within 4 s, else 1.

The container healthcheck of both web services. It is a module, not ``python -c "<script>"``,
because podman splits an exec-form healthcheck's arguments on spaces (a ``-c`` script with spaces
never runs there), and the slim image has no curl: every argument here is one word, so Docker and
podman run it alike.
"""

from __future__ import annotations

import sys
import urllib.request

TIMEOUT_SECONDS = 4.0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m shared.web.healthcheck URL", file=sys.stderr)
        return 2
    try:
        with urllib.request.urlopen(args[0], timeout=TIMEOUT_SECONDS) as response:
            ok = 200 <= response.status < 300
    except (OSError, ValueError) as exc:  # URLError (HTTPError too) is an OSError
        print(f"unhealthy: {args[0]}: {exc}", file=sys.stderr)
        return 1
    if not ok:
        print(f"unhealthy: {args[0]}: HTTP {response.status}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
