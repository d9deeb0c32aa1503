"""The ``<per second>:<burst>`` form of a rate, and its errors."""

from __future__ import annotations

import pytest

from mesh.config import ConfigError, Settings
from mesh.limits.rates import Rate, parse_rate


def test_parse_rate_reads_rate_and_burst_or_off():
    assert parse_rate("50:100") == Rate(50, 100)
    assert parse_rate(" 0.5:1 ") == Rate(0.5, 1)
    assert parse_rate("OFF") is None
    assert str(Rate(0.5, 3)) == "0.5:3"


@pytest.mark.parametrize("text", ["", "fast", "50", "50:", ":10", "0:10", "-1:10", "5:0", "nan:5", "inf:5", "5:1.5"])
def test_malformed_rates_are_refused(text):
    with pytest.raises(ValueError, match="<calls per second>:<burst>"):
        parse_rate(text)


def test_settings_read_the_rates_and_name_the_variable_of_a_bad_one():
    settings = Settings.from_environ({"VOCELIO_RATE_LIMIT_WRITE": "3:7", "VOCELIO_RATE_LIMIT_AUTH": "off"})
    assert settings.rate_limit_write == Rate(3, 7)
    assert settings.rate_limit_auth is None
    assert settings.rate_limit_read == Settings().rate_limit_read
    with pytest.raises(ConfigError, match="VOCELIO_RATE_LIMIT_EXPENSIVE"):
        Settings.from_environ({"VOCELIO_RATE_LIMIT_EXPENSIVE": "lots"})
    with pytest.raises(ConfigError, match="VOCELIO_MAX_IN_FLIGHT"):
        Settings.from_environ({"VOCELIO_MAX_IN_FLIGHT": "-1"})
    with pytest.raises(ConfigError, match="VOCELIO_MAX_STREAMS_PER_PRINCIPAL"):
        Settings.from_environ({"VOCELIO_MAX_STREAMS_PER_PRINCIPAL": "-2"})
