"""The JSON report validates against docs/interop-report.schema.json; the JUnit XML against
the JUnit structure CI systems read.

JSON: a small validator for the JSON Schema keywords the schema uses (type, const, enum,
required, properties, additionalProperties false, items, $ref to $defs). JUnit: a structural
validator (no XSD engine is installed here) that checks the rules of the widely used JUnit
schema (Jenkins xunit-plugin ``junit-10.xsd``): ``testsuites`` > ``testsuite`` (name, tests,
failures, errors, skipped, time as numbers) > optional ``properties`` (``property`` name/value)
then ``testcase`` (name, classname, time) with at most one ``failure`` (message, type) or
``skipped``; the counts agree with the cases.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from securemsg.interop.peers import resolve_peer
from securemsg.interop.runner import Report, Result, run_suite
from securemsg.interop.scenarios import Params

SCHEMA = Path(__file__).resolve().parents[3] / "docs" / "interop-report.schema.json"
_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "null": (type(None),),
    "boolean": (bool,),
}


def validate(value: Any, schema: dict[str, Any], root: dict[str, Any], path: str = "$") -> None:
    if "$ref" in schema:
        name = schema["$ref"].removeprefix("#/$defs/")
        validate(value, root["$defs"][name], root, path)
        return
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        ok = any(
            isinstance(value, _TYPES[t])
            and not (t in ("integer", "number") and isinstance(value, bool))
            for t in types
        )
        assert ok, f"{path}: {value!r} is not {types}"
    if "const" in schema:
        assert value == schema["const"], f"{path}: {value!r} != {schema['const']!r}"
    if "enum" in schema:
        assert value in schema["enum"], f"{path}: {value!r} not in {schema['enum']}"
    if isinstance(value, dict):
        for key in schema.get("required", []):
            assert key in value, f"{path}: missing {key}"
        props = schema.get("properties", {})
        if schema.get("additionalProperties") is False:
            extra = set(value) - set(props)
            assert not extra, f"{path}: unexpected {sorted(extra)}"
        for key, sub in props.items():
            if key in value:
                validate(value[key], sub, root, f"{path}.{key}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            validate(item, schema["items"], root, f"{path}[{i}]")


def validate_junit(data: bytes) -> None:
    root = ET.fromstring(data)
    assert root.tag == "testsuites"
    suites = list(root)
    assert suites and all(s.tag == "testsuite" for s in suites)
    for suite in suites:
        for attr in ("name", "tests", "failures", "errors", "skipped", "time"):
            assert attr in suite.attrib, f"testsuite lacks {attr}"
        float(suite.attrib["time"])
        children = list(suite)
        if children and children[0].tag == "properties":
            for prop in children[0]:
                assert prop.tag == "property" and {"name", "value"} <= set(prop.attrib)
            children = children[1:]
        assert all(c.tag == "testcase" for c in children)
        failures = skipped = 0
        for case in children:
            assert {"name", "classname", "time"} <= set(case.attrib)
            float(case.attrib["time"])
            inner = list(case)
            assert len(inner) <= 1
            for element in inner:
                assert element.tag in ("failure", "skipped")
                if element.tag == "failure":
                    assert "message" in element.attrib and "type" in element.attrib
                    failures += 1
                else:
                    skipped += 1
        assert int(suite.attrib["tests"]) == len(children)
        assert int(suite.attrib["failures"]) == failures
        assert int(suite.attrib["skipped"]) == skipped
        assert int(suite.attrib["errors"]) == 0


def mixed_report() -> Report:
    report = Report(
        {"peer": "securemsg", "implementation": {"name": "securemsg"}, "capabilities": ["session"]},
        {"peer": "./my peer", "implementation": {}, "capabilities": []},
        5,
        Params(),
        "2026-01-01T00:00:00+00:00",
        1.5,
    )
    report.results = [
        Result("setup_with_otpk", "A->B", "pass", 0.1),
        Result("tamper", "A->B", "fail", 0.2, "B accepted a flipped MAC <&>", "log line\n"),
        Result("groups", "B->A", "unsupported", 0.0, "B lacks groups"),
    ]
    return report


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(SCHEMA.read_text())
    return loaded


def test_mixed_report_validates(schema: dict[str, Any]) -> None:
    report = mixed_report()
    data = json.loads(json.dumps(report.to_json()))
    validate(data, schema, schema)
    assert data["summary"] == {"pass": 1, "fail": 1, "unsupported": 1}
    junit = report.to_junit()
    validate_junit(junit)
    root = ET.fromstring(junit)
    failure = root.find("./testsuite/testcase/failure")
    assert failure is not None and failure.attrib["message"] == "B accepted a flipped MAC <&>"


def test_control_characters_from_a_peer_do_not_break_the_junit_file() -> None:
    """A peer's stderr and divergence text are the peer's (colour codes, NULs): characters
    XML cannot hold are replaced, so the report still parses and validates."""
    report = mixed_report()
    report.results[1] = Result(
        "tamper", "A->B", "fail", 0.2, "bad \x00 byte", "\x1b[31mred\x1b[0m \ud800 \x07\n"
    )
    junit = report.to_junit()
    validate_junit(junit)
    failure = ET.fromstring(junit).find("./testsuite/testcase/failure")
    assert failure is not None and failure.attrib["message"] == "bad \ufffd byte"
    assert failure.text == "\ufffd[31mred\ufffd[0m \ufffd \ufffd\n"


def test_a_real_run_validates(schema: dict[str, Any]) -> None:
    peer = ("securemsg", resolve_peer("securemsg"))
    report = run_suite(
        peer, peer, only=["fingerprint"], seed=1, params=Params(fingerprint_iterations=10)
    )
    validate(json.loads(json.dumps(report.to_json())), schema, schema)
    validate_junit(report.to_junit())


def test_the_validators_reject_bad_documents(schema: dict[str, Any]) -> None:
    data = mixed_report().to_json()
    data["results"][0]["status"] = "maybe"
    with pytest.raises(AssertionError):
        validate(data, schema, schema)
    with pytest.raises(AssertionError):
        validate_junit(b"<testsuites><testsuite name='x'/></testsuites>")
