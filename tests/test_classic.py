"""
--classic with the tutorials' lockstep client, compiled here: it reads the
greeting, then for each line typed sends it and reads one small chunk (50
bytes) as the answer.  Against the room it falls behind (the welcome,
history and presence overflow its chunk, and the room never answers a
sender); against --classic it stays in step, answered by an acknowledgement
or by what the operator types at the console.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import Process, compile_c, start_twistd
from twisted_tcpchat.core.config import DEFAULT_GREETING

LOCKSTEP_CLIENT = r"""
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* The tutorials' two-way client: one message out, one 50-byte read in. */
int main(int argc, char **argv) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {0};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(atoi(argv[1]));
    inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    if (connect(s, (struct sockaddr *)&addr, sizeof addr) < 0) { perror("connect"); return 1; }
    char buf[51], line[256];
    int n = recv(s, buf, 50, 0);
    if (n <= 0) return 1;
    buf[n] = 0;
    printf("greeting: %s", buf);
    fflush(stdout);
    while (fgets(line, sizeof line, stdin)) {
        send(s, line, strlen(line), 0);
        n = recv(s, buf, 50, 0);
        if (n <= 0) break;
        buf[n] = 0;
        printf("answer: %s", buf);
        fflush(stdout);
    }
    close(s);
    return 0;
}
"""


@pytest.fixture(scope="module")
def lockstep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_c(LOCKSTEP_CLIENT, tmp_path_factory.mktemp("c"), "lockstep")


def answers(client: Process) -> list[str]:
    return [line for line in client.lines if line.startswith(("greeting:", "answer:"))]


def test_lockstep_client_stays_in_step_with_classic(lockstep: Path, tmp_path: Path) -> None:
    """Every message gets one answer that fits the client's chunk, for two clients at once."""
    server, port = start_twistd(tmp_path, "--classic")
    clients = [Process([str(lockstep), str(port)], tmp_path, stdin=True) for _ in range(2)]
    try:
        for client in clients:
            client.wait_for_output("greeting: ")
        for word in ("hello", "你好", "a longer message of several words", "exit"):
            for client in clients:
                client.send(word)
        for client in clients:
            client.close_stdin()
            assert client.wait() == 0
            assert answers(client) == [
                f"greeting: {DEFAULT_GREETING}",
                "answer: Received 5 bytes",
                "answer: Received 6 bytes",
                "answer: Received 33 bytes",
                "answer: Goodbye.",
            ]
        server.wait_for_output(r"127\.0\.0\.1:\d+ sent 33 bytes: a longer message of several words")
    finally:
        for client in clients:
            client.stop()
        server.stop()


def test_the_operator_answers_at_the_console(lockstep: Path, tmp_path: Path) -> None:
    """With --console, what the operator types is the answer, oldest message first."""
    server, port = start_twistd(tmp_path, "--classic", "--console", stdin=True)
    client = Process([str(lockstep), str(port)], tmp_path, stdin=True)
    try:
        server.wait_for_output("answers the oldest message")
        client.wait_for_output("greeting: ")
        client.send("what time is it?")
        server.wait_for_output(r"<127\.0\.0\.1:\d+> what time is it\?")
        server.send("tea time")
        client.wait_for_output("answer: tea time")
        client.send("thanks")
        server.wait_for_output(r"<127\.0\.0\.1:\d+> thanks")
        server.send("you are welcome")
        client.wait_for_output("answer: you are welcome")
        assert answers(client) == [
            f"greeting: {DEFAULT_GREETING}",
            "answer: tea time",
            "answer: you are welcome",
        ]
    finally:
        client.stop()
        server.stop()


def test_the_room_is_not_for_lockstep_clients(lockstep: Path, tmp_path: Path) -> None:
    """
    Why --classic exists: in the room, the first answer the lockstep client
    reads is the rest of its welcome, not an answer to what it said.
    """
    server, port = start_twistd(tmp_path)
    client = Process([str(lockstep), str(port)], tmp_path, stdin=True)
    try:
        client.wait_for_output("greeting: ")
        client.send("hello")
        client.close_stdin()
        assert client.wait() == 0
        answer = client.output.partition("answer: ")[2]
        assert answer, client.output
        assert "Received" not in answer, answer
        assert "hello" not in answer, answer
    finally:
        client.stop()
        server.stop()
