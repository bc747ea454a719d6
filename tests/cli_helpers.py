"""Helpers of the command-line tests: run ``reprior`` in this process, read a one-line error."""

from __future__ import annotations

from reprior._util import files as _files
from reprior.experiments import cli


def run(capsys, *argv):
    """``(exit status, stdout, stderr)`` of ``reprior ARGV`` run in this process."""
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code, err) -> str:
    """The message of a one-line CLI error: exit status 2, one line starting ``reprior: error:``,
    no traceback and no temporary file name of ours."""
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("reprior: error: "), err
    assert "Traceback" not in err and _files.TMP_MARK not in err, err
    return lines[0].removeprefix("reprior: error: ")
