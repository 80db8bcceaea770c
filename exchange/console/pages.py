"""The console's HTML: one layout, tables and error pages, every value escaped.

Pages are rendered on the server with their data, so a page has its data at `load`; the
pinned scripts in `static/` then keep it live (the market over its WebSocket, the health page
by polling) and check what needs checking (the book's checksum, a receipt's proof).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Sequence
from html import escape
from typing import Any

import orjson
from aiohttp import web

PREFIX = "/console"


def text(value: object) -> str:
    return escape(str(value), quote=True)


def data_json(value: Any) -> str:
    """JSON for a `<script type="application/json">` block: `</` cannot close it."""
    return orjson.dumps(value).decode().replace("</", "<\\/")


def layout(
    title: str,
    body: str,
    *,
    node: str,
    nav: Sequence[tuple[str, str]] = (),
    scripts: Iterable[str] = (),
    data: Any = None,
    status: int = 200,
    import_map: str | None = None,
) -> web.Response:
    """A whole page: the header naming the node, the navigation, `body` (already escaped)."""
    links = "".join(f'<a href="{PREFIX}{text(path)}">{text(label)}</a>' for path, label in nav)
    blob = (
        ""
        if data is None
        else f'<script type="application/json" id="page-data">{data_json(data)}</script>'
    )
    tags = "".join(
        f'<script type="module" src="{PREFIX}/static/{text(name)}"></script>' for name in scripts
    )
    csp = CSP
    if import_map is not None:  # an inline import map, allowed by its hash and nothing else
        digest = base64.b64encode(hashlib.sha256(import_map.encode()).digest()).decode()
        csp = CSP.replace("script-src 'self'", f"script-src 'self' 'sha256-{digest}'")
        tags = f'<script type="importmap">{import_map}</script>' + tags
    html = (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{text(title)} · {text(node)} · Jinlian</title>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<link rel="stylesheet" href="{PREFIX}/static/console.css"><link rel="icon" href="data:,">'
        f'</head><body><header><strong>Jinlian</strong> <span class="node">{text(node)}</span>'
        f"<nav>{links}</nav></header><main><h1>{text(title)}</h1>{body}</main>{blob}{tags}"
        "</body></html>"
    )
    return web.Response(text=html, content_type="text/html", status=status,
                        headers={"Content-Security-Policy": csp,
                                 "X-Content-Type-Options": "nosniff",
                                 "Referrer-Policy": "no-referrer"})  # fmt: skip


# the pages load only their own scripts and styles and talk only to their own node
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], *, id_: str = "") -> str:
    """A table of escaped cells (a cell that is a `Raw` is inserted as it is)."""
    head = "".join(f"<th>{text(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{cell if isinstance(cell, Raw) else text(cell)}</td>"
                         for cell in row) + "</tr>"
        for row in rows
    )  # fmt: skip
    ident = f' id="{text(id_)}"' if id_ else ""
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


class Raw(str):
    """HTML made here from escaped parts: inserted into a table as it is."""

    __slots__ = ()


def link(path: str, label: object) -> Raw:
    return Raw(f'<a href="{PREFIX}{text(path)}">{text(label)}</a>')


def error_page(status: int, code: str, message: str, *, node: str) -> web.Response:
    """A clear error page: the status, a stable code and a message naming the bad value."""
    body = (
        f'<p class="error" data-code="{text(code)}"><strong>{status} {text(code)}</strong>: '
        f'{text(message)}</p><p><a href="{PREFIX}/">Back to the console</a></p>'
    )
    return layout(f"Error {status}", body, node=node, status=status)
