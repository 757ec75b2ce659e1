"""The page's language, and the one way figures are written: money, numbers, dates, insights.

Portuguese (``pt-BR``) unless ``DASHBOARD_LANGUAGE`` says ``en``, or says ``auto`` and the
browser's ``Accept-Language`` prefers English. Money is ``R$ 1.234,56``, numbers ``1.234,5`` and
moments ``dd/mm/aaaa HH:MM`` (24 h) on the restaurant's clock, in either language.
"""

from collections.abc import Mapping
from datetime import datetime, tzinfo
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from restaurant_app.web.texts import TEXTS

LANGUAGES = tuple(TEXTS)
DEFAULT = "pt-BR"
SETTING_VALUES = (*LANGUAGES, "auto")


def choose(setting: str, accept_language: str | None, asked: str | None = None) -> str:
    """The language: the one ``asked`` for, else the setting, else (``auto``) the browser's."""
    if asked in LANGUAGES:
        return asked
    if setting in LANGUAGES:
        return setting
    return browser_language(accept_language or "")


def browser_language(header: str) -> str:
    """The first of our languages in an ``Accept-Language`` header, by preference; else Portuguese."""
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate(header.split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        weight = 1.0
        if params.strip().startswith("q="):
            try:
                weight = float(params.strip()[2:])
            except ValueError:
                continue
        ranked.append((-weight, position, tag.strip().lower()))
    for weight, _, tag in sorted(ranked):
        primary = tag.split("-")[0]
        if weight < 0 and primary in ("pt", "en"):
            return DEFAULT if primary == "pt" else "en"
    return DEFAULT


def number(value: Any, places: int = 0) -> str:
    """``1234.5`` as ``1.234,50`` (with ``places`` decimals), the Brazilian way."""
    amount = Decimal(str(value)).quantize(Decimal(1).scaleb(-places), ROUND_HALF_UP)
    return f"{amount:,.{places}f}".replace(",", "_").replace(".", ",").replace("_", ".")


def money(value: Any) -> str:
    """An amount in reais: ``R$ 1.234,56``."""
    return "R$ " + number(value, 2)


def moment(value: datetime, zone: tzinfo) -> str:
    """``dd/mm/aaaa HH:MM`` on ``zone``'s clock."""
    return value.astimezone(zone).strftime("%d/%m/%Y %H:%M")


def clock(value: datetime, zone: tzinfo) -> str:
    return value.astimezone(zone).strftime("%H:%M")


def insight_message(row: Mapping[str, Any], lang: str, zone: tzinfo) -> str | None:
    """An insight's sentence in ``lang``, made from its kind and figures; None if they are not
    enough (an old row keeps the sentence it was stored with)."""
    words = TEXTS[lang]
    figures = row.get("figures") or {}
    kind = row["kind"]
    span = words["insight.span"].format(start=moment(row["window_start"], zone),
                                        end=clock(row["window_end"], zone))
    try:
        if kind == "top_dish":
            return words["insight.top_dish"].format(
                span=span, dish=figures["dish"], quantity=number(figures["quantity"]),
                revenue=money(figures["revenue"]))
        if kind.startswith("revenue_vs_"):
            return revenue_message(words, kind, figures, span)
        if kind in ("dish_trending_up", "dish_trending_down"):
            return words[f"insight.{kind}"].format(
                dish=figures["dish"], quantity=number(figures["quantity"]), span=span,
                previous=number(figures["previous_quantity"]))
        if kind == "anomalous_minute":
            return words["insight.anomalous_minute"].format(
                moment=moment(row["window_start"], zone), revenue=money(figures["revenue"]),
                side=words["insight.above" if figures["z_score"] > 0 else "insight.below"],
                mean=money(figures["trailing_mean"]), z=number(figures["z_score"], 1))
    except (KeyError, TypeError, ArithmeticError, ValueError):
        return None
    return None


def revenue_message(words: Mapping[str, str], kind: str, figures: Mapping[str, Any], span: str) -> str:
    earlier = words[f"insight.earlier.{kind}"]
    revenue = money(figures["revenue"])
    if not figures["previous_revenue"]:
        return words["insight.revenue_alone"].format(span=span, revenue=revenue, earlier=earlier)
    change = figures["change_pct"]
    direction = "insight.up" if change > 0 else "insight.down" if change < 0 else "insight.unchanged"
    return words["insight.revenue_change"].format(
        span=span, revenue=revenue, direction=words[direction], change=number(abs(change), 1),
        earlier=earlier, previous=money(figures["previous_revenue"]))


def with_messages(rows: list[dict[str, Any]], lang: str, zone: tzinfo) -> list[dict[str, Any]]:
    """Insight rows whose ``message`` is written in ``lang`` from their figures."""
    return [{**row, "message": insight_message(row, lang, zone) or row.get("message")} for row in rows]
