"""
tcpchat: a TCP chat server and client built on Twisted.

Embed the server with L{make_service} (a C{.tac} file or your own
application), or use L{ChatFactory} with any listening endpoint.
"""

from twisted_tcpchat.config import ChatConfig
from twisted_tcpchat.protocol import ChatFactory, ChatProtocol
from twisted_tcpchat.service import ChatService, ListenError, make_service

__version__ = "0.1.0"

__all__ = [
    "ChatConfig",
    "ChatFactory",
    "ChatProtocol",
    "ChatService",
    "ListenError",
    "__version__",
    "make_service",
]
