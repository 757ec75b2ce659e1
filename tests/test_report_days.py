"""Which days ``python -m spark_reports --from DAY --to DAY`` rebuilds, and its refusals (no services)."""

from datetime import UTC, date, datetime

import pytest

from spark_reports import job
from spark_reports.ledger import ReportRun, Span, Watermark, run_mode


def test_a_day_is_local_midnight_to_midnight():
    span = job.day_span(date(2026, 11, 1), date(2026, 11, 8), "America/Sao_Paulo")
    assert (span.start.astimezone(UTC), span.end.astimezone(UTC)) == (
        datetime(2026, 11, 1, 3, tzinfo=UTC), datetime(2026, 11, 9, 3, tzinfo=UTC))


def test_a_day_when_the_clocks_go_forward_lasts_23_hours():
    span = job.day_span(date(2026, 3, 29), date(2026, 3, 29), "Europe/Lisbon")
    assert (span.start.astimezone(UTC), span.end.astimezone(UTC)) == (
        datetime(2026, 3, 29, 0, tzinfo=UTC), datetime(2026, 3, 29, 23, tzinfo=UTC))


@pytest.mark.parametrize(("args", "says"), [
    (["--from", "2026-11-08", "--to", "2026-11-01"], "--from 2026-11-08 is after --to 2026-11-01"),
    (["--from", "2026-11-01"], "--from and --to go together"),
    (["--to", "2026-11-01"], "--from and --to go together"),
    (["--full", "--from", "2026-11-01", "--to", "2026-11-02"], "not allowed with argument --full"),
    (["--from", "1 Nov", "--to", "2026-11-02"], "invalid fromisoformat value: '1 Nov'"),
])
def test_a_bad_range_is_refused_with_its_reason(args: list[str], says: str,
                                                capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit) as stopped:
        job.main(args)
    assert stopped.value.code == 2
    assert says in capsys.readouterr().err


def test_each_kind_of_run_has_its_mode():
    span = Span(datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 2, tzinfo=UTC))
    assert [run_mode(False, None), run_mode(True, None), run_mode(False, span)] == [
        "incremental", "full", "range"]
    mark = Watermark(1, "1:1:", datetime(2026, 11, 1, tzinfo=UTC))
    assert [ReportRun(1, full, None, mark, span=s).by_day for full, s in
            ((False, None), (True, None), (False, span))] == [False, True, True]
