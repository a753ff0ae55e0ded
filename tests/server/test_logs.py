"""Log lines: secrets masked, JSON lines with the event's context."""

from __future__ import annotations

import logging

import orjson

from bot.server.logs import JsonFormatter, RedactSecrets, redact


def test_secrets_in_urls_are_masked() -> None:
    assert redact("/ws/ABC?password=hunter2&user_name=x") == "/ws/ABC?password=***&user_name=x"
    assert redact("GET /x?token=eyJ.a.b HTTP/1.1") == "GET /x?token=*** HTTP/1.1"


def test_a_json_line_carries_the_events_context_and_no_secret() -> None:
    args = ("spectator-1", "/ws/ABC?password=hunter2")
    record = logging.LogRecord("bot.server.ws", logging.ERROR, __file__, 1, "%s failed on %s", args, None)
    record.session_id = "run-1"
    RedactSecrets().filter(record)
    line = orjson.loads(JsonFormatter().format(record))
    assert line["session_id"] == "run-1" and line["level"] == "error" and line["logger"] == "bot.server.ws"
    assert line["message"] == "spectator-1 failed on /ws/ABC?password=***"
