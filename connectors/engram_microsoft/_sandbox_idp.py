"""The sandbox's identity provider: enough of Entra ID v2.0 for MSAL to run unmodified.

Served by the Microsoft sandbox over TLS (MSAL refuses ``http://`` authorities) under
``/{tenant}``:

    GET  /{tenant}/v2.0/.well-known/openid-configuration   OIDC discovery (shape of the recorded one)
    POST /{tenant}/oauth2/v2.0/token                       client_credentials (secret or certificate
                                                           assertion), device_code, authorization_code,
                                                           refresh_token
    POST /{tenant}/oauth2/v2.0/devicecode                  device authorization
    GET  /{tenant}/oauth2/v2.0/authorize                   authorization code (PKCE), for the signed-in "browser" user
    GET  /{tenant}/discovery/v2.0/keys                     JWKS: signs the validationTokens of
    GET  /common/discovery/v2.0/keys                       rich notifications

Access tokens are opaque random strings; the Graph side asks ``principal(token)``. Device-code
logins are approved (or declined) by the sandbox's admin ops, so tests never wait for a person.
Errors use Entra's shape (``error``, ``error_description``, ``error_codes``, ``trace_id`` ...).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qs, quote

import jwt
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from engram_sdk.connectors import Clock

__all__ = ["IdentityProvider", "Principal"]

GRAPH_DEFAULT_SCOPE = "https://graph.microsoft.com/.default"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


@dataclass
class Principal:
    """Who an access token speaks for: an app alone (``user_id`` None) or a user through an app."""

    client_id: str
    user_id: str | None
    scopes: tuple[str, ...]
    expires_at: float  # on the sandbox clock
    revoked: bool = False


@dataclass
class _DeviceCode:
    client_id: str
    scopes: tuple[str, ...]
    user_code: str
    expires_at: float
    status: str = "pending"  # pending | approved | declined | redeemed
    user_id: str | None = None


@dataclass
class _Grant:
    client_id: str
    user_id: str
    scopes: tuple[str, ...]
    revoked: bool = False
    children: list[str] = field(default_factory=list)


async def _form(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body (without python-multipart)."""
    return {k: v[-1] for k, v in parse_qs((await request.body()).decode("utf-8"), keep_blank_values=True).items()}


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class IdentityProvider:
    """State and routes of the fake Entra ID; owned by ``MicrosoftSandbox`` (shares its lock)."""

    def __init__(self, sandbox: Any, clock: Clock, *, token_lifetime: int = 3599):
        self.sandbox = sandbox
        self.clock = clock
        self.token_lifetime = token_lifetime
        self.access_tokens: dict[str, Principal] = {}
        self.refresh_tokens: dict[str, _Grant] = {}
        self.device_codes: dict[str, _DeviceCode] = {}
        self.auth_codes: dict[str, dict[str, Any]] = {}
        self.browser_user: str | None = None  # who is signed in to the "browser" that opens /authorize
        self.token_requests = 0
        self.signing_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = "sandbox-" + uuid.uuid4().hex[:8]
        self._lock = threading.RLock()

    # --- workspace-derived facts -----------------------------------------------------------------

    @property
    def tenant(self) -> str:
        return self.sandbox.workspace.get("tenant") or "00000000-0000-0000-0000-000000000001"

    def _app(self, client_id: str | None) -> dict[str, Any] | None:
        for app in self.sandbox.workspace.get("apps") or []:
            if app.get("client_id") == client_id:
                return app
        return None

    def _user(self, user_id: str) -> dict[str, Any] | None:
        for user in self.sandbox.workspace.get("users") or []:
            if user.get("id") == user_id or user.get("userPrincipalName") == user_id:
                return user
        return None

    # --- what Graph asks -------------------------------------------------------------------------

    def principal(self, token: str | None) -> Principal | None:
        """The principal of a live access token, else None (unknown, expired or revoked)."""
        if not token:
            return None
        with self._lock:
            p = self.access_tokens.get(token)
        if p is None or p.revoked or p.expires_at <= self.clock.monotonic():
            return None
        return p

    def validation_token(self, client_id: str) -> str:
        """A ``validationTokens`` JWT as Graph's publisher sends it to ``client_id``'s endpoint."""
        now = int(time.time())
        claims = {
            "aud": client_id,
            "iss": f"https://sts.windows.net/{self.tenant}/",
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
            "appid": "0bf30f3b-4a52-48df-9a82-234910c4a086",
            "appidacr": "2",
            "tid": self.tenant,
            "ver": "1.0",
        }
        return jwt.encode(claims, self.signing_key, algorithm="RS256", headers={"kid": self.kid})

    def jwks(self) -> dict[str, Any]:
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(self.signing_key.public_key(), as_dict=True)
        jwk.update(kid=self.kid, use="sig", alg="RS256")
        return {"keys": [jwk]}

    # --- admin operations (called by the sandbox's op_* methods) ------------------------------------

    def approve_device(self, user_code: str, user_id: str, *, decline: bool = False) -> str:
        with self._lock:
            for dc in self.device_codes.values():
                if dc.user_code == user_code and dc.status == "pending":
                    if self._user(user_id) is None:
                        raise KeyError(f"no user {user_id!r} in the workspace")
                    dc.status = "declined" if decline else "approved"
                    dc.user_id = user_id
                    return dc.status
        raise KeyError(f"no pending device code {user_code!r}")

    def pending_device_codes(self) -> list[str]:
        with self._lock:
            return [dc.user_code for dc in self.device_codes.values() if dc.status == "pending"]

    def expire_access_tokens(self) -> int:
        """Every access token issued so far stops working (as if an hour had passed)."""
        with self._lock:
            for p in self.access_tokens.values():
                p.expires_at = min(p.expires_at, self.clock.monotonic())
            return len(self.access_tokens)

    def revoke_grants(self, user_id: str | None = None, client_id: str | None = None) -> int:
        """Revoke refresh tokens (and the access tokens they issued) of a user and/or app."""
        n = 0
        with self._lock:
            for grant in self.refresh_tokens.values():
                if (user_id is None or grant.user_id == user_id) and (client_id is None or grant.client_id == client_id):
                    grant.revoked = True
                    n += 1
            for p in self.access_tokens.values():
                if (user_id is None or p.user_id == user_id) and (client_id is None or p.client_id == client_id):
                    p.revoked = True
        return n

    # --- routes ----------------------------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/common/discovery/v2.0/keys", self._keys),
            Route("/{tenant}/v2.0/.well-known/openid-configuration", self._openid),
            Route("/{tenant}/discovery/v2.0/keys", self._keys),
            Route("/{tenant}/oauth2/v2.0/token", self._token, methods=["POST"]),
            Route("/{tenant}/oauth2/v2.0/devicecode", self._devicecode, methods=["POST"]),
            Route("/{tenant}/oauth2/v2.0/authorize", self._authorize),
        ]

    def _base(self, request: Request) -> str:
        return str(request.base_url).rstrip("/")

    async def _openid(self, request: Request) -> Response:
        tenant = request.path_params["tenant"]
        if tenant != self.tenant:
            return self._error(400, "invalid_tenant", f"AADSTS90002: Tenant '{tenant}' not found.", [90002])
        root = f"{self._base(request)}/{tenant}"
        return JSONResponse(
            {
                "token_endpoint": f"{root}/oauth2/v2.0/token",
                "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
                "jwks_uri": f"{root}/discovery/v2.0/keys",
                "response_modes_supported": ["query", "fragment", "form_post"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "issuer": f"{root}/v2.0",
                "request_uri_parameter_supported": False,
                "userinfo_endpoint": f"{self._base(request)}/oidc/userinfo",
                "authorization_endpoint": f"{root}/oauth2/v2.0/authorize",
                "device_authorization_endpoint": f"{root}/oauth2/v2.0/devicecode",
                "http_logout_supported": True,
                "frontchannel_logout_supported": True,
                "end_session_endpoint": f"{root}/oauth2/v2.0/logout",
                "tenant_region_scope": "WW",
                "cloud_instance_name": "microsoftonline.com",
                "msgraph_host": "graph.microsoft.com",
            },
            headers={"Cache-Control": "max-age=86400, private"},
        )

    async def _keys(self, request: Request) -> Response:
        return JSONResponse(self.jwks())

    def _error(self, status: int, error: str, description: str, codes: list[int]) -> Response:
        trace = str(uuid.uuid4())
        return JSONResponse(
            {
                "error": error,
                "error_description": f"{description}\r\nTrace ID: {trace}\r\nCorrelation ID: {uuid.uuid4()}"
                f"\r\nTimestamp: {datetime.now(timezone.utc):%Y-%m-%d %H:%M:%SZ}",
                "error_codes": codes,
                "timestamp": f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M:%SZ}",
                "trace_id": trace,
                "correlation_id": str(uuid.uuid4()),
            },
            status,
        )

    async def _devicecode(self, request: Request) -> Response:
        form = await _form(request)
        client_id = str(form.get("client_id") or "")
        if self._app(client_id) is None:
            return self._error(400, "unauthorized_client", f"AADSTS700016: Application '{client_id}' not found.", [700016])
        scopes = tuple(str(form.get("scope") or "").split())
        device_code = secrets.token_urlsafe(32)
        user_code = "".join(secrets.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(9))
        with self._lock:
            self.device_codes[device_code] = _DeviceCode(client_id, scopes, user_code, self.clock.monotonic() + 900)
        uri = f"{self._base(request)}/devicelogin"
        return JSONResponse(
            {
                "user_code": user_code,
                "device_code": device_code,
                "verification_uri": uri,
                "expires_in": 900,
                "interval": 1,
                "message": f"To sign in, use a web browser to open the page {uri} and enter the code {user_code} to authenticate.",
            }
        )

    async def _authorize(self, request: Request) -> Response:
        """The authorization-code flow's browser step: the signed-in browser user (admin op
        ``sign_in_browser``) consents at once and is sent back to ``redirect_uri`` with a code."""
        q = request.query_params
        app = self._app(q.get("client_id"))
        if app is None:
            return self._error(400, "unauthorized_client", f"AADSTS700016: Application '{q.get('client_id')}' not found.", [700016])
        redirect = q.get("redirect_uri") or ""
        if app.get("redirect_uris") and redirect not in app["redirect_uris"]:
            return self._error(400, "invalid_request", "AADSTS50011: The redirect URI does not match the app's.", [50011])
        if q.get("response_type") != "code":
            return self._error(400, "unsupported_response_type", "AADSTS70005: response_type must be 'code'.", [70005])
        if self.browser_user is None:
            return self._error(401, "login_required", "AADSTS50058: No user is signed in to the browser.", [50058])
        code = secrets.token_urlsafe(24)
        with self._lock:
            self.auth_codes[code] = {"client_id": app["client_id"], "user": self.browser_user, "redirect_uri": redirect,
                                     "scopes": tuple((q.get("scope") or "").split()), "nonce": q.get("nonce"),
                                     "challenge": q.get("code_challenge"), "method": q.get("code_challenge_method"),
                                     "expires_at": self.clock.monotonic() + 600}
        sep = "&" if "?" in redirect else "?"
        state = f"&state={quote(q['state'])}" if q.get("state") else ""
        return RedirectResponse(f"{redirect}{sep}code={code}{state}", 302)

    def _redeem_code(self, form: dict[str, str], client_id: str) -> dict[str, Any] | str:
        """The grant of an authorization code, or why it cannot be redeemed."""
        with self._lock:
            grant = self.auth_codes.pop(str(form.get("code") or ""), None)
        if grant is None or grant["client_id"] != client_id or grant["expires_at"] <= self.clock.monotonic():
            return "AADSTS70008: The provided authorization code has expired or was already redeemed."
        if grant["redirect_uri"] != form.get("redirect_uri"):
            return "AADSTS50011: The redirect URI does not match the one of the authorization request."
        if grant["challenge"]:
            verifier = str(form.get("code_verifier") or "").encode()
            expected = _b64url(hashlib.sha256(verifier).digest()) if grant["method"] == "S256" else verifier.decode()
            if not secrets.compare_digest(expected, grant["challenge"]):
                return "AADSTS501481: The code_verifier does not match the code_challenge."
        return grant

    async def _token(self, request: Request) -> Response:
        form = await _form(request)
        with self._lock:
            self.token_requests += 1
        tenant = request.path_params["tenant"]
        if tenant != self.tenant:
            return self._error(400, "invalid_tenant", f"AADSTS90002: Tenant '{tenant}' not found.", [90002])
        client_id = str(form.get("client_id") or "")
        app = self._app(client_id)
        if app is None:
            return self._error(400, "unauthorized_client", f"AADSTS700016: Application '{client_id}' not found.", [700016])
        grant = form.get("grant_type")
        scopes = tuple(str(form.get("scope") or "").split())
        if grant == "client_credentials":
            if form.get("client_assertion"):
                problem = self._check_assertion(app, form["client_assertion"], str(request.url).split("?")[0])
                if problem:
                    return self._error(401, "invalid_client", problem, [700027])
            elif not app.get("client_secret") or not secrets.compare_digest(str(form.get("client_secret") or ""),
                                                                            app["client_secret"]):
                return self._error(401, "invalid_client", "AADSTS7000215: Invalid client secret provided.", [7000215])
            if len(scopes) != 1 or not scopes[0].endswith("/.default"):
                return self._error(
                    400,
                    "invalid_scope",
                    f"AADSTS70011: The provided value for the input parameter 'scope' is not valid. "
                    f"The scope {' '.join(scopes)} is not valid.",
                    [70011],
                )
            return JSONResponse(self._issue(client_id, None, scopes))
        if grant == DEVICE_GRANT:
            code = str(form.get("device_code") or "")
            with self._lock:
                dc = self.device_codes.get(code)
                if dc is None or dc.client_id != client_id:
                    return self._error(400, "bad_verification_code", "AADSTS70019: Verification code unknown.", [70019])
                if dc.expires_at <= self.clock.monotonic() or dc.status == "redeemed":
                    return self._error(400, "expired_token", "AADSTS70019: Verification code expired.", [70019])
                if dc.status == "pending":
                    return self._error(400, "authorization_pending", "AADSTS70016: OAuth 2.0 device flow error. "
                                       "Authorization is pending. Continue polling.", [70016])
                if dc.status == "declined":
                    return self._error(400, "authorization_declined", "AADSTS70000: The user declined.", [70000])
                dc.status = "redeemed"
                assert dc.user_id is not None
                return JSONResponse(self._issue(client_id, dc.user_id, dc.scopes, issuer=self._issuer(request)))
        if grant == "authorization_code":
            if app.get("client_secret") and form.get("client_secret") is not None and not secrets.compare_digest(
                    str(form["client_secret"]), app["client_secret"]):
                return self._error(401, "invalid_client", "AADSTS7000215: Invalid client secret provided.", [7000215])
            redeemed = self._redeem_code(form, client_id)
            if isinstance(redeemed, str):
                return self._error(400, "invalid_grant", redeemed, [70008])
            return JSONResponse(self._issue(client_id, redeemed["user"], redeemed["scopes"], nonce=redeemed["nonce"],
                                            issuer=self._issuer(request)))
        if grant == "refresh_token":
            rt = str(form.get("refresh_token") or "")
            with self._lock:
                g = self.refresh_tokens.get(rt)
                if g is None or g.revoked or g.client_id != client_id:
                    return self._error(
                        400,
                        "invalid_grant",
                        "AADSTS70008: The provided authorization code or refresh token has expired due to "
                        "inactivity or was revoked. Send a new interactive authorization request.",
                        [70008],
                    )
                g.revoked = True  # refresh tokens rotate
                return JSONResponse(self._issue(client_id, g.user_id, g.scopes, issuer=self._issuer(request)))
        return self._error(400, "unsupported_grant_type", f"AADSTS70003: grant_type {grant!r} is not supported.", [70003])

    @staticmethod
    def _check_assertion(app: dict[str, Any], assertion: str, token_url: str) -> str | None:
        """A certificate credential: a JWT signed by the key of the app's registered certificate
        (``"certificate"``: PEM), for this token endpoint; None when it checks out."""
        if not app.get("certificate"):
            return "AADSTS700027: The app has no certificate credential registered."
        cert = x509.load_pem_x509_certificate(app["certificate"].encode())
        try:
            claims = jwt.decode(assertion, cert.public_key(), algorithms=["RS256", "PS256"], audience=token_url,
                                options={"require": ["exp", "aud", "iss", "sub"]})
        except jwt.PyJWTError as exc:
            return f"AADSTS700027: Client assertion failed signature validation ({exc})."
        if claims["iss"] != app["client_id"] or claims["sub"] != app["client_id"]:
            return "AADSTS700027: Client assertion issuer and subject must be the client id."
        return None

    def _issuer(self, request: Request) -> str:
        return f"{self._base(request)}/{self.tenant}/v2.0"

    def _issue(self, client_id: str, user_id: str | None, scopes: tuple[str, ...], *, nonce: str | None = None,
               issuer: str | None = None) -> dict[str, Any]:
        token = "sbx." + secrets.token_urlsafe(24)
        with self._lock:
            self.access_tokens[token] = Principal(client_id, user_id, scopes, self.clock.monotonic() + self.token_lifetime)
        body: dict[str, Any] = {
            "token_type": "Bearer",
            "expires_in": self.token_lifetime,
            "ext_expires_in": self.token_lifetime,
            "access_token": token,
        }
        if user_id is None:
            return body
        user = self._user(user_id) or {"id": user_id}
        oid = user["id"]
        rt = "sbx-rt." + secrets.token_urlsafe(32)
        with self._lock:
            self.refresh_tokens[rt] = _Grant(client_id, oid, scopes)
        now = int(time.time())
        id_claims = {
            "iss": issuer or f"https://login.microsoftonline.com/{self.tenant}/v2.0",
            "aud": client_id,
            "tid": self.tenant,
            "oid": oid,
            "sub": oid,
            "name": user.get("displayName"),
            "preferred_username": user.get("userPrincipalName") or oid,
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
            "ver": "2.0",
        }
        if nonce:
            id_claims["nonce"] = nonce
        header = _b64url(json.dumps({"typ": "JWT", "alg": "none"}).encode())
        body.update(
            scope=" ".join(s for s in scopes if s not in ("openid", "profile", "offline_access")),
            refresh_token=rt,
            id_token=f"{header}.{_b64url(json.dumps(id_claims).encode())}.",
            client_info=_b64url(json.dumps({"uid": oid, "utid": self.tenant}).encode()),
        )
        return body
