"""Authentication: HS256 JSON Web Tokens for clients, a shared admin token for the control API."""

from __future__ import annotations

import hmac
import threading
import time
from collections.abc import Callable, Mapping
from functools import wraps
from typing import Any, TypeVar

import jwt
from cachetools import TTLCache
from flask import request

from .errors import ApiError

__all__ = ["TokenIssuer", "bearer_value", "check_admin_token", "require_admin"]

F = TypeVar("F", bound=Callable[..., Any])
ALGORITHM = "HS256"
# Verified tokens are remembered this long (and never past their expiry): checking the HMAC
# and decoding the claims cost more than the rest of a cache-hit request in the gateway.
VERIFIED_CACHE_SECONDS = 60.0
VERIFIED_CACHE_SIZE = 10_000


def bearer_value(header: str | None) -> str | None:
    """Return the token in an ``Authorization`` header, raw or as ``Bearer <token>``."""
    if not header:
        return None
    header = header.strip()
    scheme, _, rest = header.partition(" ")
    if scheme.lower() == "bearer" and rest:
        return rest.strip()
    return header


class TokenIssuer:
    """Issue and verify HS256 tokens with an expiry.

    >>> issuer = TokenIssuer("secret", lifetime_seconds=60)
    >>> issuer.verify(issuer.issue("user"))["sub"]
    'user'
    """

    def __init__(self, secret: str, lifetime_seconds: float, clock: Callable[[], float] = time.time) -> None:
        if not secret:
            raise ValueError("an empty JWT secret is not allowed; set SCALELAB_JWT_SECRET")
        self._secret = secret
        self._lifetime = lifetime_seconds
        self._clock = clock
        self._verified: TTLCache[str, Mapping[str, Any]] = TTLCache(
            VERIFIED_CACHE_SIZE, VERIFIED_CACHE_SECONDS, timer=clock
        )
        self._lock = threading.Lock()

    def issue(self, subject: str = "lab-user") -> str:
        """Return a signed token for ``subject`` that expires after the configured lifetime."""
        now = int(self._clock())
        claims = {"sub": subject, "iat": now, "exp": now + int(self._lifetime)}
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def verify(self, token: str | None) -> Mapping[str, Any]:
        """Return the token's claims; raise a 401 ApiError when it is missing, invalid or expired."""
        if not token:
            raise ApiError(401, "missing token: get one from GET /token and send it in the Authorization header")
        with self._lock:
            claims = self._verified.get(token)
        if claims is not None and claims["exp"] > self._clock():
            return claims
        claims = self._decode(token)
        with self._lock:
            self._verified[token] = claims
        return claims

    def _decode(self, token: str) -> Mapping[str, Any]:
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                options={"require": ["exp"]},
                leeway=0,
            )
        except jwt.ExpiredSignatureError:
            raise ApiError(401, "token expired: get a new one from GET /token") from None
        except jwt.InvalidTokenError as exc:
            raise ApiError(401, f"invalid token ({exc}): get a new one from GET /token") from None
        # PyJWT checks expiry against the wall clock; the issuer's own clock must agree too.
        if claims["exp"] <= self._clock():
            raise ApiError(401, "token expired: get a new one from GET /token")
        return claims


ADMIN_HEADER = "X-Admin-Token"


def check_admin_token(expected: str, given: str | None) -> None:
    """Raise a 401 ApiError unless ``given`` equals the configured admin token."""
    if not expected:
        raise ApiError(401, "control API disabled: this instance has no SCALELAB_ADMIN_TOKEN set")
    if not given or not hmac.compare_digest(expected.encode(), given.encode()):
        raise ApiError(401, f"missing or wrong admin token: send it in the {ADMIN_HEADER} header")


def require_admin(expected: str) -> Callable[[F], F]:
    """Decorate a Flask view so only callers with the admin token reach it."""

    def decorate(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            check_admin_token(expected, request.headers.get(ADMIN_HEADER))
            return view(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate
