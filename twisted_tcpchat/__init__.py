"""
tcpchat: a chat server for nc, telnet, C clients and the tcpchat client,
built on Twisted.

Embed the server with L{make_service} (a C{.tac} file or your own
application), or use L{ChatFactory} with any listening endpoint.  Watch the
chat with L{ChatService.directory}'s observers, take part with a L{Bot},
and add slash commands with L{Command}.
"""

from twisted_tcpchat.core.bot import Bot
from twisted_tcpchat.core.commands import Command, Commands, Context
from twisted_tcpchat.core.config import ChatConfig
from twisted_tcpchat.core.events import (
    Action,
    Error,
    Event,
    Help,
    History,
    Identity,
    MemberInfo,
    Members,
    Message,
    Notice,
    Presence,
    Private,
    RoomInfo,
    Rooms,
    Text,
    Topic,
    Whois,
)
from twisted_tcpchat.core.interfaces import (
    ChatObserver,
    IConnection,
    IDirectory,
    IParticipant,
    IRoom,
    Origin,
)
from twisted_tcpchat.core.server import ChatServer
from twisted_tcpchat.frontends.tcp import ChatFactory, ChatProtocol
from twisted_tcpchat.rooms.memory import Directory, Room
from twisted_tcpchat.service import ChatService, ListenError, make_service

__version__ = "0.2.0"

__all__ = [
    "Action",
    "Bot",
    "ChatConfig",
    "ChatFactory",
    "ChatObserver",
    "ChatProtocol",
    "ChatServer",
    "ChatService",
    "Command",
    "Commands",
    "Context",
    "Directory",
    "Error",
    "Event",
    "Help",
    "History",
    "IConnection",
    "IDirectory",
    "IParticipant",
    "IRoom",
    "Identity",
    "ListenError",
    "MemberInfo",
    "Members",
    "Message",
    "Notice",
    "Origin",
    "Presence",
    "Private",
    "Room",
    "RoomInfo",
    "Rooms",
    "Text",
    "Topic",
    "Whois",
    "__version__",
    "make_service",
]
