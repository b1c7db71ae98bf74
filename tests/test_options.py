"""The export command's options declared once (``_app/options.py``): every layer derived, errors named."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from ispring_async import Client, FanOutOptions
from ispring_async._app.cli import export_parser, main, resolve_settings
from ispring_async._app.export import ExitCode, ExportSettings
from ispring_async._app.options import FIELDS, ExportOptions
from ispring_async._config import DEFAULT_CONCURRENCY, DEFAULT_PAGE_SIZE

SECRET = "opt-s3cret-0b1f"
SECRET_NUMBER = 918273645546372819
BASE = ["--base-url", "http://127.0.0.1:9", "--output", "out.jsonl"]
CREDS = {"ISPRING_CLIENT_ID": "id", "ISPRING_CLIENT_SECRET": SECRET}


def config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    return path


@pytest.mark.parametrize(
    ("argv", "env", "toml", "message"),
    [
        pytest.param([], {}, 'page_size = "many"\n', "page_size in the config file", id="toml-not-a-number"),
        pytest.param([], {}, "concurrency = 0\n", "concurrency in the config file", id="toml-below-bound"),
        pytest.param([], {}, "page_size = 2.5\n", "must be a whole number", id="toml-float-for-int"),
        pytest.param([], {}, "resume = 1\n", "resume in the config file", id="toml-int-for-bool"),
        pytest.param([], {}, "user_ids = {a = 1}\n", "user_ids in the config file", id="toml-table-for-list"),
        pytest.param([], {}, "access_date_from = 12\n", "RFC 3339", id="toml-number-for-date"),
        pytest.param([], {}, 'split = "sideways"\n', "split in the config file", id="toml-bad-choice"),
        pytest.param([], {}, 'format = "xls"\n', "format in the config file", id="toml-bad-format"),
        pytest.param(["--rate-limit", "-1"], {}, "", "--rate-limit must be > 0", id="argv-negative-rate"),
        pytest.param(["--progress-interval", "nan"], {}, "", "--progress-interval must be", id="argv-nan"),
        pytest.param(
            ["--retry-max-wait", "soon"], {}, "", "--retry-max-wait must be a number", id="argv-word"
        ),
        pytest.param([], {"ISPRING_SKIP_UNKNOWN_IDS": "2"}, "", "$ISPRING_SKIP_UNKNOWN_IDS", id="env-bool"),
    ],
)
def test_a_bad_value_names_its_key_as_its_layer_shows_it(
    tmp_path: Path,
    argv: list[str],
    env: dict[str, str],
    toml: str,
    message: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A value of the wrong type or out of bounds is exit 2, the message naming the key in its layer."""
    for key, value in {**CREDS, **env}.items():
        monkeypatch.setenv(key, value)
    path = config(tmp_path, toml)
    output = ["--output", str(tmp_path / "out.jsonl")]
    assert main(["export", *BASE, *output, "--config", str(path), *argv]) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert message in err
    assert SECRET not in err


def test_every_field_is_a_config_key_and_an_option_or_refused(tmp_path: Path) -> None:
    """Each declared field is accepted in TOML by name, and on argv unless it is a secret (refused)."""
    parser = export_parser()
    flags = {flag for action in parser._actions for flag in action.option_strings}
    for field in FIELDS.values():
        assert field.flag in flags, field.name
        if field.name in ("client_secret", "token"):
            assert not field.cli.argv
            assert main(["export", field.flag, "x"]) == ExitCode.USAGE
    assert set(FIELDS) == set(ExportOptions.__struct_fields__)


def test_defaults_are_the_named_constants_the_library_uses() -> None:
    """One default for concurrency and page size: the options, the fan-out and the client agree."""
    options = ExportOptions()
    assert options.concurrency == DEFAULT_CONCURRENCY == FanOutOptions().concurrency
    learner = inspect.signature(Client.learner_results).parameters["concurrency"].default
    assert learner == DEFAULT_CONCURRENCY
    assert options.page_size == DEFAULT_PAGE_SIZE == inspect.signature(Client).parameters["page_size"].default
    assert ExportSettings.__dataclass_fields__["page_size"].default == DEFAULT_PAGE_SIZE


def test_a_toml_file_of_every_default_resolves_like_no_file(tmp_path: Path) -> None:
    """Writing every scalar default into the config file changes nothing: the layers convert alike."""
    lines = []
    for name in ExportOptions.__struct_fields__:
        value = getattr(ExportOptions(), name)
        if isinstance(value, bool):
            lines.append(f"{name} = {str(value).lower()}")
        elif isinstance(value, int | float) or hasattr(value, "value"):
            shown = getattr(value, "value", value)
            lines.append(f"{name} = {shown!r}".replace("'", '"'))
    path = config(tmp_path, "\n".join(lines) + "\n")
    with_file = resolve_settings({**vars(export_parser().parse_args(BASE)), "config": str(path)}, CREDS)
    without = resolve_settings(vars(export_parser().parse_args(BASE)), CREDS)
    assert with_file == without


def test_credentials_come_whole_from_one_layer(tmp_path: Path) -> None:
    """A secret in the environment wins over a token file in the config file: layers are not mixed."""
    token = tmp_path / "token"
    token.write_text("config-token\n")
    path = config(tmp_path, 'token_file = "token"\n')
    namespace = vars(export_parser().parse_args([*BASE, "--config", str(path)]))
    settings = resolve_settings(namespace, CREDS)[0]
    assert (settings.client_id, settings.client_secret, settings.token) == ("id", SECRET, None)
    settings = resolve_settings(namespace, {})[0]
    assert (settings.client_secret, settings.token) == (None, "config-token")


@pytest.mark.parametrize(
    "toml",
    [
        pytest.param(f"client_secret = {SECRET_NUMBER}\n", id="secret"),
        pytest.param(f"token = [{SECRET_NUMBER}]\n", id="token"),
    ],
)
def test_a_malformed_secret_in_the_config_is_refused_without_repeating_it(
    tmp_path: Path, toml: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A secret of the wrong type is a usage error that names the key and never the value."""
    path = config(tmp_path, 'client_id = "i"\n' + toml)
    assert (
        main(["export", *BASE, "--output", str(tmp_path / "o.jsonl"), "--config", str(path)])
        == ExitCode.USAGE
    )
    err = capsys.readouterr().err
    assert "in the config file" in err and "must be a string" in err
    assert str(SECRET_NUMBER) not in err
