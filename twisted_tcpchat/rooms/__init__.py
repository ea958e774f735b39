"""
Backends of the directory and its rooms: L{memory} (this process, the
default).  Each implements L{twisted_tcpchat.core.interfaces.IDirectory}
and L{IRoom<twisted_tcpchat.core.interfaces.IRoom>}.
"""

from twisted_tcpchat.rooms.memory import Directory, Room

__all__ = ["Directory", "Room"]
