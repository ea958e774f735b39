"""
The C{tcpchat} terminal client: L{run} is the console script, L{main} the
whole program for L{twisted.internet.task.react}.

Its parts: L{wire} (pure framing and display), L{session} (its states in one
table), L{protocol} (the C{ClientFactory} adapter), L{io} (terminal and
pipes), L{main} (arguments and wiring); and, for tcpchat's typed events on a
terminal, L{events} (recognising tcpchat, parsing events, the state kept
from them), L{display} (how events are shown) and L{completion} (Tab).
"""

from twisted_tcpchat.client.main import main, run

__all__ = ["main", "run"]
