"""Client tokens (HS256 JWT) and the admin token of the control API."""

from __future__ import annotations

import time

import jwt
import pytest

from services.kit.auth import TokenIssuer, bearer_value, check_admin_token
from services.kit.errors import ApiError

from ..support import FakeClock

SECRET = "s" * 32 + "-unit-test-secret"
OTHER_SECRET = "o" * 32 + "-another-secret!!"


def assert_401(call, match: str) -> ApiError:
    with pytest.raises(ApiError, match=match) as info:
        call()
    assert info.value.status == 401
    return info.value


# ------------------------------------------------------------------ issue / verify


def test_issue_and_verify_round_trip():
    issuer = TokenIssuer(SECRET, lifetime_seconds=60)
    before = int(time.time())
    claims = issuer.verify(issuer.issue("alice"))
    assert claims["sub"] == "alice"
    assert before <= claims["iat"] <= time.time()
    assert claims["exp"] == claims["iat"] + 60


def test_default_subject():
    issuer = TokenIssuer(SECRET, lifetime_seconds=60)
    assert issuer.verify(issuer.issue())["sub"] == "lab-user"


def test_verify_is_repeatable():
    issuer = TokenIssuer(SECRET, lifetime_seconds=60)
    token = issuer.issue("bob")
    assert issuer.verify(token) == issuer.verify(token)


def test_another_issuer_with_the_same_secret_accepts_the_token():
    token = TokenIssuer(SECRET, 60).issue("carol")
    assert TokenIssuer(SECRET, 60).verify(token)["sub"] == "carol"


def test_empty_secret_is_refused():
    with pytest.raises(ValueError, match="SCALELAB_JWT_SECRET"):
        TokenIssuer("", 60)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Bearer abc.def.ghi", "abc.def.ghi"),
        ("bearer abc.def.ghi", "abc.def.ghi"),
        ("  Bearer   abc.def.ghi  ", "abc.def.ghi"),
        ("abc.def.ghi", "abc.def.ghi"),
        ("Bearer", "Bearer"),
        ("", None),
        (None, None),
    ],
)
def test_bearer_value_accepts_bearer_and_raw_forms(header, expected):
    assert bearer_value(header) == expected


@pytest.mark.parametrize("form", ["Bearer {}", "{}"])
def test_a_token_from_either_header_form_verifies(form):
    issuer = TokenIssuer(SECRET, 60)
    token = issuer.issue("dave")
    assert issuer.verify(bearer_value(form.format(token)))["sub"] == "dave"


@pytest.mark.parametrize("token", [None, ""])
def test_missing_token_is_401(token):
    issuer = TokenIssuer(SECRET, 60)
    assert_401(lambda: issuer.verify(token), "missing token")


def test_tampered_token_is_401():
    issuer = TokenIssuer(SECRET, 60)
    header, payload, signature = issuer.issue("eve").split(".")
    forged_payload = jwt.encode({"sub": "admin", "exp": int(time.time()) + 60}, "x" * 40).split(".")[1]
    assert_401(lambda: issuer.verify(f"{header}.{forged_payload}.{signature}"), "invalid token")
    flipped = signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")
    assert_401(lambda: issuer.verify(f"{header}.{payload}.{flipped}"), "invalid token")


def test_garbage_token_is_401():
    assert_401(lambda: TokenIssuer(SECRET, 60).verify("not-a-jwt"), "invalid token")


def test_token_signed_with_another_secret_is_401():
    token = TokenIssuer(OTHER_SECRET, 60).issue()
    assert_401(lambda: TokenIssuer(SECRET, 60).verify(token), "invalid token")


def test_token_without_expiry_is_401():
    token = jwt.encode({"sub": "forever"}, SECRET, algorithm="HS256")
    assert_401(lambda: TokenIssuer(SECRET, 60).verify(token), "invalid token")


def test_expired_token_is_401():
    long_ago = TokenIssuer(SECRET, lifetime_seconds=3600, clock=lambda: time.time() - 7200)
    token = long_ago.issue()
    error = assert_401(lambda: TokenIssuer(SECRET, 3600).verify(token), "token expired")
    assert "GET /token" in error.message


def test_cached_token_is_refused_once_it_expires():
    clock = FakeClock(time.time())
    issuer = TokenIssuer(SECRET, lifetime_seconds=30, clock=clock)
    token = issuer.issue()
    assert issuer.verify(token)["sub"] == "lab-user"  # verified, and now cached
    clock.advance(29)
    assert issuer.verify(token)["sub"] == "lab-user"
    clock.advance(2)
    assert_401(lambda: issuer.verify(token), "expired")


# ------------------------------------------------------------------ admin token


def test_admin_token_matches():
    check_admin_token("admin-secret", "admin-secret")  # no exception


def test_admin_api_is_disabled_without_a_configured_token():
    assert_401(lambda: check_admin_token("", "anything"), "control API disabled")
    assert_401(lambda: check_admin_token("", ""), "control API disabled")


@pytest.mark.parametrize("given", [None, "", "wrong", "admin-secre", "admin-secret "])
def test_missing_or_wrong_admin_token_is_401(given):
    assert_401(lambda: check_admin_token("admin-secret", given), "X-Admin-Token")
