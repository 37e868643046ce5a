"""``objectjobs user …`` and configuration errors, in-process on a data directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from objectjobs.cli import app
from tests.cli.mapi import Mapi
from tests.cli.serving import ServeProcess

runner = CliRunner()


def cli(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
    return runner.invoke(app, list(args), input=input, env=env)


def single_error(result: Result) -> str:
    assert result.exit_code != 0
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.output
    return lines[0].removeprefix("error: ")


def test_add_and_list_users(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    added = cli(
        "user",
        "add",
        "olivia",
        "--role",
        "operator",
        "--password-stdin",
        "--data-dir",
        data,
        input="s3cret-pass\n",
    )
    assert added.exit_code == 0, added.stderr
    assert "olivia" in added.stdout
    assert "s3cret-pass" not in added.output

    listed = cli("user", "list", "--data-dir", data, "--json")
    assert listed.exit_code == 0, listed.stderr
    users = json.loads(listed.stdout)
    assert [(u["name"], u["role"]) for u in users] == [("olivia", "operator")]
    assert isinstance(users[0]["id"], int)
    assert users[0]["created"].endswith("Z")

    table = cli("user", "list", "--data-dir", data)
    assert table.exit_code == 0
    header, row = table.stdout.splitlines()[:2]
    assert header.split() == ["ID", "NAME", "ROLE", "CREATED"]
    assert row.split()[1:3] == ["olivia", "operator"]

    again = cli(
        "user",
        "add",
        "olivia",
        "--role",
        "viewer",
        "--password-stdin",
        "--data-dir",
        data,
        input="other-pass\n",
    )
    assert "olivia" in single_error(again)
    assert again.exit_code == 1


def test_user_added_on_the_cli_signs_in(served: ServeProcess) -> None:
    name = f"op-{id(served)}"
    added = cli(
        "user",
        "add",
        name,
        "--role",
        "operator",
        "--password-stdin",
        "--data-dir",
        str(served.data_dir),
        input="op-password\n",
    )
    assert added.exit_code == 0, added.stderr
    api = Mapi(served.url, name, "op-password")
    try:
        info = api.ok("user/info")
        assert info["displayName"] == name
        assert "mapi:jobs:create" in info["roles"]
        assert "mapi:jobs:admin_list" not in info["roles"]
    finally:
        api.close()
    with pytest.raises(Exception, match="401"):
        Mapi(served.url, name, "wrong-password")


def test_bad_role(tmp_path: Path) -> None:
    result = cli(
        "user",
        "add",
        "x",
        "--role",
        "root",
        "--password-stdin",
        "--data-dir",
        str(tmp_path),
        input="pw\n",
    )
    assert result.exit_code == 2
    assert single_error(result) == "unknown role 'root': choose one of admin, operator, viewer"


def test_password_needs_a_terminal_or_stdin_flag(tmp_path: Path) -> None:
    result = cli("user", "add", "x", "--role", "viewer", "--data-dir", str(tmp_path))
    assert result.exit_code == 2
    assert "--password-stdin" in single_error(result)


def test_empty_password_on_stdin(tmp_path: Path) -> None:
    result = cli(
        "user",
        "add",
        "x",
        "--role",
        "viewer",
        "--password-stdin",
        "--data-dir",
        str(tmp_path),
        input="\n",
    )
    assert result.exit_code == 2
    assert single_error(result) == "no password on standard input"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('[server]\nport = "eighty"\n', "invalid settings: server.port:"),
        ("[server]\nport = 70000\n", "invalid settings: server.port:"),
        ("[worker]\nlease_s = 1\nheartbeat_s = 5\n", "invalid settings: worker:"),
        ("[nonsense]\nx = 1\n", "invalid settings: nonsense:"),
        ("[server\n", "invalid configuration file "),
    ],
)
@pytest.mark.parametrize("command", [["serve"], ["worker"], ["user", "list"]])
def test_config_errors_are_one_line(
    tmp_path: Path, content: str, expected: str, command: list[str]
) -> None:
    config = tmp_path / "objectjobs.toml"
    config.write_text(content)
    result = cli(*command, "--config", str(config))
    assert result.exit_code == 1
    assert single_error(result).startswith(expected)


def test_config_from_environment_variable(tmp_path: Path) -> None:
    config = tmp_path / "objectjobs.toml"
    config.write_text('[server]\nport = "eighty"\n')
    result = cli("user", "list", env={"OBJECTJOBS_CONFIG": str(config)})
    assert single_error(result).startswith("invalid settings: server.port:")


def test_missing_config_file(tmp_path: Path) -> None:
    result = cli("user", "list", "--config", str(tmp_path / "absent.toml"))
    assert single_error(result) == f"configuration file not found: {tmp_path / 'absent.toml'}"


def test_bad_tls_files(tmp_path: Path) -> None:
    config = tmp_path / "objectjobs.toml"
    (tmp_path / "cert.pem").write_text("not a certificate")
    (tmp_path / "key.pem").write_text("not a key")
    config.write_text(
        f'[server]\ntls_cert = "{tmp_path / "cert.pem"}"\ntls_key = "{tmp_path / "key.pem"}"\n'
    )
    result = cli("serve", "--config", str(config), "--data-dir", str(tmp_path / "d"))
    assert single_error(result).startswith(f"cannot load TLS certificate {tmp_path / 'cert.pem'}")
    assert result.exit_code == 1
