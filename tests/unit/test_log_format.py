"""Log formats: --log-json gives one JSON object per line with the structured fields."""

from __future__ import annotations

import json
import logging
import sys

from tessera.cli import JsonFormatter, TextFormatter, structured_fields


def record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    logger = logging.getLogger("tessera.test")
    made = logger.makeRecord("tessera.test", logging.INFO, __file__, 1, message, args, None)
    for key, value in extra.items():
        setattr(made, key, value)
    return made


def test_json_line_has_the_standard_keys_and_the_extra_fields() -> None:
    line = JsonFormatter().format(record("job %s: phase %s", "7", "copy", job="7", epoch=3))
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["level"] == "info"
    assert entry["logger"] == "tessera.test"
    assert entry["msg"] == "job 7: phase copy"
    assert entry["job"] == "7"
    assert entry["epoch"] == 3
    assert entry["ts"].endswith("Z")
    assert entry["ts"][10] == "T"


def test_json_keeps_a_traceback_on_one_line_and_stringifies_odd_values() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        made = record("failed", where=object())
        made.exc_info = sys.exc_info()
    line = JsonFormatter().format(made)
    assert "\n" not in line
    entry = json.loads(line)
    assert "ValueError: boom" in entry["exc"]
    assert entry["where"].startswith("<object object")


def test_a_field_named_like_a_standard_key_does_not_replace_it() -> None:
    entry = json.loads(JsonFormatter().format(record("hello", level="fake", ts="fake")))
    assert entry["level"] == "info"
    assert entry["ts"] != "fake"


def test_structured_fields_are_only_the_extras() -> None:
    assert structured_fields(record("plain")) == {}
    assert structured_fields(record("x", job="1", cluster="c")) == {"job": "1", "cluster": "c"}


def test_text_lines_show_the_fields_after_the_message() -> None:
    line = TextFormatter().format(record("job %s: committed", "4", job="4", map_version=9))
    assert line.endswith("tessera.test INFO job 4: committed [job=4 map_version=9]")
    assert TextFormatter().format(record("plain")).endswith("INFO plain")
