"""Issue 24 ("also seen"): refusal messages echoed user text back whole and raw. Every echo of a
user's value now goes through ``engine.inputs.errors.echo``: its repr (control characters, line
breaks, NULs and terminal escapes escaped), cut to about 80 characters."""

from __future__ import annotations

import pytest

from engine.inputs.errors import ECHO_MAX_CHARS, echo
from engine.inputs.rules import check_range
from jobs.intake.limits import ServiceLimits, check_params
from jobs.settings import Settings
from tests.support.api import assert_problem
from tests.support.payloads import job_body

HOSTILE = "\x1b[2J\x1b[31mowned\x00\r\n\u202e" + "A" * 5000


def _clean(message: str) -> None:
    assert len(message) < 400, len(message)
    assert not any(ch in message for ch in "\x1b\x00\r\n\u202e"), message
    assert "A" * (ECHO_MAX_CHARS + 1) not in message


def test_echo_escapes_and_cuts():
    shown = echo(HOSTILE)
    _clean(shown)
    assert shown.startswith("'\\x1b[2J") and shown.endswith(f"... ({len(HOSTILE)} characters)")
    assert echo("short") == "'short'" and echo(7) == "7"
    _clean(echo(list(range(100000))))
    _clean(echo({"k" * 500: HOSTILE}))


def test_the_rules_and_the_service_limits_never_echo_a_value_whole():
    with pytest.raises(ValueError) as refused:
        check_range("steps", HOSTILE, 1, 100, integer=True)
    _clean(str(refused.value))
    limits = ServiceLimits.from_settings(Settings(_env_file=None))
    with pytest.raises(ValueError) as refused:
        check_params({"prompt": "a person", "steps": [HOSTILE] * 1000}, limits)
    _clean(str(refused.value))


@pytest.mark.parametrize(
    "overrides",
    [
        {"prompt": "a person", "subject_words": [HOSTILE]},
        {"prompt": "a person", "subject_words": ["\x1b[31mred\x1b[0m"]},
    ],
    ids=["long subject word", "escape-sequence subject word"],
)
def test_a_refusal_over_http_shows_the_value_escaped_and_cut(client, overrides):
    response = client.post("/animations", json=job_body(**overrides))
    assert_problem(
        response,
        422,
        "parameter_out_of_range" if len(overrides["subject_words"][0]) > 100 else "subject_not_in_prompt",
    )
    _clean(response.json()["detail"])
