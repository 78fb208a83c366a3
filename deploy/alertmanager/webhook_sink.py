"""A placeholder Alertmanager webhook receiver: log each notification, one line per alert.

Run by the ``alert-sink`` service of docker-compose.yml (``python webhook_sink.py [PORT]``,
stdlib only). Alertmanager posts its webhook payload
(https://prometheus.io/docs/alerting/latest/configuration/#webhook_config) to
``/<receiver>``; each alert becomes one line on stdout::

    alert receiver=warning status=firing alertname=ForexdFeedStale severity=warning
    symbol=EURUSD summary="No tick for EURUSD for more than 5 minutes ..."

``GET /`` answers ``ok`` (the health check). Replace this service with a real receiver
(chat, paging, e-mail) in deploy/alertmanager/alertmanager.yml.
"""

from __future__ import annotations

import json
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

MAX_BODY = 1 << 20  # Alertmanager's payloads are a few KiB; refuse anything absurd


def format_alerts(receiver: str, payload: dict[str, Any]) -> list[str]:
    """Return one log line per alert of a webhook ``payload``."""
    lines = []
    for alert in payload.get("alerts", []):
        labels = dict(alert.get("labels", {}))
        parts = [f"receiver={receiver}", f"status={alert.get('status', payload.get('status', '?'))}",
                 f"alertname={labels.pop('alertname', '?')}", f"severity={labels.pop('severity', '?')}"]
        parts += [f"{k}={v}" for k, v in sorted(labels.items())]
        parts.append(f"summary={json.dumps(alert.get('annotations', {}).get('summary', ''))}")
        lines.append("alert " + " ".join(parts))
    return lines


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        self._answer(200, b"ok\n")

    def do_POST(self) -> None:  # noqa: N802 - the http.server API
        size = int(self.headers.get("Content-Length") or 0)
        if not 0 < size <= MAX_BODY:
            self._answer(413 if size else 400, b"bad length\n")
            return
        try:
            payload = json.loads(self.rfile.read(size))
        except ValueError:
            self._answer(400, b"not JSON\n")
            return
        for line in format_alerts(self.path.strip("/") or "default", payload):
            print(line, flush=True)
        self._answer(200, b"ok\n")

    def _answer(self, code: int, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the http.server API
        pass  # one line per alert is the log; no access log


def main(argv: list[str]) -> None:
    port = int(argv[1]) if len(argv) > 1 else 9095
    server = HTTPServer(("0.0.0.0", port), _Handler)  # noqa: S104 - inside the compose network only
    print(f"alert-sink listening port={port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv)
