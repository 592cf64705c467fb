"""Secrets from flags, files and the environment; exposure warnings; ZooKeeper credentials."""

from __future__ import annotations

import argparse
import os
import stat
from pathlib import Path

import pytest

from tessera.errors import ConfigError
from tessera.http import bearer_matches
from tessera.security import (
    CLUSTER_SECRET_ENV,
    REQUIREPASS_ENV,
    ZkAuth,
    add_cluster_secret_argument,
    add_requirepass_arguments,
    add_zk_auth_arguments,
    auth_accepted,
    cluster_secret_from,
    exposure_warning,
    is_loopback,
    requirepass_from,
    secret_matches,
    write_secret_file,
    zk_auth_from,
)


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_cluster_secret_argument(parser)
    add_requirepass_arguments(parser)
    add_zk_auth_arguments(parser)
    return parser.parse_args(list(argv))


def test_a_secret_file_is_read_without_its_trailing_newline(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text("s3cret\n")
    path.chmod(0o600)
    assert cluster_secret_from(parse("--cluster-secret-file", str(path))) == "s3cret"


def test_the_file_wins_over_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CLUSTER_SECRET_ENV, "from-env")
    assert cluster_secret_from(parse()) == "from-env"
    path = tmp_path / "secret"
    path.write_text("from-file")
    assert cluster_secret_from(parse("--cluster-secret-file", str(path))) == "from-file"


def test_no_secret_anywhere_is_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CLUSTER_SECRET_ENV, raising=False)
    monkeypatch.delenv(REQUIREPASS_ENV, raising=False)
    assert cluster_secret_from(parse()) is None
    assert requirepass_from(parse()) is None


@pytest.mark.parametrize("content", ["", "\n", "   \n"])
def test_an_empty_secret_file_is_a_config_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "secret"
    path.write_text(content)
    with pytest.raises(ConfigError, match="is empty"):
        cluster_secret_from(parse("--cluster-secret-file", str(path)))


def test_a_missing_secret_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the cluster secret file"):
        cluster_secret_from(parse("--cluster-secret-file", str(tmp_path / "nope")))


def test_requirepass_from_flag_file_or_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(REQUIREPASS_ENV, "env-pass")
    assert requirepass_from(parse()) == "env-pass"
    assert requirepass_from(parse("--requirepass", "flag-pass")) == "flag-pass"
    path = tmp_path / "pass"
    path.write_text("file-pass\n")
    assert requirepass_from(parse("--requirepass-file", str(path))) == "file-pass"
    with pytest.raises(ConfigError, match="not both"):
        requirepass_from(parse("--requirepass", "x", "--requirepass-file", str(path)))


def test_written_secret_files_are_private_and_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "cluster.secret"
    write_secret_file(path, "abc")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert path.read_text() == "abc\n"
    with pytest.raises(FileExistsError):
        write_secret_file(path, "other")


def test_secret_comparison() -> None:
    assert secret_matches(b"abc", "abc")
    assert not secret_matches(b"abd", "abc")
    assert not secret_matches(b"", "abc")
    assert not secret_matches(b"abc", None)


def test_bearer_header() -> None:
    assert bearer_matches("Bearer abc", "abc")
    assert bearer_matches("bearer  abc ", "abc")
    assert not bearer_matches("Bearer abd", "abc")
    assert not bearer_matches("Basic abc", "abc")
    assert not bearer_matches("", "abc")


def test_auth_replies_that_let_an_internal_client_go_on() -> None:
    assert auth_accepted(b"+OK")
    assert auth_accepted(
        b"-ERR AUTH <password> called without any password configured for the default user. "
        b"Are you sure your configuration is correct?"
    )
    assert not auth_accepted(b"-WRONGPASS invalid username-password pair or user is disabled.")
    assert not auth_accepted(b"-NOAUTH Authentication required.")


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.53", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.1.2.3", False),
        ("db.example.com", False),
    ],
)
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_exposure_warning_names_what_is_missing() -> None:
    assert exposure_warning("gateway", "127.0.0.1", {"requirepass": True}) is None
    assert exposure_warning("gateway", "0.0.0.0", {"requirepass": False}) is None
    warning = exposure_warning(
        "gateway", "0.0.0.0", {"requirepass": True, "a cluster secret": True}
    )
    assert warning is not None
    assert "SECURITY WARNING" in warning
    assert "without requirepass and without a cluster secret" in warning


def test_zk_auth_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "zk"
    path.write_text("tessera:pa:ss\n")
    auth = zk_auth_from(parse("--zk-auth-file", str(path), "--zk-world-read"))
    assert auth == ZkAuth(user="tessera", password="pa:ss", world_read=True)
    assert "pa:ss" not in repr(auth)


def test_zk_auth_needs_user_and_password(tmp_path: Path) -> None:
    path = tmp_path / "zk"
    path.write_text("justauser")
    with pytest.raises(ConfigError, match="USER:PASSWORD"):
        zk_auth_from(parse("--zk-auth-file", str(path)))


def test_zk_world_read_without_credentials_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TESSERA_ZK_AUTH", raising=False)
    with pytest.raises(ConfigError, match="needs ZooKeeper credentials"):
        zk_auth_from(parse("--zk-world-read"))
