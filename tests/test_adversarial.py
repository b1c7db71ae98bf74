"""A second adversarial pass over issue 12's hardening: inputs the first pass did not write.

Each test names the behaviour it pins; servers are on 127.0.0.1, faults are scripted, probes bounded.
"""

from __future__ import annotations

import types

import pytest

from ispring_async import ISpringError
from tests._servers import raw_server
from tests.test_hostile_server import MALFORMED, SECRET, TOKEN, _token_reply, client_for, reachable


def frame_locals_shown(exc: BaseException) -> str:
    """``repr`` of every local of every frame in the tracebacks reachable from ``exc`` (what Sentry sends)."""
    shown: list[str] = []
    for error in reachable(exc):
        tb: types.TracebackType | None = error.__traceback__
        while tb is not None:
            for name, value in tb.tb_frame.f_locals.items():
                shown.append(f"{tb.tb_frame.f_code.co_name}.{name}={value!r}")
            tb = tb.tb_next
    return "\n".join(shown)


@pytest.mark.anyio
@pytest.mark.parametrize(
    "which", [pytest.param("data", id="results-request"), pytest.param("token", id="token-request")]
)
@pytest.mark.parametrize(
    "malformed",
    [
        *MALFORMED[:3],
        MALFORMED[5],
        pytest.param(
            b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
            id="plain-400",
        ),
    ],
)
async def test_traceback_frame_locals_of_a_raised_error_hold_no_secret(which: str, malformed: bytes) -> None:
    """Error trackers record every frame's locals: none of ours may show the token or client secret."""
    bad = malformed

    def reply(head: bytes) -> bytes:
        is_token = head.startswith(b"POST /api/v3/token")
        if which == "token":
            return bad if is_token else _token_reply()
        return _token_reply() if is_token else bad

    async with raw_server(reply) as url, client_for(url) as client:
        with pytest.raises(ISpringError) as caught:
            await anext(client.result_pages())
    shown = frame_locals_shown(caught.value)
    assert "_attempt" in shown or "request" in shown  # the walk did reach our frames
    assert TOKEN not in shown, [line for line in shown.splitlines() if TOKEN in line]
    assert SECRET not in shown, [line for line in shown.splitlines() if SECRET in line]
