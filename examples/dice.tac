# A dice bot on tcpchat: twistd -ny dice.tac, then /roll or /roll 20 in any room.
import random

from twisted.application.service import Application

from twisted_tcpchat import Bot, Command, Context, Event, Origin, Presence, make_service

service = make_service(["tcp:65432"])
dice = Bot(service.directory, "dice")
dice.start()


def roll(context: Context, argument: str) -> None:
    sides = int(argument) if argument.isdigit() and 2 <= int(argument) <= 1000 else 6
    throw = f"{context.name} rolls {random.randint(1, sides)} (1-{sides})"
    context.directory.notice(context.room, throw, sender=dice.name)


def welcome(event: Event, origin: Origin) -> None:
    if isinstance(event, Presence) and event.change == Presence.JOINED and event.room == dice.room:
        dice.say(f"welcome, {event.name}! /roll throws a die")


service.commands.add(Command("roll", roll, "/roll [SIDES]", "throw a die for the room"))
service.directory.add_observer(welcome)
application = Application("tcpchat")
service.setServiceParent(application)
