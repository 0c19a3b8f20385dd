"""The investigator's console: a static web page served at ``/console/`` (the files in
``console_assets``). The page holds no data; every data call it makes is one of this
API's JSON calls, with the bearer token the user types in (kept in the page's memory
only). So the routes here are open (``node.api.auth.OPEN``), and each answer carries a
strict Content-Security-Policy: scripts, styles, images and connections from this
origin only, no inline script, no framing. Nothing is loaded from the internet: the
graph library (Cytoscape.js, MIT) is shipped in ``console_assets``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import FastAPI
from fastapi import Path as PathParam
from starlette.responses import Response

from node.api.models import refusal
from node.refusals import NotFound

ASSETS = Path(__file__).with_name("console_assets")
# The files the page is made of, and their media types; nothing else is served.
FILES = {
    "index.html": "text/html; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
    "cytoscape.min.js": "text/javascript; charset=utf-8",
    "LICENSE-cytoscape.txt": "text/plain; charset=utf-8",
}
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}


def _file(name: str) -> Response:
    media = FILES.get(name)
    if media is None:
        raise NotFound("not_found", "the console has no such file")
    return Response((ASSETS / name).read_bytes(), media_type=media, headers=HEADERS)


async def _index() -> Response:
    return _file("index.html")


async def _asset(asset: Annotated[str, PathParam()]) -> Response:
    return _file(asset)  # a name not in FILES (any other string) is a 404


def console_routes(app: FastAPI) -> None:
    page = {"description": "The file.", "content": {"text/html": {}}}
    app.add_api_route(
        "/console/",
        _index,
        methods=["GET"],
        response_class=Response,
        summary="The investigator's console (a web page; its data comes from this API).",
        responses={200: page},
    )
    app.add_api_route(
        "/console/{asset}",
        _asset,
        methods=["GET"],
        response_class=Response,
        summary="One of the console's files (script, style sheet, licence).",
        responses={200: {"description": "The file."}, 404: refusal("No such file.")},
    )
