"""docker-compose.yml only runs the project's own console scripts, with options they accept."""

from __future__ import annotations

import argparse
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from confmaster.__main__ import build_parser as confmaster_parser
from confmaster.cli import build_parser as cli_parser
from gateway.__main__ import build_parser as gateway_parser
from pgserver.__main__ import build_parser as pgserver_parser
from tessera.up import build_parser as tessera_parser

REPO = Path(__file__).resolve().parents[2]
PARSERS: dict[str, argparse.ArgumentParser] = {
    "pgserver": pgserver_parser(),
    "gateway": gateway_parser(),
    "confmaster": confmaster_parser(),
    "confmaster-cli": cli_parser(),
    "tessera": tessera_parser(),
}


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return loaded


def check(argv: list[str]) -> None:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert argv[0] in scripts, f"{argv[0]} is not a console script of the project"
    try:
        PARSERS[argv[0]].parse_args(argv[1:])
    except SystemExit as exc:
        pytest.fail(f"{' '.join(argv)}: rejected by its parser (exit {exc.code})")


def test_every_service_runs_a_real_console_script_with_valid_options() -> None:
    services = compose()["services"]
    assert {"zookeeper", "confmaster", "bootstrap"} <= set(services)
    assert sum(name.startswith("pgserver") for name in services) == 4
    assert sum(name.startswith("gateway") for name in services) == 2
    checked = 0
    for name, service in services.items():
        command = service.get("command")
        if command is None:
            assert "image" in service
            assert name == "zookeeper"
            continue
        if command[:2] == ["sh", "-c"]:
            for part in command[2].replace("(", " ").replace(")", " ").split("&&"):
                for alternative in part.split("||"):
                    check(shlex.split(alternative))
                    checked += 1
        else:
            check(command)
            checked += 1
    assert checked >= 14


def test_gateways_are_published_and_follow_zookeeper() -> None:
    services = compose()["services"]
    for name in ("gateway-a", "gateway-b"):
        args = PARSERS["gateway"].parse_args(services[name]["command"][1:])
        assert args.zk == "zookeeper:2181"
        assert services[name]["ports"]
