"""
Abuse limits as pure bookkeeping: a token bucket for flood control, and
per-address admission (concurrent connections, connection rate, exempt
networks).  The time is always passed in, so tests need no clock.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import json
import os
import tempfile
from collections import deque
from collections.abc import Iterable

from twisted_tcpchat.core.names import format_idle

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Loopback, exempt by default (as ergo does): local tools and benchmarks
#: are not abusers.
LOOPBACK = ("127.0.0.0/8", "::1/128")


#: File descriptors kept back from clients: listeners, logs, stdio, and
#: whatever else the process opens (a Redis link, a TLS context file).
RESERVED_FILES = 64


def clients_for_open_files(limit: int) -> int:
    """How many clients an open-file limit leaves room for."""
    return max(1, limit - RESERVED_FILES)


def parse_networks(cidrs: Iterable[str]) -> tuple[Network, ...]:
    """
    Networks from CIDR strings (a bare address is a /32 or /128).

    @raise ValueError: naming the bad one.
    """
    networks = []
    for cidr in cidrs:
        try:
            networks.append(ipaddress.ip_network(cidr, strict=False))
        except ValueError:
            raise ValueError(f"{cidr!r} is not an IPv4 or IPv6 network (CIDR)") from None
    return tuple(networks)


class TokenBucket:
    """
    Lines a client may send: a burst at once, then a steady rate.

    @ivar rate: tokens added per second.
    @ivar burst: the most tokens held.
    """

    __slots__ = ("_at", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._at = now

    def delay(self, now: float) -> float:
        """
        Take a token if there is one (return 0), else return how many seconds
        until there will be.
        """
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        # Within rounding of a whole token is a token: otherwise the wait
        # could be too small to move a large clock value (now + wait == now),
        # and a caller waiting for it would spin.
        if self._tokens >= 1 - 1e-9:
            self._tokens = max(0.0, self._tokens - 1)
            return 0.0
        return max((1 - self._tokens) / self.rate, 1e-3)


class Admission:
    """
    Who may connect: at most C{per_address} connections at once from one
    address, and C{rate} new ones per C{window} seconds; IPv6 addresses
    count by their /64, what one host usually holds.  Exempt networks are
    never limited.  Memory is bounded by the addresses seen in the last
    C{window} seconds plus those connected.
    """

    def __init__(
        self,
        per_address: int,
        rate: int,
        window: float,
        exempt: Iterable[Network] = (),
    ) -> None:
        self.per_address = per_address
        self.rate = rate
        self.window = window
        self.exempt = tuple(exempt)
        self._open: dict[str, int] = {}
        self._recent: dict[str, deque[float]] = {}
        self._admitted = 0

    def reconfigure(
        self, per_address: int, rate: int, exempt: Iterable[Network], connected: Iterable[str]
    ) -> None:
        """
        New limits, for the connections to come (those open stay, even past
        a lower limit).  With other exempt networks, the connections open
        now (the hosts in C{connected}, one per connection) are counted
        again under them, so that each one's L{release} still matches.
        """
        self.per_address = per_address
        self.rate = rate
        exempt = tuple(exempt)
        if exempt == self.exempt:
            return
        self.exempt = exempt
        self._open = {}
        for host in connected:
            key = self.key(host)
            if key is not None:
                self._open[key] = self._open.get(key, 0) + 1

    def is_exempt(self, host: str) -> bool:
        """Whether C{host} (an IP address, or e.g. C{unix}) is never limited."""
        address = _address(host)
        if address is None:
            return True
        return any(address in network for network in self.exempt)

    def admit(self, host: str, now: float) -> tuple[str, str] | None:
        """
        Count a new connection from C{host}, or refuse it: the refusal is
        why in a word (C{per_address}, C{connect_rate}), and the line to send.
        """
        key = self.key(host)
        if key is None:
            return None
        if self._open.get(key, 0) >= self.per_address:
            return (
                "per_address",
                f"too many connections from your address (the limit is "
                f"{self.per_address}); try again later",
            )
        recent = self._recent.setdefault(key, deque())
        while recent and recent[0] <= now - self.window:
            recent.popleft()
        if len(recent) >= self.rate:
            wait = int(recent[0] + self.window - now) + 1
            return (
                "connect_rate",
                f"too many new connections from your address (the limit is "
                f"{self.rate} per {self.window:g} s); try again in {wait} s",
            )
        recent.append(now)
        self._open[key] = self._open.get(key, 0) + 1
        self._admitted += 1
        if self._admitted % 1024 == 0:
            self._forget_old(now)
        return None

    def release(self, host: str) -> None:
        """A connection that L{admit} counted has ended."""
        key = self.key(host)
        if key is None or key not in self._open:
            return
        self._open[key] -= 1
        if not self._open[key]:
            del self._open[key]

    def key(self, host: str) -> str | None:
        """What C{host} is counted as: None when exempt; an IPv6 address by its /64."""
        address = _address(host)
        if address is None or any(address in network for network in self.exempt):
            return None
        if address.version == 6:
            return str(ipaddress.ip_network(f"{address}/64", strict=False))
        return str(address)

    def _forget_old(self, now: float) -> None:
        stale = [k for k, t in self._recent.items() if not t or t[-1] <= now - self.window]
        for key in stale:
            del self._recent[key]


@functools.lru_cache(maxsize=4096)
def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    # Cached: every connection asks four times (exemption, admission,
    # --allow/--deny, bans), and clients come back from the same addresses.
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None


class AccessList:
    """
    C{--allow} and C{--deny}: with an allow list, only its networks get in;
    a denied network is refused unless it is also allowed (allow wins, as in
    ncat).
    """

    def __init__(self, allow: Iterable[Network] = (), deny: Iterable[Network] = ()) -> None:
        self.allow = tuple(allow)
        self.deny = tuple(deny)

    def permits(self, host: str) -> bool:
        """Whether a client at C{host} may connect (non-IP peers, e.g. UNIX, always may)."""
        address = _address(host)
        if address is None:
            return True
        if any(address in network for network in self.allow):
            return True
        if self.allow:
            return False
        return not any(address in network for network in self.deny)


def parse_duration(text: str) -> float:
    """
    C{90}, C{90s}, C{15m}, C{2h}, C{7d} as seconds.

    @raise ValueError: for anything else.
    """
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    number, unit = (text[:-1], text[-1]) if text[-1:] in units else (text, "s")
    if not number.isdigit() or int(number) == 0:
        raise ValueError(f"{text!r} is not a duration (like 90s, 15m, 2h, 7d)")
    return float(int(number) * units[unit])


def parse_network(text: str) -> Network | None:
    """An address or CIDR network, or None when C{text} is neither (a name)."""
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


def within(address: str, network: Network) -> bool:
    """Whether the IP address C{address} ('' for none) is in C{network}."""
    try:
        return ipaddress.ip_address(address) in network
    except ValueError:
        return False


def network_of(host: str) -> Network | None:
    """The network a ban on C{host} covers: the address, or its /64 for IPv6."""
    address = _address(host)
    if address is None:
        return None
    prefix = 64 if address.version == 6 else 32
    return ipaddress.ip_network(f"{address}/{prefix}", strict=False)


class Bans:
    """
    Banned networks, each until a time or until lifted.  In memory only (a
    restart lifts them), or kept in a file (C{path}), read at the start and
    written again, atomically, at each change.
    """

    def __init__(self, path: str | None = None, now: float = 0.0) -> None:
        self._until: dict[Network, float | None] = {}
        self.path = path
        if path is not None and os.path.exists(path):
            for network, until in _read_bans(path):
                if until is None or until > now:
                    self._until[network] = until

    def add(self, network: Network, until: float | None) -> None:
        self._until[network] = until
        self._save()

    def remove(self, network: Network) -> bool:
        removed = self._until.pop(network, False) is not False
        if removed:
            self._save()
        return removed

    def _save(self) -> None:
        """Write the bans to the file, if any: a new file renamed over the old."""
        if self.path is None:
            return
        bans = [{"network": str(network), "until": until} for network, until in self._until.items()]
        directory = os.path.dirname(os.path.abspath(self.path))
        fd, temporary = tempfile.mkstemp(prefix=".bans-", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(bans, out, indent=1)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise

    def ban_on(self, host: str, now: float) -> tuple[Network, float | None] | None:
        """The ban that covers C{host} now, if any, as (network, until)."""
        address = _address(host)
        if address is None:
            return None
        for network, until in list(self._until.items()):
            if until is not None and until <= now:
                del self._until[network]
            elif address in network:
                return network, until
        return None

    def listing(self, now: float) -> list[tuple[Network, float | None]]:
        """The bans in force, for /bans."""
        return [
            (network, until)
            for network, until in self._until.items()
            if until is None or until > now
        ]

    def refusal(self, host: str, now: float, for_good: str) -> str | None:
        """
        What a client at C{host} is told when banned (None when not): for
        how long, or C{for_good} for a ban without end.
        """
        ban = self.ban_on(host, now)
        if ban is None:
            return None
        _network, until = ban
        if until is None:
            return f"your address is banned{for_good}"
        return f"your address is banned for another {format_idle(until - now)}"

    def report(self, now: float, for_good: str) -> list[str]:
        """The bans in force, as lines for an operator: how many, then each and how long."""
        bans = self.listing(now)
        lines = [f"{len(bans)} {'ban' if len(bans) == 1 else 'bans'}"]
        for network, until in bans:
            left = for_good if until is None else f"{format_idle(until - now)} left"
            lines.append(f"  {network} ({left})")
        return lines


def _read_bans(path: str) -> list[tuple[Network, float | None]]:
    """
    The bans kept in the file at C{path}; ValueError, in one line, for a
    file that cannot be read or is not such a list.
    """
    try:
        with open(path, encoding="utf-8") as kept:
            entries = json.load(kept)
        bans = []
        for entry in entries:
            until = entry["until"]
            if until is not None and not isinstance(until, (int, float)):
                raise TypeError("until")
            network = ipaddress.ip_network(str(entry["network"]), strict=False)
            bans.append((network, None if until is None else float(until)))
    except OSError as e:
        raise ValueError(f"ban-file: cannot read {path!r}: {e.strerror or e}") from None
    except (ValueError, TypeError, KeyError) as e:
        raise ValueError(
            f"ban-file: {path!r} is not a list of bans written by tcpchat ({type(e).__name__})"
        ) from None
    return bans
