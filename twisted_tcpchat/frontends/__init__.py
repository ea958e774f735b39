"""
Front ends: how clients reach the chat.  L{tcp} (plain TCP, TLS and UNIX
sockets: C{nc}, C{telnet}, C tutorials' clients, the C{tcpchat} client),
L{tls} (hardening of TLS listeners), L{console} (the operator's terminal),
and L{render} (events as the lines a person reads).
"""
