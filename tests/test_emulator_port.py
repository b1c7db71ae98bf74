"""``ispring-async emulator --port``: a bad port is a usage error (the options are derived from the config,
the port is not, so it is checked here)."""

from __future__ import annotations

import pytest

from ispring_async.emulator._cli import main as emulator_main


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    "port",
    [pytest.param("99999", id="too-big"), pytest.param("-1", id="negative"), pytest.param("x", id="word")],
)
def test_the_emulator_refuses_a_port_out_of_range_as_a_usage_error(
    port: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``ispring-async emulator --port 99999`` is argparse's exit 2 naming --port, not a bind() traceback."""
    with pytest.raises(SystemExit) as exited:
        emulator_main(["--port", port])
    assert exited.value.code == 2
    assert "--port" in capsys.readouterr().err
