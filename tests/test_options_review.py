"""Adversarial review of the export's settings layers (issue 15, part 1): the inputs a user gets wrong.

Whitespace in environment variables, a key spelled two ways in one TOML file, a padded number, values
deep inside a TOML table, a secret in a layer that loses, and precedence between an id list and its file
across layers. Every refusal is exit 2 naming the key; no message repeats a secret.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ispring_async._app.cli import export_parser, main, resolve_settings
from ispring_async._app.export import ExitCode

SECRET = "rev-s3cret-77aa"
URL = "https://acme.ispringlearn.com"
CREDS = {"ISPRING_CLIENT_ID": "id", "ISPRING_CLIENT_SECRET": SECRET, "ISPRING_BASE_URL": URL}
UUID_A = "11111111-1111-4111-8111-111111111111"
UUID_B = "22222222-2222-4222-8222-222222222222"


def config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    return path


def refused(tmp_path: Path, env: dict[str, str], toml: str, capsys: pytest.CaptureFixture[str]) -> str:
    """The stderr of an export the layers refuse (exit 2); fails if it is not refused."""
    argv = ["export", "--output", str(tmp_path / "o.jsonl"), "--config", str(config(tmp_path, toml))]
    with pytest.MonkeyPatch.context() as patch:
        for key in ("ISPRING_CLIENT_ID", "ISPRING_CLIENT_SECRET", "ISPRING_BASE_URL", "ISPRING_TOKEN"):
            patch.delenv(key, raising=False)
        for key, value in env.items():
            patch.setenv(key, value)
        assert main(argv) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert SECRET not in err
    return err


def settings(tmp_path: Path, argv: list[str], env: dict[str, str], toml: str = "") -> object:
    namespace = vars(export_parser().parse_args(["--output", str(tmp_path / "o.jsonl"), *argv]))
    namespace["config"] = str(config(tmp_path, toml))
    return resolve_settings(namespace, env)[0]


@pytest.mark.parametrize(
    ("variable", "field", "expected"),
    [
        pytest.param("ISPRING_BASE_URL", "base_url", URL, id="base-url"),
        pytest.param("ISPRING_CLIENT_ID", "client_id", "id", id="client-id"),
        pytest.param("ISPRING_CLIENT_SECRET", "client_secret", SECRET, id="secret"),
    ],
)
def test_environment_values_are_stripped(tmp_path: Path, variable: str, field: str, expected: str) -> None:
    """A value padded with spaces or ending in a newline reads as itself (a secret file is stripped too)."""
    got = settings(tmp_path, [], {**CREDS, variable: f"  {CREDS[variable]}\n"})
    assert getattr(got, field) == expected


@pytest.mark.parametrize(
    ("variable", "message"),
    [
        pytest.param("ISPRING_BASE_URL", "no base URL", id="base-url"),
        pytest.param("ISPRING_CLIENT_ID", "no client id", id="client-id"),
        pytest.param("ISPRING_CLIENT_SECRET", "no credentials", id="secret"),
    ],
)
def test_a_whitespace_only_variable_is_unset(
    tmp_path: Path, variable: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``VAR=" "`` is as unset as ``VAR=""``: the export says what is missing instead of using a blank."""
    assert message in refused(tmp_path, {**CREDS, variable: " \t "}, "", capsys)


def test_a_whitespace_token_next_to_a_secret_is_no_token(tmp_path: Path) -> None:
    """``ISPRING_TOKEN=" "`` beside a client secret is unset, not "both a secret and a token"."""
    got = settings(tmp_path, [], {**CREDS, "ISPRING_TOKEN": " "})
    assert (got.client_secret, got.token) == (SECRET, None)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        pytest.param(
            "page-size = 10\npage_size = 20\n", "page_size is given twice", id="dash-and-underscore"
        ),
        pytest.param("concurrency = ' 4 '\n", "concurrency in the config file", id="padded-number"),
        pytest.param("concurrency = '4_0'\n", "must be a whole number, got '4_0'", id="underscored-number"),
        pytest.param("concurrency = {a = {b = 1}}\n", "must be a whole number", id="table-deep-for-int"),
        pytest.param("user_ids = ['a', ['b', 1]]\n", "user_ids in the config file", id="nested-list"),
        pytest.param("[export]\nconcurrency = 2\n", "unknown key 'export'", id="a-table-of-options"),
        pytest.param(f"clientsecret = '{SECRET}'\n", "unknown key 'clientsecret'", id="misspelt-secret"),
        pytest.param(f"client_secret = {{v = '{SECRET}'}}\n", "must be a string", id="secret-in-a-table"),
        pytest.param(f"token = [['{SECRET}']]\n", "must be a string", id="token-in-a-nested-list"),
    ],
)
def test_a_wrong_config_value_is_refused_by_name(
    tmp_path: Path, toml: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each is exit 2 naming the key, never the secret; a padded number is not blamed on a bound."""
    env = {"ISPRING_CLIENT_ID": "id", "ISPRING_BASE_URL": URL}
    err = refused(tmp_path, env, toml, capsys)
    assert message in err
    assert "must be >=" not in err


def test_the_padded_number_message_does_not_blame_the_bound(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``concurrency = ' 4 '`` says "must be a whole number", not "must be >= 1, got 4"."""
    err = refused(tmp_path, CREDS, "concurrency = ' 4 '\n", capsys)
    assert "must be a whole number, got ' 4 '" in err


@pytest.mark.parametrize(
    ("argv", "toml", "expected"),
    [
        pytest.param(
            ["--user-id", UUID_A], "user_ids_file = 'ids.txt'\n", (UUID_A,), id="argv-list-over-file"
        ),
        pytest.param(
            ["--user-ids-file", "ids.txt"], f"user_ids = ['{UUID_A}']\n", (UUID_B,), id="argv-file-over-list"
        ),
        pytest.param([], f"user_ids = ['{UUID_A}']\n", (UUID_A,), id="file-layer-alone"),
    ],
)
def test_an_id_list_and_its_file_come_from_one_layer(
    tmp_path: Path, argv: list[str], toml: str, expected: tuple[str, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The higher layer's list or file wins whole; the lower layer's never adds to it."""
    (tmp_path / "ids.txt").write_text(UUID_B + "\n")
    monkeypatch.chdir(tmp_path)
    got = settings(tmp_path, argv, CREDS, toml)
    assert tuple(got.query.user_ids) == expected  # type: ignore[attr-defined]
