"""Request inputs: the JSON body and numeric query parameters, each refused with a 400 naming what is wrong."""

from __future__ import annotations

import math

import pytest
from flask import Flask, jsonify

from services.kit.errors import register_error_handlers
from services.kit.inputs import MAX_SHOWN_CHARS, int_arg, json_body, parse_json


@pytest.fixture
def client():
    app = Flask("inputs")
    register_error_handlers(app)

    @app.post("/echo")
    def echo():
        return jsonify({"body": json_body()})

    @app.get("/page")
    def page():
        return jsonify({"limit": int_arg("limit", 100, 0, 1000), "shift": int_arg("shift", 0, -50, 50)})

    return app.test_client()


def refused(response, *words: str) -> str:
    assert response.status_code == 400, response.get_data(as_text=True)[:200]
    error = response.get_json()["error"]
    for word in words:
        assert word in error
    return error


# ------------------------------------------------------------------ the JSON body


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        (b'{"a": [1, 2.5, "x", null, true]}', {"a": [1, 2.5, "x", None, True]}),
        (b"1e308", 1e308),
        (b"-0.0", -0.0),
        (b"9" * 400, int("9" * 400)),  # a big integer is exact JSON; the route decides whether it fits
        ('"ünï"'.encode("utf-16"), "ünï"),  # JSON's other encodings still work, as they did through get_json
    ],
)
def test_valid_json_is_read(client, raw, value):
    assert client.post("/echo", data=raw).get_json()["body"] == value


@pytest.mark.parametrize("depth", [10_000, 100_000])
@pytest.mark.parametrize("opener", [b"[", b'{"a":'])
def test_a_deeply_nested_body_is_400(client, depth, opener):
    refused(client.post("/echo", data=opener * depth), "nested too deeply")


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_constants_are_refused_wherever_they_are(client, constant):
    for raw in (constant, f'{{"value": {constant}}}', f'{{"a": [1, {{"b": [{constant}]}}]}}'):
        refused(client.post("/echo", data=raw), constant, "finite")


@pytest.mark.parametrize("number", ["1e400", "-1e400", "1" + "0" * 400 + ".0"])
def test_numbers_too_large_for_a_float_are_refused_wherever_they_are(client, number):
    for raw in (number, f'{{"value": {number}}}', f'[[[{{"x": {number}}}]]]'):
        refused(client.post("/echo", data=raw), "finite")


@pytest.mark.parametrize("raw", [b"", b"   ", b"{oops", b"\xff\xfe\x00", b"\xed\xa0\x80", b"9" * 5000])
def test_missing_or_malformed_bodies_are_400(client, raw):
    refused(client.post("/echo", data=raw), "JSON")


def test_parse_json_never_returns_a_non_finite_number():
    with pytest.raises(Exception, match="finite"):
        parse_json("[1e999]")
    assert math.isfinite(parse_json("1.7976931348623157e308"))


# ------------------------------------------------------------------ numeric query parameters


def test_numbers_in_range_are_read(client):
    assert client.get("/page?limit=0&shift=-50").get_json() == {"limit": 0, "shift": -50}
    assert client.get("/page?limit=1000&shift=50").get_json() == {"limit": 1000, "shift": 50}
    assert client.get("/page?limit=007").get_json() == {"limit": 7, "shift": 0}
    assert client.get("/page").get_json() == {"limit": 100, "shift": 0}


@pytest.mark.parametrize(
    "raw", ["²", "١٢", "٣", "1²", "9" * 5000, "1001", "-1", "1.5", "1e3", "", " 1", "+1", "0x10", "NaN", "一"]
)
def test_bad_numbers_are_400_naming_the_parameter(client, raw):
    response = client.get("/page", query_string={"limit": raw})
    error = refused(response, "limit", "from 0 to 1000")
    assert response.get_json()["parameter"] == "limit"
    assert len(error) < 100 + MAX_SHOWN_CHARS  # a long value is cut, not echoed back whole


@pytest.mark.parametrize("raw", ["-51", "51", "--1", "-", "-²"])
def test_a_negative_range_takes_a_sign_but_keeps_its_bounds(client, raw):
    refused(client.get("/page", query_string={"shift": raw}), "shift", "from -50 to 50")
