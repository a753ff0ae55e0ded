"""The built-in spectator pages: plain HTML, CSS and JavaScript shipped in the package (no CDN, no build).

Every file is read into memory when the app is built (about 3 MB, most of it Swagger UI and ReDoc) and
served from there. A running
server then never opens the package's files again, so it keeps serving its pages when the installed copy
is replaced or removed under it: `pip install -r requirements-dev.txt` after `pip install . && bot serve`
reinstalls the package editable, which deletes the site-packages copy the server was started from.
"""

from __future__ import annotations

import hashlib
import mimetypes
import re
from dataclasses import dataclass
from email.utils import formatdate, parsedate
from pathlib import Path

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse, Response

from bot.server.api.bodies import echoed

STATIC = Path(__file__).resolve().parent.parent / "web" / "static"
PAGES = {
    "/": "index.html",
    "/sessions/{key}": "session.html",
    "/compare": "compare.html",
    "/favicon.ico": "favicon.svg",  # asked for by browsers whatever a page says; an SVG, which they take
}


@dataclass(frozen=True)
class Asset:
    """One static file as it was at start-up: its bytes and the headers that describe them."""

    body: bytes
    media_type: str
    etag: str  # of the content, so every instance behind a load balancer gives a file the same one
    last_modified: str


INLINED = re.compile(rb'<script src="/static/([\w.-]+)" data-inline></script>')


def inline_scripts(page: bytes, directory: Path) -> bytes:
    """A page's `<script src=... data-inline>` replaced by the script itself: the session page's first script
    asks for the charts' history, and inlined it asks one round trip sooner (the file stays the source)."""
    return INLINED.sub(lambda m: b"<script>\n" + (directory / m[1].decode()).read_bytes() + b"</script>", page)


def load_assets(directory: Path) -> dict[str, Asset]:
    """Every file under `directory` by its path relative to it ("vendor/uPlot.min.css"), read now."""
    assets = {}
    for path in sorted(directory.rglob("*")):
        if not path.is_file():
            continue
        body = path.read_bytes()
        if path.suffix == ".html":
            body = inline_scripts(body, directory)
        assets[path.relative_to(directory).as_posix()] = Asset(
            body=body,
            media_type=mimetypes.guess_type(path.name)[0] or "text/plain",
            etag=f'"{hashlib.md5(body, usedforsecurity=False).hexdigest()}"',
            last_modified=formatdate(path.stat().st_mtime, usegmt=True),
        )
    return assets


def asset_response(asset: Asset, request: Request) -> Response:
    """The file, or 304 when the browser's copy is current (If-None-Match, else If-Modified-Since)."""
    headers = {"etag": asset.etag, "last-modified": asset.last_modified}
    if _not_modified(asset, request):
        return Response(status_code=304, headers={"etag": asset.etag})
    body = b"" if request.method == "HEAD" else asset.body
    response = Response(body, media_type=asset.media_type, headers=headers)
    response.headers["content-length"] = str(len(asset.body))
    return response


def _not_modified(asset: Asset, request: Request) -> bool:
    """The same test as Starlette's StaticFiles, which served these files before."""
    if if_none_match := request.headers.get("if-none-match"):
        tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
        return if_none_match.strip() == "*" or asset.etag in tags
    since = parsedate(request.headers.get("if-modified-since", ""))
    modified = parsedate(asset.last_modified)
    return since is not None and modified is not None and since >= modified


def pages_router(assets: dict[str, Asset]) -> APIRouter:
    """The pages (`/`, `/sessions/{key}`, `/compare`), the icon and `/static/...`, all from `assets`."""
    router = APIRouter(include_in_schema=False)

    def page(route: str, name: str) -> None:
        async def serve(request: Request) -> Response:
            return asset_response(assets[name], request)

        router.add_api_route(route, serve, methods=["GET", "HEAD"])

    for route, name in PAGES.items():  # a session page's `key` is a session id or a room code
        page(route, name)

    @router.api_route("/static/{path:path}", methods=["GET", "HEAD"])
    async def static(path: str, request: Request) -> Response:
        asset = assets.get(path)
        if asset is None:
            raise HTTPException(404, f"no static file {echoed(path)!r}")
        return asset_response(asset, request)

    return router


def mount_pages(app: FastAPI, directory: Path = STATIC) -> None:
    """Read the static files now, and serve the pages from memory for the life of the app."""
    app.include_router(pages_router(load_assets(directory)))


DOCS = "/docs"
REDOC = "/redoc"
SWAGGER = "/static/vendor/swagger-ui"  # swagger-ui-dist 5 (npm), vendored like uPlot: bundle, css, icon, licence


def mount_docs(app: FastAPI) -> None:
    """`/docs` (Swagger UI) and `/redoc` (ReDoc) from this package's own files: FastAPI's load them from a CDN,
    so an offline machine (or one whose browser may not reach the CDN) got a blank page. The app is made with
    docs_url=None and redoc_url=None."""

    @app.get(DOCS, include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=f"{DOCS}/oauth2-redirect",
            swagger_js_url=f"{SWAGGER}-bundle.js",
            swagger_css_url=f"{SWAGGER}.css",
            swagger_favicon_url=f"{SWAGGER}-favicon-32x32.png",
        )

    @app.get(REDOC, include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} - ReDoc",
            redoc_js_url="/static/vendor/redoc.standalone.js",  # redoc 2.5.0 (npm), MIT
            redoc_favicon_url="/static/favicon.svg",
            with_google_fonts=False,
        )

    @app.get(f"{DOCS}/oauth2-redirect", include_in_schema=False)
    async def oauth2_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()
