"""A response body sent as the pieces it was made of.

A history page of 100,000 messages is about 20 MB, read from the database in a few chunks. Joining them
into one bytes object, and that again with the page's head, cost as much here as reading them: each piece
goes to the ASGI server as it is, and the client receives the same bytes.
"""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import Response
from starlette.types import Receive, Scope, Send


class PiecesResponse(Response):
    def __init__(self, pieces: Sequence[bytes], media_type: str = "application/json") -> None:
        super().__init__(media_type=media_type)
        self.pieces = pieces
        self.headers["content-length"] = str(sum(len(piece) for piece in pieces))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        for piece in self.pieces:
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
