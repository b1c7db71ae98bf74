"""The README's library quickstart runs as written (against the emulator instead of a real account)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ispring_async.emulator import EmulatorConfig, serve_in_thread

README = Path(__file__).resolve().parents[1] / "README.md"


def test_quickstart_runs_against_the_emulator(capsys: pytest.CaptureFixture[str]) -> None:
    """The first Python block of the README exports every record it promises."""
    block = re.search(r"```python\n(.*?)```", README.read_text(), re.S)
    assert block is not None
    with serve_in_thread(EmulatorConfig(results=300, seed=3)) as emu:
        code = (
            block.group(1)
            .replace('"https://api-learn.ispringlearn.com"', repr(emu.base_url))
            .replace('client_id="..."', f"client_id={emu.client_id!r}")
            .replace('client_secret="..."', f"client_secret={emu.client_secret!r}")
        )
        exec(compile(code, str(README), "exec"), {"__name__": "readme"})
        expected = emu.expected_results([("userStatuses[]", "1"), ("userStatuses[]", "3")])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(expected) > 0
    assert {line.split()[0] for line in lines} == {r.user_id for r in expected}
