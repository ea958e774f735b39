"""
The chat itself, independent of any wire: what participants hear
(L{events}), the interfaces between sessions, directory and rooms
(L{interfaces}), one client's session (L{session}) with its flood pacing
(L{pacing}) and login (L{login}), the commands (L{commands}), abuse limits
(L{limits}), names (L{names}), the settings (L{config}), and the server that
admits clients (L{server}).
"""
