"""
C{/health}, on the web port and on the metrics port: what a load balancer
or a service manager asks (no library needed beyond twisted.web).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from twisted.web.resource import Resource
from twisted.web.server import Request

if TYPE_CHECKING:
    from twisted_tcpchat.core.server import ChatServer


class HealthPage(Resource):
    """
    C{/health}, for a load balancer or a service manager: 200 and C{ready}
    true when the server can serve, 503 when not (its Redis lost), with the
    number of clients and the directory's own state (Redis's, with
    C{--redis}).  Asking costs nobody anything and is never a chat client.
    """

    isLeaf = True

    def __init__(self, chat: ChatServer) -> None:
        super().__init__()
        self.chat = chat

    def render_GET(self, request: Request) -> bytes:
        report: dict[str, Any] = {"live": True, "ready": True}
        health = getattr(self.chat.directory, "health", None)
        if health is not None:
            report.update(health())
        report["clients"] = self.chat.client_count
        request.setResponseCode(200 if report["ready"] else 503)
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        return json.dumps(report).encode("utf-8")
