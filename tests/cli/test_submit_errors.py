"""``poseanimate submit`` for a new user (issue 24's walk): no API there is one ``poseanimate: error:``
line and exit code 2, the URL ``make up`` recorded is found whatever ``PORT`` it used, and
``POSEANIMATE_API_URL`` is in ``--help``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli.main import main
from tests.support.servers import free_port

REPO = Path(__file__).resolve().parents[2]
IMAGE = REPO / "examples/astronaut.jpg"
POSES = REPO / "examples/raise_arms.json"


def submit(*extra: str) -> int:
    return main(
        ["submit", "--key", "k", "--image", str(IMAGE), "--poses", str(POSES), "--prompt", "x", *extra]
    )


def test_no_api_there_is_one_error_line_and_exit_2(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    url = f"http://127.0.0.1:{free_port()}"
    code = submit("--api", url)
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("poseanimate: error: cannot reach the API at " + url) and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and "POSEANIMATE_API_URL" in err


def test_the_api_url_comes_from_the_environment_then_what_make_up_recorded(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("POSEANIMATE_API_URL", raising=False)
    recorded = f"http://127.0.0.1:{free_port()}"
    (tmp_path / ".run").mkdir()
    (tmp_path / ".run/stack.json").write_text(json.dumps({"api_url": recorded}))
    assert submit() == 2
    assert f"cannot reach the API at {recorded}" in capsys.readouterr().err
    from_env = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("POSEANIMATE_API_URL", from_env)
    assert submit() == 2
    assert f"cannot reach the API at {from_env}" in capsys.readouterr().err


def test_submit_help_names_the_url_variable(capsys):
    with pytest.raises(SystemExit):
        main(["submit", "--help"])
    assert "POSEANIMATE_API_URL" in capsys.readouterr().out
