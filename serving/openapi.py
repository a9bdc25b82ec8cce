"""OpenAPI pieces every protocol's routes share: which statuses an endpoint answers, and why.

Documenting every status (not only 200) lets clients, and schema-driven testers
such as schemathesis, know each answer the server can give. 401 applies only
when the server runs with ``--auth-token-file``.

The documents' pages, ``/docs`` (Swagger UI) and ``/redoc``, load their scripts and
styles from this server (``/docs/assets/...``), so they work on a machine without
internet access.
"""

from __future__ import annotations

import html
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response

WHY = {
    400: "malformed request: the message names the field",
    401: "missing or wrong bearer token",
    404: "unknown model or version",
    413: "body, decompressed body or batch over the server's limits",
    415: "Content-Type or Content-Encoding the endpoint does not take",
    500: "inference failed",
    503: "model not loaded yet, or the server is draining",
}
JSON_ANY = {"application/json": {"schema": {"type": "object"}}}
TEXT = {"text/plain": {"schema": {"type": "string"}}}
BINARY = {"schema": {"type": "string", "format": "binary"}}


def responses(codes, content=None) -> dict:
    """``responses=`` for a route: each status in ``codes`` with its reason."""
    return {code: {"description": WHY[code], "content": content or JSON_ANY} for code in codes}


# --------------------------------------------------------------------------- /docs, offline

# Swagger UI's and ReDoc's files, as the fastapi-offline package ships them (FastAPI's own pages load them from a
# CDN and stay blank on a machine without internet access, which is where servers often run)
DOCS_ASSETS = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "redoc.standalone.js": "text/javascript",
    "favicon.png": "image/png",
}
ASSETS_PATH = "/docs/assets"


def docs_assets_dir() -> Path | None:
    """The folder holding :data:`DOCS_ASSETS`, or None when fastapi-offline is not installed."""
    try:
        import fastapi_offline
    except ImportError:
        return None
    folder = Path(fastapi_offline.__file__).parent / "static"
    return folder if all((folder / name).is_file() for name in DOCS_ASSETS) else None


def add_docs(app: FastAPI) -> None:
    """``/docs`` (Swagger UI) and ``/redoc`` served with their files from this server, never from the internet.

    Without the files (fastapi-offline missing), ``/docs`` says so and lists the
    routes as plain HTML, and ``/redoc`` sends the reader there.
    """
    assets = docs_assets_dir()

    def root(request: Request) -> str:
        return request.scope.get("root_path", "").rstrip("/")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        base = root(request)
        if assets is None:
            return HTMLResponse(_plain_docs(app, base))
        return get_swagger_ui_html(
            openapi_url=f"{base}{app.openapi_url}",
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{base}{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{base}{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{base}{ASSETS_PATH}/favicon.png",
            # null: no badge image fetched from validator.swagger.io
            swagger_ui_parameters={**(app.swagger_ui_parameters or {}), "validatorUrl": None},
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> Response:
        base = root(request)
        if assets is None:
            return RedirectResponse(f"{base}/docs")
        return get_redoc_html(
            openapi_url=f"{base}{app.openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{base}{ASSETS_PATH}/redoc.standalone.js",
            redoc_favicon_url=f"{base}{ASSETS_PATH}/favicon.png",
            with_google_fonts=False,
        )

    @app.get(ASSETS_PATH + "/{name}", include_in_schema=False)
    async def asset(name: str) -> Response:
        if assets is None or name not in DOCS_ASSETS:
            return JSONResponse({"error": f"no documentation asset {name!r}"}, status_code=404)
        return FileResponse(assets / name, media_type=DOCS_ASSETS[name])


def _plain_docs(app: FastAPI, base: str) -> str:
    rows = "".join(
        f"<tr><td><code>{html.escape(method.upper())}</code></td><td><code>{html.escape(path)}</code></td>"
        f"<td>{html.escape(op.get('summary', ''))}</td></tr>"
        for path, ops in app.openapi().get("paths", {}).items()
        for method, op in ops.items()
        if isinstance(op, dict)
    )
    openapi_url = f"{base}{app.openapi_url}"  # as the Swagger UI page links it
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(app.title)}</title></head><body>"
        f"<h1>{html.escape(app.title)}</h1><p>{html.escape(app.description or '')}</p>"
        "<p><strong>Offline page:</strong> Swagger UI's files are not installed on this server "
        "(<code>pip install fastapi-offline</code> adds them), so this is a plain list of the routes. The full "
        f"OpenAPI document is at <a href='{openapi_url}'>{html.escape(openapi_url)}</a>.</p>"
        f"<table border='1' cellpadding='4'><tr><th>method</th><th>path</th><th>what</th></tr>{rows}</table>"
        "</body></html>"
    )
