"""The dashboard's words in Portuguese and English, and the one way it writes money, numbers,
dates and insights; no service needed."""

import re
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from restaurant_app.web.language import (
    LANGUAGES,
    browser_language,
    choose,
    insight_message,
    moment,
    money,
    number,
)
from restaurant_app.web.pages import STATIC_DIR
from restaurant_app.web.texts import EN, PT_BR

SAO_PAULO = ZoneInfo("America/Sao_Paulo")
HOUR = datetime(2026, 11, 22, 19, 0, tzinfo=UTC)  # 16:00 in São Paulo
HOUR_END = datetime(2026, 11, 22, 19, 38, tzinfo=UTC)


def test_both_languages_have_the_same_keys_and_placeholders():
    assert PT_BR.keys() == EN.keys()
    for key in PT_BR:
        assert set(re.findall(r"\{\w+\}", PT_BR[key])) == set(re.findall(r"\{\w+\}", EN[key])), key


def test_every_word_the_page_and_its_script_use_is_in_the_texts():
    page = (STATIC_DIR / "index.html").read_text()
    script = (STATIC_DIR / "dashboard.js").read_text()
    placeholders = set(re.findall(r"\{\{([\w.]+)\}\}", page)) - {"lang", "other_lang", "texts_json"}
    used = set(re.findall(r"\bt\('([\w.]+)'", script))
    assert placeholders and used
    assert placeholders <= PT_BR.keys()
    assert used <= PT_BR.keys()


@pytest.mark.parametrize(("header", "lang"), [
    ("en-US,en;q=0.9", "en"),
    ("pt-BR,pt;q=0.9,en;q=0.8", "pt-BR"),
    ("fr-FR,en;q=0.5,pt;q=0.4", "en"),
    ("en;q=0.2,pt-PT;q=0.8", "pt-BR"),
    ("de-DE", "pt-BR"),
    ("en;q=0", "pt-BR"),
    ("", "pt-BR"),
    ("en;q=abc,*", "pt-BR"),
])
def test_the_browser_s_preference_picks_the_language(header: str, lang: str):
    assert browser_language(header) == lang


def test_the_setting_decides_unless_it_says_auto_and_an_explicit_choice_wins():
    assert choose("pt-BR", "en-US") == "pt-BR"
    assert choose("en", "pt-BR") == "en"
    assert choose("auto", "en-US,en") == "en"
    assert choose("auto", None) == "pt-BR"
    assert choose("pt-BR", None, asked="en") == "en"


def test_money_numbers_and_moments_are_written_the_brazilian_way():
    assert money("1234.5") == "R$ 1.234,50"
    assert money(2157.6) == "R$ 2.157,60"
    assert money(0) == "R$ 0,00"
    assert money("1234567.891") == "R$ 1.234.567,89"
    assert number(12.25, 1) == "12,3"
    assert number(1234) == "1.234"
    assert moment(HOUR, SAO_PAULO) == "22/11/2026 16:00"


def insight(kind: str, figures: dict, subject: str = "") -> dict:
    return {"kind": kind, "window_start": HOUR, "window_end": HOUR_END, "subject": subject,
            "figures": figures, "message": None}


INSIGHTS = [
    (insight("top_dish", {"dish": "Salada Caesar", "quantity": 1234, "revenue": 40712.6}),
     "Prato mais vendido de 22/11/2026 16:00 às 16:38: Salada Caesar, 1.234 vendidos por R$ 40.712,60.",
     "Best-selling dish from 22/11/2026 16:00 to 16:38: Salada Caesar, 1.234 sold for R$ 40.712,60."),
    (insight("revenue_vs_previous_hour", {"revenue": 1034.4, "previous_revenue": 919.5, "change_pct": 12.5,
                                          "minutes": 38}),
     "Faturamento de 22/11/2026 16:00 às 16:38: R$ 1.034,40, alta de 12,5% sobre os mesmos minutos da"
     " hora anterior (R$ 919,50).",
     "Revenue from 22/11/2026 16:00 to 16:38 was R$ 1.034,40: up 12,5% on the same minutes of the"
     " previous hour (R$ 919,50)."),
    (insight("revenue_vs_same_hour_yesterday", {"revenue": 80, "previous_revenue": 0, "change_pct": None,
                                                "minutes": 38}),
     "Faturamento de 22/11/2026 16:00 às 16:38: R$ 80,00; não houve vendas nos mesmos minutos do dia"
     " anterior.",
     "Revenue from 22/11/2026 16:00 to 16:38 was R$ 80,00; there were no sales in the same minutes of"
     " the day before."),
    (insight("dish_trending_down", {"dish": "Pudim", "quantity": 1, "previous_quantity": 7, "change": -6},
             "Pudim"),
     "Pudim está vendendo menos: 1 vendidos de 22/11/2026 16:00 às 16:38, contra 7 nos mesmos minutos"
     " da hora anterior.",
     "Pudim is selling less: 1 sold from 22/11/2026 16:00 to 16:38, against 7 in the same minutes of"
     " the previous hour."),
    (insight("anomalous_minute", {"revenue": 2157.6, "trailing_mean": 30.2, "trailing_std": 36.7,
                                  "z_score": 57.93, "active_minutes": 40}),
     "Minuto atípico em 22/11/2026 16:00: faturamento de R$ 2.157,60, bem acima da média da hora"
     " anterior, de R$ 30,20 por minuto (z-score 57,9).",
     "Unusual minute at 22/11/2026 16:00: revenue R$ 2.157,60 is well above the previous hour's"
     " average of R$ 30,20 a minute (z-score 57,9)."),
]


@pytest.mark.parametrize(("row", "portuguese", "english"), INSIGHTS)
def test_insights_are_written_from_their_figures_in_either_language(row: dict, portuguese: str, english: str):
    assert insight_message(row, "pt-BR", SAO_PAULO) == portuguese
    assert insight_message(row, "en", SAO_PAULO) == english


def test_an_insight_without_its_figures_keeps_its_stored_sentence():
    old = {**insight("anomalous_minute", {}), "message": "Unusual minute at 2026-11-22 16:00: …"}
    assert insight_message(old, "pt-BR", SAO_PAULO) is None
    assert insight_message({**old, "kind": "a_kind_from_the_future"}, "en", SAO_PAULO) is None


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_any_accept_language_header_gives_one_of_our_languages(header: str):
    assert browser_language(header) in LANGUAGES
