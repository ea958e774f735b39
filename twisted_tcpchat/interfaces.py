"""
The small interfaces that keep the chat logic apart from Twisted's wire.
"""

from __future__ import annotations

from zope.interface import Interface


class IConnection(Interface):
    """
    One client's link, as the chat logic sees it: lines out, and a close.

    L{twisted_tcpchat.protocol.ChatProtocol} provides it over TCP; tests
    provide it with a recording fake.
    """

    def send_line(text: str) -> None:
        """Send one line of text (made safe to show, encoded, terminated)."""

    def close() -> None:
        """
        Close after what was sent is flushed; a peer that does not take it
        within the grace time is cut off.  Sending after this does nothing.
        """
