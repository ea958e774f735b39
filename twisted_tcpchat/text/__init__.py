"""
The text of the wire, as pure functions and small pure classes: framing
bytes into lines (L{framing}), decoding them (L{encodings}), making text
safe to show (L{escaping}), and the operator's templates (L{templates}).

Nothing here touches a transport, a reactor or a clock; front ends and
tests both use it.
"""
