"""The ``ispring-async`` command line: option layers, refused secrets, help (the display: test_progress)."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ispring_async._app.cli import export_parser, main, resolve_settings
from ispring_async._app.export import ExitCode
from ispring_async._app.progress import (
    ProgressMode,
)
from ispring_async._config import ResponseFormat
from ispring_async._fanout import Split
from ispring_async._models import UserStatus
from ispring_async._paginate import DEFAULT_MAX_PAGES

SECRET = "Sup3r-s3cret-VALUE-7f1c"
USER_A = "11111111-2222-4333-8444-555555555555"
USER_B = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"


def parse(argv: list[str], environ: dict[str, str] | None = None) -> Any:
    """Resolve ``argv`` (after ``export``) and ``environ`` into settings."""
    namespace = export_parser().parse_args(argv)
    return resolve_settings(vars(namespace), environ or {})


BASE = ["--base-url", "http://127.0.0.1:9", "--output", "out.jsonl"]
CREDS = {"ISPRING_CLIENT_ID": "id", "ISPRING_CLIENT_SECRET": SECRET}


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["--client-secret", SECRET], id="client-secret-value"),
        pytest.param([f"--client-secret={SECRET}"], id="client-secret-equals"),
        pytest.param(["--token", SECRET], id="token-value"),
        pytest.param(["--client-sec", SECRET], id="abbreviation-not-expanded"),
        pytest.param(["--clientsecret", SECRET], id="unknown-option"),
        pytest.param([SECRET], id="stray-argument"),
    ],
)
def test_secret_on_argv_is_refused_and_never_echoed(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """A secret given on the command line fails with a usage error that does not repeat it."""
    assert main(["export", *BASE, *argv]) == ExitCode.USAGE
    out, err = capsys.readouterr()
    assert SECRET not in out + err
    assert "error:" in err


def test_refusal_says_why_and_what_to_use(capsys: pytest.CaptureFixture[str]) -> None:
    """The refusal of --client-secret explains the risk and names the safe alternatives."""
    main(["export", *BASE, "--client-secret", "x"])
    err = capsys.readouterr().err
    assert "shell history" in err
    assert "ISPRING_CLIENT_SECRET" in err
    assert "--client-secret-file" in err


def test_help_documents_exit_codes_and_default_user_statuses(capsys: pytest.CaptureFixture[str]) -> None:
    """``export --help`` exits 0 and lists every exit status and the 1+3 user-status default."""
    with pytest.raises(SystemExit) as exc:
        export_parser().parse_args(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for code in ExitCode:
        assert f"\n  {int(code):<4}" in out
    assert "userStatuses 1 and 3" in out
    assert main(["export", "--help"]) == 0


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        pytest.param([], ExitCode.USAGE, id="no-command"),
        pytest.param(["--help"], 0, id="help"),
        pytest.param(["import"], ExitCode.USAGE, id="unknown-command"),
    ],
)
def test_top_level_dispatch(argv: list[str], code: int, capsys: pytest.CaptureFixture[str]) -> None:
    """The top-level command prints its usage and returns the documented status."""
    assert main(argv) == code
    out, err = capsys.readouterr()
    assert "ispring-async {export,emulator}" in out + err


def test_emulator_subcommand_still_delegates(capsys: pytest.CaptureFixture[str]) -> None:
    """``ispring-async emulator`` reaches the emulator's own parser."""
    with pytest.raises(SystemExit) as exc:
        main(["emulator", "--help"])
    assert exc.value.code == 0
    assert "ispring-async emulator" in capsys.readouterr().out


def test_defaults() -> None:
    """Without options: adaptive split, concurrency 8, pages of 1000, XML, active and blocked users."""
    settings, mode, interval, quiet = parse(BASE, CREDS)
    assert settings.fanout.split is Split.ADAPTIVE
    assert settings.fanout.concurrency == 8
    assert settings.page_size == 1000
    assert settings.response_format is ResponseFormat.XML
    assert settings.query.user_statuses == (UserStatus.ACTIVE, UserStatus.BLOCKED)
    assert (settings.client_id, settings.client_secret, settings.token) == ("id", SECRET, None)
    assert (mode, interval, quiet, settings.resume) == (ProgressMode.AUTO, 10.0, False, False)
    assert SECRET not in repr(settings)


def test_the_page_cap_comes_from_the_command_line_or_the_default() -> None:
    """--max-pages-per-chain sets the per-chain page cap; without it the library's default applies."""
    assert parse(BASE, CREDS)[0].max_pages_per_chain == DEFAULT_MAX_PAGES
    assert parse([*BASE, "--max-pages-per-chain", "25"], CREDS)[0].max_pages_per_chain == 25


def test_precedence_command_line_over_environment_over_config(tmp_path: Path) -> None:
    """Each option comes from the highest layer that gives it: argv, then $ISPRING_*, then the TOML file."""
    config = tmp_path / "export.toml"
    config.write_text(
        'base_url = "http://config.invalid"\nclient_id = "config-id"\nclient_secret = "config-secret"\n'
        'output = "from-config.sqlite"\npage_size = 250\nsplit = "window"\nconcurrency = 3\n'
        'response_format = "json"\n'
    )
    config.chmod(0o600)
    env = {"ISPRING_BASE_URL": "http://env.invalid", "ISPRING_CLIENT_SECRET": "env-secret"}
    settings, *_ = parse(["--config", str(config), "--concurrency", "5"], env)
    assert settings.base_url == "http://env.invalid"  # env over config
    assert settings.client_id == "config-id"  # only the config gives it
    assert settings.client_secret == "env-secret"  # env over config
    assert settings.fanout.concurrency == 5  # argv over config
    assert settings.fanout.split is Split.WINDOW
    assert settings.page_size == 250
    assert settings.response_format is ResponseFormat.JSON
    assert settings.output == tmp_path / "from-config.sqlite"  # relative to the config file
    settings, *_ = parse(["--config", str(config), "--base-url", "http://argv.invalid"], env)
    assert settings.base_url == "http://argv.invalid"


def test_config_file_can_hold_every_filter(tmp_path: Path) -> None:
    """Filters in TOML: id lists and files, statuses by name or number, native and string dates."""
    (tmp_path / "users.txt").write_text(f"# users\n{USER_B}  # second\n\n")
    config = tmp_path / "c.toml"
    config.write_text(
        f'base_url = "http://h"\nclient_id = "i"\nclient_secret_file = "secret.txt"\noutput = "o.csv"\n'
        f'user_ids = ["{USER_A}"]\nuser_ids_file = "users.txt"\n'
        f'completion_statuses = ["passed", "failed"]\nuser_statuses = ["blocked", 5]\n'
        f"access_date_from = 2024-01-01T00:00:00Z\naccess_date_to = 2024-01-31\n"
        f'completion_date_from = "2024-02-01T10:00:00+03:00"\nresume = true\nprogress = "log"\n'
    )
    (tmp_path / "secret.txt").write_text(SECRET + "\n")
    settings, mode, *_ = parse(["--config", str(config)])
    query = settings.query
    assert query.user_ids == (USER_A, USER_B)
    assert query.completion_statuses == ("passed", "failed")
    assert query.user_statuses == (UserStatus.BLOCKED, UserStatus.TERMINATED)
    assert query.access_date.start == datetime(2024, 1, 1, tzinfo=UTC)
    assert query.access_date.end == datetime(2024, 1, 31, 23, 59, 59, tzinfo=UTC)
    assert query.completion_date.to_params("completionDate") == [
        ("completionDate[startDate]", "2024-02-01T07:00:00Z")
    ]
    assert settings.client_secret == SECRET
    assert settings.resume is True
    assert mode is ProgressMode.LOG


def test_command_line_filters(tmp_path: Path) -> None:
    """Repeated ids, an ids file, statuses and date bounds on argv; naive date-times are UTC."""
    ids = tmp_path / "courses.txt"
    ids.write_text(f"{USER_B}\n")
    settings, *_ = parse(
        [
            *BASE,
            "--course-id", USER_A, "--course-ids-file", str(ids), "--user-status", "1",
            "--completion-status", "complete", "--due-date-from", "2024-05-01T12:00:00",
            "--rate-limit", "2.5", "--split", "none", "--earliest", "2020-01-01",
        ],
        CREDS,
    )  # fmt: skip
    assert settings.query.course_ids == (USER_A, USER_B)
    assert settings.query.user_statuses == (UserStatus.ACTIVE,)
    assert settings.query.due_date.start == datetime(2024, 5, 1, 12, tzinfo=UTC)
    assert settings.fanout.rate_limit == 2.5
    assert settings.fanout.earliest == datetime(2020, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        pytest.param(["--output", "o.jsonl"], CREDS, "no base URL", id="no-base-url"),
        pytest.param(["--base-url", "http://h"], CREDS, "no output", id="no-output"),
        pytest.param(BASE, {}, "no credentials", id="no-credentials"),
        pytest.param(BASE, {"ISPRING_CLIENT_SECRET": SECRET}, "no client id", id="no-client-id"),
        pytest.param(
            BASE, {**CREDS, "ISPRING_TOKEN": "tok"}, "both a client secret and a token", id="secret-and-token"
        ),
        pytest.param([*BASE, "--page-size", "1001"], CREDS, "1..1000", id="page-size"),
        pytest.param([*BASE, "--concurrency", "0"], CREDS, ">= 1", id="concurrency"),
        pytest.param([*BASE, "--user-status", "2"], CREDS, "not 1/active", id="user-status"),
        pytest.param([*BASE, "--user-id", "nope"], CREDS, "is not a UUID", id="bad-uuid"),
        pytest.param([*BASE, "--access-date-from", "yesterday"], CREDS, "RFC 3339", id="bad-date"),
        pytest.param([*BASE, "--client-secret-file", "/nonexistent/s"], CREDS, "cannot read", id="no-file"),
        pytest.param([*BASE, "--completion-status", "done"], CREDS, "is not one of", id="bad-status"),
        pytest.param([*BASE, "--max-pages-per-chain", "0"], CREDS, "must be >= 1", id="no-pages"),
        pytest.param([*BASE], {"ISPRING_TOKEN": "tok\r\nX: 1"}, "control characters", id="token-with-crlf"),
    ],
)
def test_usage_errors_exit_2(
    argv: list[str],
    env: dict[str, str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Missing or invalid options fail before any request with exit status 2 and a clear message."""
    for key in ("ISPRING_BASE_URL", "ISPRING_CLIENT_ID", "ISPRING_CLIENT_SECRET", "ISPRING_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert main(["export", *argv]) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert message in err
    assert SECRET not in err


def test_config_file_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown key, invalid TOML or a missing file in --config is a usage error naming the file."""
    bad_key = tmp_path / "typo.toml"
    bad_key.write_text('base_urll = "http://h"\n')
    bad_toml = tmp_path / "broken.toml"
    bad_toml.write_text("base_url = \n")
    for path, message in (
        (bad_key, "unknown key 'base_urll'"),
        (bad_toml, "not valid TOML"),
        (tmp_path / "missing.toml", "cannot read the config file"),
    ):
        assert main(["export", "--config", str(path)]) == ExitCode.USAGE
        assert message in capsys.readouterr().err


@pytest.mark.skipif(os.name != "posix", reason="file modes")
def test_world_readable_config_with_a_secret_warns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A config file holding a secret that other users can read draws a warning (without the secret)."""
    config = tmp_path / "c.toml"
    config.write_text(
        f'base_url = "http://h"\nclient_id = "i"\nclient_secret = "{SECRET}"\noutput = "o.jsonl"\n'
    )
    config.chmod(0o644)
    parse(["--config", str(config)])
    err = capsys.readouterr().err
    assert "chmod 600" in err
    assert SECRET not in err


def test_token_file_gives_a_ready_token(tmp_path: Path) -> None:
    """--token-file supplies a bearer token instead of client credentials; it wins over the environment."""
    token = tmp_path / "token"
    token.write_text("the-token\n")
    settings, *_ = parse([*BASE, "--token-file", str(token)], CREDS)
    assert (settings.client_id, settings.client_secret, settings.token) == (None, None, "the-token")
    assert "the-token" not in repr(settings)
