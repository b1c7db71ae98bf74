"""``ispring-async emulator``'s options are generated from EmulatorConfig, Faults and XmlLayout."""

from __future__ import annotations

import dataclasses

import pytest

from ispring_async.emulator import EmulatorConfig, Faults, XmlLayout
from ispring_async.emulator._cli import _options, build_config, main, parser


def test_every_scalar_field_has_an_option_and_no_option_sets_nothing() -> None:
    """Each int/float/str/bool/Literal field of the three configs is an option that reaches that field."""
    generated = {(cls, field.name) for cls, field, *_ in _options()}
    not_scalar = {"client_secret", "faults", "xml_layout", "extra_clients", "script"}
    for cls in (EmulatorConfig, Faults, XmlLayout):
        for field in dataclasses.fields(cls):
            if field.name not in not_scalar:
                assert (cls, field.name) in generated, f"{cls.__name__}.{field.name} has no option"
    for owner, field, _group, flag, options in _options():
        samples: dict[object, str] = {int: "7", float: "0.375", str: "/x"}
        value = samples.get(options.get("type"))
        argv = [flag] if value is None else [flag, value]
        if flag == "--latency-p99":  # valid only with a median below it
            argv += ["--latency-median", "0.25"]
        if "choices" in options:
            argv = [flag, options["choices"][-1]]
        config = build_config(parser().parse_args(argv))
        target = {EmulatorConfig: config, Faults: config.faults, XmlLayout: config.xml_layout}[owner]
        assert getattr(target, field.name) != field.default or flag == "--results", flag


def test_without_options_the_configs_own_defaults_apply() -> None:
    """Unset options keep the dataclasses' defaults; only the command's bigger dataset differs."""
    config = build_config(parser().parse_args([]))
    assert config == dataclasses.replace(
        EmulatorConfig(), results=100_000, client_secret=config.client_secret
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(["--server-error", "1.5"], "Faults.server_error", id="probability"),
        pytest.param(["--xml-indent", "-1"], "XmlLayout.indent", id="layout"),
        pytest.param(["--departments", "0"], "EmulatorConfig.departments", id="dataset"),
    ],
)
def test_a_value_the_config_refuses_is_exit_2_naming_the_field(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The configs' own validation speaks for the command: exit status 2 and the field's name."""
    assert main(argv) == 2
    assert message in capsys.readouterr().err
