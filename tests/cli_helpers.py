"""Running the CLI in tests: exit codes, stdout and stderr, and the one-line error contract."""

from __future__ import annotations

import pytest

import toklab
from toklab import ToklabError
from toklab.cli import main


def run_cli(capsys: pytest.CaptureFixture, *args: object) -> tuple[int, str, str]:
    """Exit code (0 for success), stdout and stderr; arguments may be paths."""
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    return exit_info.value.code or 0, out, err


def cli_ok(capsys: pytest.CaptureFixture, *args: object) -> str:
    code, out, err = run_cli(capsys, *args)
    assert code == 0, (code, out, err)
    assert "Traceback" not in out + err
    return out


def cli_error(capsys: pytest.CaptureFixture, *args: object) -> str:
    """Run the CLI expecting a user error: exit 2, one `error:` line on stderr, no traceback.
    Progress lines (a pipe gets plain ones, see toklab.progress) may come before it."""
    code, out, err = run_cli(capsys, *args)
    assert code == 2, (code, out, err)
    assert "Traceback" not in out + err
    lines = [line for line in err.splitlines() if line.strip() and " | elapsed " not in line]
    assert len(lines) == 1, err
    assert lines[0].startswith("error:"), err
    return lines[0]


def api_error(spec: str, **options) -> str:
    """The message of the ToklabError that opening and reading `spec` raises."""
    with pytest.raises(ToklabError) as err:
        list(toklab.open_corpus(spec, **options))
    return str(err.value)
