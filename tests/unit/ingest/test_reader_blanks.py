"""A number's or a time's cell may have ASCII white space around it, nothing else.

``str.strip()`` also takes U+0085 (NEL) and U+00A0 (no-break space), so ``1.1\\x85`` was read
as 1.1 while the fullwidth ``１.１`` and ``1.1\\x00`` were refused (found by the generated-file
property of ``tests/unit/cli/test_offline_boundary_2.py`` in CI).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from streams.cli import app

HEADER = "timestamp,symbol,open,high,low,close,volume\n"
GOOD = "1398902400,EURUSD,1.0500,1.0510,1.0490,1.0500,1\n"


@pytest.mark.parametrize("cell", ["1.051\x85", "\xa01.051", "1.051\u2007", "1.051\u3000"])
def test_a_price_with_non_ascii_space_is_not_a_number(cell: str, tmp_path: Path) -> None:
    src = tmp_path / "eurusd_1m.csv"
    src.write_text(HEADER + GOOD + f"1398902460,EURUSD,1.0500,{cell},1.0490,1.0500,1\n", encoding="utf-8")
    rejects = tmp_path / "rejects.csv"
    res = CliRunner().invoke(app, ["indicators", str(src), "-o", str(tmp_path / "o.csv"), "--rejects", str(rejects)])
    assert res.exit_code == 0, res.output
    lines = rejects.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2 and lines[1].startswith("3,malformed,high=") and "is not a number" in lines[1], lines


@pytest.mark.parametrize("cell", [" 1.051", "1.051 ", "\t1.051\t"])
def test_ascii_space_around_a_price_is_still_read(cell: str, tmp_path: Path) -> None:
    src = tmp_path / "eurusd_1m.csv"
    src.write_text(HEADER + GOOD + f"1398902460,EURUSD,1.0500,{cell},1.0490,1.0500,1\n", encoding="utf-8")
    out = tmp_path / "o.csv"
    res = CliRunner().invoke(app, ["indicators", str(src), "-o", str(out), "--spec", "sma_2"])
    assert res.exit_code == 0, res.output
    assert out.read_text().splitlines()[2].split(",")[3] == "1.051"


def test_a_timestamp_with_non_ascii_space_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "eurusd_1m.csv"
    src.write_text(HEADER + GOOD + "1398902460\x85,EURUSD,1.0500,1.0510,1.0490,1.0500,1\n", encoding="utf-8")
    rejects = tmp_path / "rejects.csv"
    res = CliRunner().invoke(app, ["indicators", str(src), "-o", str(tmp_path / "o.csv"), "--rejects", str(rejects)])
    assert res.exit_code == 0, res.output
    assert rejects.read_text(encoding="utf-8").splitlines()[1].startswith("3,bad_ts,"), rejects.read_text()
