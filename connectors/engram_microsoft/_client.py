"""Microsoft Graph over httpx, with tokens from MSAL.

``GraphClient`` holds up to two credentials for one tenant and app:

- **app-only** (client credentials: a secret or a certificate) through
  ``msal.ConfidentialClientApplication`` and the ``/.default`` scope: Teams, SharePoint, drives;
- **delegated** (a device-code sign-in) through ``msal.PublicClientApplication``: OneNote, which
  no longer accepts app-only tokens.

Both share one ``msal.SerializableTokenCache`` that the caller persists (the connector keeps it in
the secrets store). Every request asks MSAL for a token first (the cache answers without I/O
while the token is fresh); a 401 from Graph makes the client drop the cached token, get a new
one (refreshing the delegated grant) and repeat the request once. A grant the IdP refuses
(``invalid_grant``, ``invalid_client``) is ``ReconnectNeeded``.

Requests go through the framework's HTTP toolkit (``build_client``): rate limits per key, 429/503
retried honouring ``Retry-After`` (exponential backoff when absent), errors mapped to the SDK's
tree. ``pages(url)`` follows ``@odata.nextLink`` to the end and hands back every page, the last
one carrying ``@odata.deltaLink`` for delta queries.

With a non-default authority (the sandbox), MSAL runs with ``instance_discovery=False`` and a
``requests.Session`` that trusts ``ca_bundle``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

import httpx
import msal
import requests

from engram_sdk.connectors import (
    AuthError,
    AuthorizationPending,
    Clock,
    PlatformError,
    RateLimiter,
    ReconnectNeeded,
    RetryPolicy,
    build_client,
    platform_errors,
    raise_for_status,
)

__all__ = ["DEFAULT_AUTHORITY_HOST", "DEFAULT_GRAPH_URL", "DEFAULT_RATES", "DELEGATED_SCOPES", "GraphClient"]

log = logging.getLogger("engram.connectors.microsoft")

DEFAULT_AUTHORITY_HOST = "https://login.microsoftonline.com"
DEFAULT_GRAPH_URL = "https://graph.microsoft.com/v1.0"
DELEGATED_SCOPES = ("Notes.Read",)
# Graph's published limits (microsoft.md §3): Teams 1 request/s per app per channel and 4/s per
# team; OneNote 120 requests/min per app per user (delegated); SharePoint/OneDrive are budgeted in
# resource units per minute, about 1,200/min for a small tenant.
DEFAULT_RATES: dict[str, str] = {
    "channel": "1/s",
    "team": "4/s",
    "onenote": "120/min",
    "drive": "1200/min",
    "site": "1200/min",
    "default": "30/s",
}

Auth = Literal["app", "user"]
_REVOKED = {"invalid_grant", "invalid_client", "unauthorized_client", "interaction_required", "consent_required"}


class GraphClient:
    def __init__(
        self,
        *,
        tenant: str,
        client_id: str,
        token_cache: msal.SerializableTokenCache,
        save_cache: Callable[[], None],
        client_secret: str | None = None,
        certificate: Mapping[str, str] | None = None,
        delegated: bool = False,
        delegated_via: Literal["public", "confidential"] = "public",
        authority: str | None = None,
        graph_url: str = DEFAULT_GRAPH_URL,
        ca_bundle: str | None = None,
        clock: Clock | None = None,
        rates: Mapping[str, str] | None = None,
        retry: RetryPolicy | None = None,
        http: Mapping[str, Any] | None = None,
    ):
        self.tenant = tenant
        self.client_id = client_id
        self.cache = token_cache
        self._save_cache = save_cache
        self._secret = client_secret
        self._certificate = dict(certificate) if certificate else None
        self.delegated = delegated
        # Which app redeems the delegated grant: device-code logins are public-client grants;
        # an authorization code redeemed with the app's secret is the confidential app's.
        self.delegated_via = delegated_via
        self.authority = (authority or f"{DEFAULT_AUTHORITY_HOST}/{tenant}").rstrip("/")
        self.graph_url = graph_url.rstrip("/")
        self.ca_bundle = ca_bundle
        self._default_authority = self.authority.startswith(DEFAULT_AUTHORITY_HOST)
        self.limiter = RateLimiter({**DEFAULT_RATES, **dict(rates or {})}, clock=clock)
        kwargs = dict(http or {})
        if ca_bundle and "verify" not in kwargs and "transport" not in kwargs:
            kwargs["verify"] = ca_bundle
        self.http = build_client(self.graph_url, limiter=self.limiter, clock=clock, retry=retry, **kwargs)
        self._cca: msal.ConfidentialClientApplication | None = None
        self._pca: msal.PublicClientApplication | None = None
        self._session: requests.Session | None = None
        self._lock = threading.Lock()
        self.token_requests = 0

    # --- MSAL ------------------------------------------------------------------------------------

    @property
    def has_app_credential(self) -> bool:
        return bool(self._secret or self._certificate)

    def _msal_http(self) -> requests.Session:
        if self._session is None:
            s = requests.Session()
            if self.ca_bundle:
                s.verify = self.ca_bundle
                s.trust_env = False  # REQUESTS_CA_BUNDLE would otherwise win over verify
            self._session = s
        return self._session

    def _msal_kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {"authority": self.authority, "token_cache": self.cache, "http_client": self._msal_http()}
        if not self._default_authority:
            kw["instance_discovery"] = False
        return kw

    def _msal(self, make: Callable[[], Any]) -> Any:
        try:
            return make()
        except requests.RequestException as exc:
            raise PlatformError(f"identity provider unreachable at {self.authority} ({type(exc).__name__})") from None
        except ValueError as exc:  # MSAL: bad authority, discovery document refused
            raise AuthError(f"identity provider at {self.authority} refused discovery: {str(exc)[:200]}") from None
        except msal.exceptions.MsalServiceError as exc:  # HTTP 5xx from the token endpoint
            raise PlatformError(f"identity provider error: {str(exc)[:200]}") from None

    @property
    def confidential(self) -> msal.ConfidentialClientApplication:
        if self._cca is None:
            credential: Any = self._secret if self._secret else self._certificate
            if credential is None:
                raise AuthError("no app credential: give --client-secret, --client-secret-env or --certificate")
            self._cca = self._msal(lambda: msal.ConfidentialClientApplication(
                self.client_id, client_credential=credential, **self._msal_kwargs()))
        return self._cca

    @property
    def public(self) -> msal.PublicClientApplication:
        if self._pca is None:
            self._pca = self._msal(lambda: msal.PublicClientApplication(self.client_id, **self._msal_kwargs()))
        return self._pca

    @property
    def delegated_app(self) -> msal.ClientApplication:
        return self.confidential if self.delegated_via == "confidential" else self.public

    def _persist(self) -> None:
        if self.cache.has_state_changed:
            self._save_cache()
            self.cache.has_state_changed = False

    def _check(self, result: Mapping[str, Any] | None, what: str) -> str:
        if result and "access_token" in result:
            if result.get("token_source") != "cache":
                self.token_requests += 1
            self._persist()
            return str(result["access_token"])
        error = (result or {}).get("error") or "no_token"
        desc = str((result or {}).get("error_description") or "").split("\r\n")[0][:200]
        if error in _REVOKED or result is None:
            raise ReconnectNeeded(f"{what}: the grant is revoked or expired ({error}{': ' + desc if desc else ''}); "
                                  "run `engram connect microsoft` again")
        raise AuthError(f"{what}: {error}{': ' + desc if desc else ''}")

    def token(self, auth: Auth, *, force: bool = False) -> str:
        """An access token for Graph: app-only (``app``) or delegated (``user``)."""
        with self._lock:
            if auth == "app" and not self.has_app_credential:
                auth = "user"
            if auth == "app":
                cca = self.confidential
                if force:
                    cca.remove_tokens_for_client()
                result = self._msal(lambda: cca.acquire_token_for_client(scopes=["https://graph.microsoft.com/.default"]))
                return self._check(result, "app-only token")
            pca = self.delegated_app
            accounts = self._msal(pca.get_accounts)
            if not accounts:
                raise ReconnectNeeded("no delegated sign-in for this connection: run `engram connect microsoft "
                                      "--delegated` and finish the device-code login")
            result = self._msal(lambda: pca.acquire_token_silent_with_error(
                list(DELEGATED_SCOPES), account=accounts[0], force_refresh=force))
            return self._check(result, "delegated token")

    # --- device code -----------------------------------------------------------------------------

    def has_delegated_account(self) -> bool:
        return bool(self._msal(self.delegated_app.get_accounts))

    # --- authorization code ----------------------------------------------------------------------

    def start_auth_code_flow(self, redirect_uri: str) -> dict[str, Any]:
        """Begin a browser sign-in; the flow (with PKCE verifier, state and nonce) must be kept
        until the browser comes back to ``redirect_uri``."""
        app = self.confidential if self.has_app_credential else self.public
        return self._msal(lambda: app.initiate_auth_code_flow(list(DELEGATED_SCOPES), redirect_uri=redirect_uri))

    def finish_auth_code_flow(self, flow: dict[str, Any], response_url: str) -> None:
        """Redeem the code in the URL the browser was sent back to (state and nonce checked)."""
        params = {k: v[-1] for k, v in parse_qs(urlsplit(response_url).query).items()}
        app = self.confidential if self.has_app_credential else self.public
        try:
            result = app.acquire_token_by_auth_code_flow(flow, params)
        except ValueError as exc:  # MSAL: state mismatch, a response for another login
            raise ReconnectNeeded(f"the authorization response does not belong to this login ({exc}); "
                                  "run `engram connect microsoft` again") from None
        except requests.RequestException as exc:
            raise PlatformError(f"identity provider unreachable at {self.authority} ({type(exc).__name__})") from None
        self._check(result, "authorization-code login")

    def start_device_flow(self) -> dict[str, Any]:
        flow = self._msal(lambda: self.public.initiate_device_flow(scopes=list(DELEGATED_SCOPES)))
        if "user_code" not in flow:
            raise AuthError(f"device-code login could not start: {flow.get('error')}: "
                            f"{str(flow.get('error_description') or '').splitlines()[0][:200]}")
        return flow

    def poll_device_flow(self, flow: dict[str, Any]) -> None:
        """One poll of a started device-code login: returns when signed in, raises
        ``AuthorizationPending`` (with the instructions) while the operator has not approved."""
        result = self._msal(lambda: self.public.acquire_token_by_device_flow(flow, exit_condition=lambda f: True))
        if result.get("error") in ("authorization_pending", "slow_down"):
            raise AuthorizationPending(flow["message"])
        if result.get("error") in ("authorization_declined", "expired_token", "bad_verification_code"):
            raise ReconnectNeeded(f"device-code login failed ({result['error']}): run `engram connect` again")
        self._check(result, "device-code login")

    # --- Graph -----------------------------------------------------------------------------------

    def get(self, url: str, *, auth: Auth = "app", rate_key: str | list[str] | None = None,
            params: Mapping[str, Any] | None = None, follow_redirects: bool = False) -> httpx.Response:
        """GET a Graph path or absolute URL (a nextLink); 401 -> new token and one more try."""
        ext: dict[str, Any] = {"rate_key": rate_key} if rate_key is not None else {}
        for attempt in range(2):
            token = self.token(auth, force=attempt > 0)
            where = f"GET {httpx.URL(url).path or url}"
            with platform_errors(where):
                resp = self.http.get(url, params=params, headers={"Authorization": f"Bearer {token}"},
                                     extensions=ext, follow_redirects=follow_redirects)
            if resp.status_code != 401:
                break
            log.info("Graph answered 401 to %s; getting a new token", where)
        try:
            return raise_for_status(resp)
        except AuthError:
            raise ReconnectNeeded("Microsoft Graph rejected a freshly issued token: the app's consent or "
                                  "the grant was revoked; run `engram connect microsoft` again") from None

    def get_json(self, url: str, **kwargs: Any) -> dict[str, Any]:
        return self.get(url, **kwargs).json()

    def pages(self, url: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
        """Every page of a collection, following ``@odata.nextLink`` verbatim to the end."""
        next_url: str | None = url
        params = kwargs.pop("params", None)
        while next_url:
            page = self.get_json(next_url, params=params, **kwargs)
            params = None  # query parameters go on the first request only; links carry them
            yield page
            next_url = page.get("@odata.nextLink")

    def request(self, method: str, url: str, *, auth: Auth = "app", json: Any = None) -> httpx.Response:
        """A write (subscriptions): same token handling, not retried on 5xx by the caller."""
        for attempt in range(2):
            token = self.token(auth, force=attempt > 0)
            with platform_errors(f"{method} {url}"):
                resp = self.http.request(method, url, json=json, headers={"Authorization": f"Bearer {token}"})
            if resp.status_code != 401:
                break
        try:
            return raise_for_status(resp)
        except AuthError:
            raise ReconnectNeeded("Microsoft Graph rejected a freshly issued token; run `engram connect` again") from None

    def close(self) -> None:
        self.http.close()
        if self._session is not None:
            self._session.close()
