from twisted.application.service import ServiceMaker

tcpchat = ServiceMaker(
    "tcpchat",
    "twisted_tcpchat.tap",
    "A TCP chat server for nc, telnet, C clients and browsers.",
    "tcpchat",
)
