"""``--rejects`` files show a refused row's text safely, in a terminal and in a spreadsheet.

:func:`~streams.commands._common.write_rejects` wrote the detail (or raw row) as given: an
ESC sequence or a C1 control (U+009B, CSI) in a hostile tick file reached the terminal of
``--rejects -`` or ``cat rejects.csv``, a newline in it split one refused row over lines, and
a cell starting with ``=``, ``+``, ``-`` or ``@`` was a formula once the file was opened in a
spreadsheet (CSV injection). Control characters are now escaped and such a cell starts
with ``'``.
"""

from __future__ import annotations

import csv
import io
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forex_diffusion.errors import RejectReason
from forex_diffusion.ingest.readers import FileReject
from streams.commands._common import write_rejects

FORMULA_START = ("=", "+", "-", "@")


def _safe_char(c: str) -> bool:
    return c.isprintable() or c in ",\n"


def _written(rejects: list[FileReject]) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rejects.csv"
        write_rejects(rejects, out)
        return out.read_text()


def _check(text: str, rejects: list[FileReject]) -> None:
    assert all(_safe_char(c) for c in text), ascii(text)
    assert all(ord(c) not in range(0x80, 0xA0) for c in text)  # no C1 control, CSI included
    assert "\x1b" not in text
    rows = list(csv.reader(io.StringIO(text)))
    assert text.count("\n") == len(rows) == len(rejects) + 1  # one line per refused row
    assert rows[0] == ["line", "reason", "detail"]
    for row, r in zip(rows[1:], rejects, strict=True):
        assert row[:2] == [str(r.line), r.reason.value]
        assert not row[2].startswith(FORMULA_START), row[2]
        shown = r.detail or r.raw
        if shown.isprintable() and not shown.startswith(FORMULA_START):
            assert row[2] == shown  # a plain row is written as it is


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.text(max_size=40), st.text(max_size=40), st.sampled_from(list(RejectReason))),
        min_size=1,
        max_size=5,
    )
)
def test_rejects_of_any_raw_rows_are_printable_one_line_each_and_no_formula(
    rows: list[tuple[str, str, RejectReason]],
) -> None:
    rejects = [
        FileReject(line=i + 1, reason=reason, detail=detail, raw=raw) for i, (raw, detail, reason) in enumerate(rows)
    ]
    _check(_written(rejects), rejects)


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\x1b]0;pwned\x07EURUSD,1,2", "\\x1b]0;pwned\\x07EURUSD,1,2"),
        ("\x9b31mEURUSD", "\\x9b31mEURUSD"),
        ("a\nb\u2028c\u202ed", "a\\nb\\u2028c\\u202ed"),
        ('=HYPERLINK("http://x","y")', '\'=HYPERLINK("http://x","y")'),
        ("+1+cmd|' /C calc'!A0", "'+1+cmd|' /C calc'!A0"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "\\t=1"),
        ("2024-01-01T00:00:00Z,EURUSD,1.1,1.0", "2024-01-01T00:00:00Z,EURUSD,1.1,1.0"),
    ],
)
def test_rejects_hostile_raw_row_is_escaped_and_neutralised(raw: str, shown: str, tmp_path: Path) -> None:
    rejects = [FileReject(line=7, reason=RejectReason.MALFORMED, detail="", raw=raw)]
    out = tmp_path / "rejects.csv"
    write_rejects(rejects, out)
    text = out.read_text()
    _check(text, rejects)
    assert list(csv.reader(io.StringIO(text)))[1] == ["7", "malformed", shown]


def test_rejects_to_an_open_stream_are_written_as_to_a_file(tmp_path: Path) -> None:
    """``--rejects -`` (standard output) writes the same escaped text as a file."""
    rejects = [FileReject(line=3, reason=RejectReason.SCHEMA, detail="\x9b2J=x", raw="r")]
    fh = io.StringIO()
    write_rejects(rejects, fh)
    assert fh.getvalue() == _written(rejects) == "line,reason,detail\n3,schema,\\x9b2J=x\n"


@pytest.mark.parametrize("command", ["candles", "indicators"])
def test_candles_and_indicators_rejects_are_written_safe_too(command: str, tmp_path: Path) -> None:
    """``forexd candles|indicators --rejects`` now write through the one writer. A guard: their
    details already quoted the bad value (``bid='\\x1b[2J=1+1' is not a number``), so it passes
    on the old code too."""
    from typer.testing import CliRunner

    from streams.cli import app

    if command == "candles":
        src = tmp_path / "eurusd_ticks.csv"
        src.write_text("ts_ms,bid,ask\n1398902400000,1.1,1.1001\n1398902401000,\x1b[2J=1+1,1.1001\n")
    else:
        src = tmp_path / "eurusd_1h.csv"
        src.write_text(  # a good row first: a file whose every row is refused exits 65
            "timestamp,symbol,open,high,low,close\n1451602800000,EURUSD,1.1,1.2,1.0,1.1\n"
            "1451606400000,EURUSD,1.1,1.2,1.0,\x1b[2Jx\n"
        )
    out = tmp_path / "rejects.csv"
    res = CliRunner().invoke(app, [command, str(src), "-o", str(tmp_path / "o.csv"), "--rejects", str(out)])
    assert res.exit_code == 0, res.output
    text = out.read_text()
    assert len(text.splitlines()) == 2 and "\x1b" not in text and "\\x1b" in text, text
