"""Log lines: secrets masked, JSON lines with the event's context."""

from __future__ import annotations

import logging

import orjson
import pytest

from bot.server.edge.logs import JsonFormatter, RedactSecrets, redact


def test_secrets_in_urls_are_masked() -> None:
    assert redact("/ws/ABC?password=hunter2&user_name=x") == "/ws/ABC?password=***&user_name=x"
    assert redact("GET /x?token=eyJ.a.b HTTP/1.1") == "GET /x?token=*** HTTP/1.1"


@pytest.mark.parametrize(
    ("line", "masked"),
    [
        ("/ws/ABC?pass%77ord=hunter2&user_name=x", "/ws/ABC?pass%77ord=***&user_name=x"),  # read as `password`
        ("/ws/ABC?%70assword=hunter2", "/ws/ABC?%70assword=***"),
        ("/ws/ABC?user_name=x&password=it's-a-secret&types=x", "/ws/ABC?user_name=x&password=***&types=x"),
        ("GET /x?token=a\"b'c HTTP/1.1", "GET /x?token=*** HTTP/1.1"),
        ("/ws/ABC?api%5Fkey=k1&access_token=t1", "/ws/ABC?api%5Fkey=***&access_token=***"),
        ("/ws/ABC?passwords=not-one&keyboard=x", "/ws/ABC?passwords=not-one&keyboard=x"),
    ],
)
def test_secrets_are_masked_however_their_name_is_spelled_and_whatever_they_hold(line: str, masked: str) -> None:
    """The server reads a query's names percent-decoded (`pass%77ord` is `password`) and a value up to the
    next `&`, quotes and all: the log masks the same."""
    assert redact(line) == masked


def test_a_json_line_carries_the_events_context_and_no_secret() -> None:
    args = ("spectator-1", "/ws/ABC?password=hunter2")
    record = logging.LogRecord("bot.server.live.ws", logging.ERROR, __file__, 1, "%s failed on %s", args, None)
    record.session_id = "run-1"
    RedactSecrets().filter(record)
    line = orjson.loads(JsonFormatter().format(record))
    assert line["session_id"] == "run-1" and line["level"] == "error" and line["logger"] == "bot.server.live.ws"
    assert line["message"] == "spectator-1 failed on /ws/ABC?password=***"
