"""Every WebSocket close code the server sends to a spectator, in one place (README: "WebSocket")."""

from __future__ import annotations

CLOSE_GOING_AWAY = 1001  # the server is shutting down
CLOSE_POLICY = 1008  # too many invalid messages
CLOSE_INTERNAL_ERROR = 1011  # a server error (logged with the session and the spectator)
CLOSE_TRY_AGAIN_LATER = 1013  # server full, or too many connections at once (a retry delay in the reason)
CLOSE_SLOW = 4008  # too slow, or not reading its replies or its join: resume with since=
CLOSE_BAD_QUERY = 4400  # a bad query parameter
CLOSE_UNAUTHORIZED = 4401  # no or bad credentials, a token that expired, a key revoked
CLOSE_FORBIDDEN = 4403  # not allowed; a room password missing or wrong
CLOSE_NOT_FOUND = 4404  # no such session
CLOSE_SESSION_DELETED = 4410
CLOSE_TOO_MANY = 4429  # session full, too many wrong passwords, over a rate limit
CLOSE_RATE_LIMITED = CLOSE_TOO_MANY
