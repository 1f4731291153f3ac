"""The viewer's web application (Starlette): the page, Deep Zoom tiles, layer data, sign-off.

Every route takes numbers or names from fixed sets, never a path: the only files it can
send are the package's own static files (Starlette's StaticFiles refuses anything outside
its folder), the slide's tiles and what :class:`ResultFolder` builds from the result
folder. The page's Content-Security-Policy allows nothing but this server, no inline
script and no plugin; a sign-off is accepted only as JSON from this server's own page
(a JSON body cannot be sent cross-site without a CORS preflight, which is never granted).
"""

from __future__ import annotations

import os
import struct
from importlib import resources
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import numpy as np
from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from her2slide.errors import InputError
from her2slide.outputs import signoff
from her2slide.outputs.cells_table import OUTLINE_RAYS
from her2slide.outputs.review_qc import qc_checks
from her2slide.scoring import CELL_CLASSES
from her2slide.viewer.result import ResultFolder
from her2slide.viewer.slide_tiles import SlideTiles

#: A viewport holding more cells than this gets their count only ("zoom in to see the cells").
MAX_CELLS_DRAWN = 40_000
#: Tiles cut at once (decoding and PNG encoding release the GIL: about one per core).
TILE_WORKERS = max(2, min(4, os.cpu_count() or 2))
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
#: The one stylesheet OpenSeadragon 6.1.1 injects (a focus-outline rule for touch screens),
#: allowed by its hash so that no other inline style can apply.
OPENSEADRAGON_STYLE_HASH = "sha256-9xTiqzfwFaL2SGb1rmr8gysEwVVjIvqWAgmZgqFqpEE="
SECURITY_HEADERS = {
    "Content-Security-Policy": f"default-src 'none'; script-src 'self'; style-src 'self' '{OPENSEADRAGON_STYLE_HASH}'; "
                               "img-src 'self' data: blob:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
                               "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
}
#: Header of the binary cell-layer answer: cells in the box, cells sent, rays per outline.
CELL_HEADER = struct.Struct("<III")


def static_folder() -> Path:
    return Path(str(resources.files("her2slide.viewer").joinpath("static")))


def create_app(result: ResultFolder, tiles: SlideTiles, allowed_hosts: tuple[str, ...] = LOOPBACK_HOSTS) -> Starlette:
    """The application for one result folder and its (checked) slide."""
    api = _Api(result, tiles)
    routes = [
        Route("/", api.page),
        Route("/slide.dzi", api.dzi),
        Route("/slide_files/{level:int}/{col:int}_{row:int}.png", api.tile),
        Route("/api/info", api.info),
        Route("/api/cells", api.cells),
        Route("/api/cell/{row:int}", api.cell),
        Route("/api/cell-at", api.cell_at),
        Route("/api/region-at", api.region_at),
        Route("/api/maps/{name:str}", api.map_png),
        Route("/api/qc", api.qc),
        Route("/api/roi", api.roi),
        Route("/api/signoff", api.signoff, methods=["GET", "POST"]),
        Mount("/static", StaticFiles(directory=static_folder()), name="static"),
    ]
    hosts = [h if ":" not in h else f"[{h}]" for h in allowed_hosts] + list(allowed_hosts)
    return Starlette(routes=routes, middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=hosts),
                                                Middleware(_SecurityHeaders)])


class _SecurityHeaders:
    """ASGI middleware: SECURITY_HEADERS on every response, errors included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).update(SECURITY_HEADERS)
            await send(message)

        await self.app(scope, receive, send_with_headers if scope["type"] == "http" else send)


class _Api:
    """Route handlers over one result folder. Plain (sync) handlers: Starlette runs them in its thread pool."""

    def __init__(self, result: ResultFolder, tiles: SlideTiles) -> None:
        self.result = result
        self.tiles = tiles
        # Tiles are cut at most TILE_WORKERS at a time, so a burst of tile requests cannot hold
        # every thread while a click or the cell layer waits behind them.
        self._tile_limiter = anyio.CapacityLimiter(TILE_WORKERS)

    def page(self, request: Request) -> Response:
        return FileResponse(static_folder() / "index.html", headers={"Cache-Control": "no-store"})

    def dzi(self, request: Request) -> Response:
        return Response(self.tiles.dzi(), media_type="application/xml")

    async def tile(self, request: Request) -> Response:
        p = request.path_params
        png = await anyio.to_thread.run_sync(self.tiles.tile_png, p["level"], p["col"], p["row"],
                                             limiter=self._tile_limiter)
        if png is None:
            return _not_found()
        return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})

    def info(self, request: Request) -> Response:
        result, reader = self.result, self.tiles.reader
        report = result.report
        provenance = report.get("provenance") or {}
        heterogeneity = report.get("heterogeneity") or {}
        return JSONResponse({
            "slide": {"name": Path(str(provenance.get("input") or reader.path)).name, "path": str(reader.path),
                      "dimensions": list(reader.dimensions), "mpp": result.mpp, "vendor": reader.vendor,
                      "properties": dict(reader.properties)},
            "report": {key: report.get(key) for key in ("score", "status", "category", "criteria", "reasons", "cells")}
                      | {"result": (report.get("decision_support") or {}).get("result"),
                         "qc_checks": qc_checks(report.get("qc")),
                         "heterogeneity": {"pattern": heterogeneity.get("pattern"),
                                           "reason": heterogeneity.get("reason")}},
            "tiles": self.tiles.descriptor(),
            "classes": list(CELL_CLASSES),
            "rays": OUTLINE_RAYS,
            "cells_total": len(result.cells),
            "max_cells_drawn": MAX_CELLS_DRAWN,
            "maps": {"region_um": result.maps.region_um, "origin_um": list(result.maps.origin_um),
                     "grid_shape": list(result.maps.shape), "layers": result.layers()},
            "clusters": heterogeneity.get("clusters") or [],
            "deciding": result.deciding_regions(),
            "signoff": _signoff_state(result),
        })

    def cells(self, request: Request) -> Response:
        """The cells of a box as little-endian arrays: header, x, y (float32), rows (uint32),
        radii (float32, rays per cell), class codes (uint8). Only the count when there are too many."""
        box = _box(request)
        if box is None:
            return _bad("x0, y0, x1, y1 must be numbers with x0 < x1 and y0 < y1")
        index = self.result.cells
        in_box = index.count(*box)
        rays = int(index.radii.shape[1]) if len(index) else OUTLINE_RAYS
        if in_box > MAX_CELLS_DRAWN:
            return Response(CELL_HEADER.pack(in_box, 0, rays), media_type="application/octet-stream")
        found = index.query(*box)
        body = b"".join([CELL_HEADER.pack(found.in_box, len(found.rows), rays),
                         found.x.astype("<f4").tobytes(), found.y.astype("<f4").tobytes(),
                         found.rows.astype("<u4").tobytes(), found.radii.astype("<f4").tobytes(),
                         found.codes.astype(np.uint8).tobytes()])
        return Response(body, media_type="application/octet-stream")

    def cell(self, request: Request) -> Response:
        found = self.result.cell(request.path_params["row"])
        return JSONResponse(found) if found is not None else _not_found()

    def cell_at(self, request: Request) -> Response:
        point = _point(request)
        if point is None:
            return _bad("x and y must be numbers")
        row = self.result.cells.cell_at(*point)
        return JSONResponse({"cell": None if row is None else self.result.cell(row)})

    def region_at(self, request: Request) -> Response:
        point = _point(request)
        if point is None:
            return _bad("x and y must be numbers")
        return JSONResponse({"region": self.result.region_at(*point)})

    def map_png(self, request: Request) -> Response:
        png = self.result.map_png(request.path_params["name"])
        return Response(png, media_type="image/png") if png is not None else _not_found()

    def qc(self, request: Request) -> Response:
        return JSONResponse(self.result.qc_blocks())

    def roi(self, request: Request) -> Response:
        return JSONResponse({"roi": self.result.roi()})

    async def signoff(self, request: Request) -> Response:
        if request.method == "GET":
            return JSONResponse(_signoff_state(self.result))
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return _bad("a sign-off is sent as application/json", status=415)
        origin = request.headers.get("origin")
        if origin is not None and origin != f"{request.url.scheme}://{request.headers.get('host')}":
            return _bad("a sign-off must come from the viewer's own page", status=403)
        try:
            body = await request.json()
        except ValueError:
            return _bad("the sign-off is not valid JSON")
        if not isinstance(body, dict):
            return _bad("the sign-off must be a JSON object")
        try:
            signoff.sign_off(self.result.folder, str(body.get("reviewer") or ""), accept=bool(body.get("accept")),
                             score=_optional_text(body.get("score")), category=_optional_text(body.get("category")),
                             note=str(body.get("note") or ""))
        except InputError as exc:
            return _bad(exc.reason)
        return JSONResponse(_signoff_state(self.result))


def _signoff_state(result: ResultFolder) -> dict[str, Any]:
    """The sign-off history and what the form offers (categories per score under these criteria)."""
    try:
        history, error = signoff.read_history(result.folder), None
    except InputError as exc:
        history, error = [], exc.reason
    latest = signoff.current(result.folder) if history else None
    criteria = result.report.get("criteria")
    return {"history": history, "current": bool(latest and latest["current"]), "error": error,
            "categories": {score: list(signoff.allowed_categories(criteria, score)) for score in CELL_CLASSES}}


def _optional_text(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


def _number(request: Request, name: str) -> float | None:
    try:
        value = float(request.query_params[name])
    except (KeyError, ValueError):
        return None
    return value if np.isfinite(value) else None


def _point(request: Request) -> tuple[float, float] | None:
    x, y = _number(request, "x"), _number(request, "y")
    return None if x is None or y is None else (x, y)


def _box(request: Request) -> tuple[float, float, float, float] | None:
    values = [_number(request, k) for k in ("x0", "y0", "x1", "y1")]
    if any(v is None for v in values):
        return None
    x0, y0, x1, y1 = values  # type: ignore[misc]
    return (x0, y0, x1, y1) if x0 < x1 and y0 < y1 else None


def _bad(message: str, status: int = 400) -> Response:
    return JSONResponse({"error": message}, status_code=status)


def _not_found() -> Response:
    return JSONResponse({"error": "not found"}, status_code=404)
