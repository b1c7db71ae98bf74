"""The option value objects in ``_config.py`` refuse bad values: ConfigurationError naming the field."""

from __future__ import annotations

import math
from typing import Any

import pytest

from ispring_async import ConfigurationError, Limits, RetryPolicy, Timeouts

# Values of the wrong type, as a TOML file or a careless caller would give them.
BAD: dict[str, dict[str, Any]] = {
    "attempts": {"attempts": "3"},
    "wait_scale": {"wait_scale": None},
    "read": {"read": "60"},
    "max_connections": {"max_connections": 2.5},
}


@pytest.mark.parametrize(
    ("make", "field"),
    [
        pytest.param(lambda: Timeouts(read=0), "Timeouts.read", id="timeout-zero"),
        pytest.param(lambda: Timeouts(connect=-1.0), "Timeouts.connect", id="timeout-negative"),
        pytest.param(lambda: Timeouts(request=math.nan), "Timeouts.request", id="timeout-nan"),
        pytest.param(lambda: Timeouts(**BAD["read"]), "Timeouts.read", id="timeout-string"),
        pytest.param(lambda: Timeouts(read=True), "Timeouts.read", id="timeout-bool"),
        pytest.param(lambda: Limits(max_connections=0), "Limits.max_connections", id="limits-zero"),
        pytest.param(lambda: Limits(**BAD["max_connections"]), "Limits.max_connections", id="limits-float"),
        pytest.param(lambda: Limits(keepalive_expiry=-1), "Limits.keepalive_expiry", id="keepalive-negative"),
        pytest.param(lambda: RetryPolicy(attempts=0), "RetryPolicy.attempts", id="attempts-zero"),
        pytest.param(lambda: RetryPolicy(**BAD["attempts"]), "RetryPolicy.attempts", id="attempts-string"),
        pytest.param(lambda: RetryPolicy(maximum=math.nan), "RetryPolicy.maximum", id="retry-nan"),
        pytest.param(lambda: RetryPolicy(total=-5), "RetryPolicy.total", id="retry-negative"),
        pytest.param(lambda: RetryPolicy(**BAD["wait_scale"]), "RetryPolicy.wait_scale", id="scale-none"),
    ],
)
def test_bad_values_raise_configuration_error_naming_the_field(make: Any, field: str) -> None:
    """Each bad value is a ConfigurationError (still a ValueError) whose message names its field."""
    with pytest.raises(ConfigurationError, match=field.replace(".", r"\.")) as caught:
        make()
    assert isinstance(caught.value, ValueError)


def test_defaults_and_edges_are_accepted() -> None:
    """Production defaults, integers for seconds, zero waits and an unbounded timeout are valid."""
    assert Timeouts(read=1, connect=math.inf).read == 1
    assert Limits(max_connections=1, keepalive_expiry=0).max_connections == 1
    assert RetryPolicy(attempts=1, wait_scale=0, initial=0).attempts == 1
