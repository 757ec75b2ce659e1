"""The dashboard page at ``/``, its own files, and the chart library installed by npm."""

import html
import json
import re
from pathlib import Path

from faust import web

from restaurant_app.settings import PROJECT_ROOT
from restaurant_app.web.dashboard import page_language
from restaurant_app.web.endpoint import BadParameter, Choice, Store, error, parse
from restaurant_app.web.language import LANGUAGES
from restaurant_app.web.texts import TEXTS
from restaurant_app.worker import app

STATIC_DIR = Path(__file__).parent / "static"
OWN_FILES = {name: STATIC_DIR / name for name in ("dashboard.css", "dashboard.js")}
VENDOR_FILES = {
    "chart.umd.min.js": PROJECT_ROOT / "node_modules" / "chart.js" / "dist" / "chart.umd.min.js",
}
CONTENT_TYPES = {".css": "text/css", ".js": "text/javascript"}

FILE_HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
# The page loads only what this server sends; the browser refuses anything from elsewhere.
PAGE_HEADERS = {
    **FILE_HEADERS,
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none';"
        " form-action 'none'; frame-ancestors 'none'"
    ),
}


def send_file(view: web.View, path: Path | None, missing: str) -> web.Response:
    """The file at ``path``, or 404 with ``missing`` as the reason."""
    if path is None or not path.is_file():
        return view.error(404, missing)
    return view.text(path.read_text(), content_type=CONTENT_TYPES[path.suffix], headers=FILE_HEADERS)


PLACEHOLDER = re.compile(r"\{\{([\w.]+)\}\}")


def page_in(lang: str) -> str:
    """The page with its words in ``lang``, and the words its script writes as JSON."""
    words = TEXTS[lang]
    script_words = json.dumps(words, ensure_ascii=False).replace("<", "\\u003c")
    page = (STATIC_DIR / "index.html").read_text()
    page = page.replace("{{lang}}", lang).replace("{{other_lang}}", next(o for o in LANGUAGES if o != lang))
    page = page.replace("{{texts_json}}", script_words)
    return PLACEHOLDER.sub(lambda match: html.escape(words[match[1]]), page)


@app.page("/")
async def dashboard_page(view: web.View, request: web.Request) -> web.Response:
    """The sales dashboard, in ``lang`` if asked, else as ``DASHBOARD_LANGUAGE`` says."""
    try:
        # The store picked is the script's to read (it checks it against the known stores).
        asked = parse(request.query, {"lang": Choice(LANGUAGES), "store": Store()})["lang"]
    except BadParameter as exc:
        return error(view, str(exc), 400)
    lang = page_language(request, asked)
    headers = {**PAGE_HEADERS, "Content-Language": lang, "Vary": "Accept-Language"}
    return view.html(page_in(lang), headers=headers)


@app.page("/static/dashboard/{name}")
async def own_file(view: web.View, request: web.Request, name: str) -> web.Response:
    return send_file(view, OWN_FILES.get(name), f"no file {name!r:.60} here")


@app.page("/static/vendor/{name}")
async def vendor_file(view: web.View, request: web.Request, name: str) -> web.Response:
    """A browser library from ``node_modules/``, installed by ``npm ci`` (``make setup``)."""
    if name not in VENDOR_FILES:
        return view.error(404, f"no library file {name!r:.60} here")
    return send_file(view, VENDOR_FILES[name], f"{name} is not installed: run `make setup` (npm ci)")
