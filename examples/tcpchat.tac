# Run with: twistd -ny tcpchat.tac
from twisted.application.service import Application

from twisted_tcpchat import ChatConfig, make_service

application = Application("tcpchat")
config = ChatConfig(greeting="welcome {peer} to the chat")
make_service(["tcp:65432"], config).setServiceParent(application)
