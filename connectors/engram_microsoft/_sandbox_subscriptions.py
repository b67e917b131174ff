"""The sandbox's change-notification side: Graph subscriptions and their deliveries.

``POST /v1.0/subscriptions`` checks what Graph checks (required properties, a supported resource,
``changeType`` ``updated`` only for drives, ``clientState`` <= 128 characters, each resource's
maximum lifetime, ``lifecycleNotificationUrl`` for Teams subscriptions over an hour, an
encryption certificate for ``includeResourceData``), then runs the validation handshake against
``notificationUrl`` and ``lifecycleNotificationUrl``: a POST with ``?validationToken=`` that must
come back, as ``text/plain``, within 10 s. ``PATCH`` renews (same checks), ``DELETE`` removes;
expired subscriptions are gone.

Workspace edits call ``notify_message`` / ``notify_drive``: one POST per live subscription, in
Graph's ``changeNotificationCollection`` shape; with ``includeResourceData`` the resource is
encrypted for the subscription's certificate and a ``validationTokens`` JWT signed by the
sandbox's IdP is attached. Deliveries go through the sandbox base's outbox (``/_sandbox/deliveries``).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route


from ._normalize import _segments, parse_graph_time
from ._notifications import encrypt_content

__all__ = ["MAX_LIFETIME_MIN", "SubscriptionService"]

# Maximum subscription lifetimes in minutes (microsoft.md §4.1)
MAX_LIFETIME_MIN = {"channel_messages": 4320, "drive": 42300}


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _public(obj: dict[str, Any], drop: tuple[str, ...] = ()) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if not k.startswith("_") and k not in drop}


class SubscriptionService:
    """Owned by ``MicrosoftSandbox``; its state (``sb.subscriptions``) lives on the sandbox."""

    def __init__(self, sandbox: Any):
        self.sb = sandbox

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/v1.0/subscriptions", self.subscriptions_root, methods=["GET", "POST"]),
            Route("/v1.0/subscriptions/{sid}", self.subscription, methods=["GET", "PATCH", "DELETE"]),
        ]

    @staticmethod
    def _resource_kind(resource: str) -> tuple[str, tuple[str, ...]] | None:
        segs = _segments(resource)
        names = [n for n, _ in segs]
        if names == ["teams", "channels", "messages"] and segs[0][1] and segs[1][1] and segs[2][1] is None:
            return "channel_messages", (segs[0][1], segs[1][1])
        if names == ["drives", "root"] and segs[0][1]:
            return "drive", (segs[0][1],)
        return None

    async def _handshake(self, url: str) -> str | None:
        """POST ?validationToken=... and expect it back as text/plain within 10 s; None when fine."""
        token = f"Validation: Testing client application reachability for subscription Request-Id: {uuid.uuid4()}"
        try:
            async with httpx.AsyncClient(timeout=10.0) as client:
                r = await client.post(url, params={"validationToken": token},
                                      headers={"content-type": "text/plain; charset=utf-8"})
        except httpx.HTTPError as exc:
            return f"Subscription validation request failed. Notification endpoint must respond with 200 OK to validation request. ({type(exc).__name__})"
        if r.status_code != 200 or r.text != token or not r.headers.get("content-type", "").startswith("text/plain"):
            return "Subscription validation request failed. Response must exactly match validationToken query parameter."
        return None

    def _check_expiry(self, kind: str, value: Any, has_lifecycle: bool) -> str | None:
        try:
            when = parse_graph_time(value)
        except (TypeError, ValueError):
            when = None
        if when is None:
            return "expirationDateTime is required and must be an ISO 8601 time."
        now = _now()
        if when <= now:
            return "Subscription expiration can only be in the future."
        limit = MAX_LIFETIME_MIN[kind]
        if when > now + timedelta(minutes=limit):
            return f"Subscription expiration can only be {limit} minutes in the future."
        if kind == "channel_messages" and when > now + timedelta(hours=1) and not has_lifecycle:
            return ("lifecycleNotificationUrl is a required property for subscription creation on this resource "
                    "when the expirationDateTime value is set to greater than 1 hour.")
        return None

    async def subscriptions_root(self, request: Request) -> Response:
        principal = request.state.principal
        if request.method == "GET":
            with self.sb.lock:
                mine = [_public(s) for s in self.sb.subscriptions.values() if s["applicationId"] == principal.client_id]
            return JSONResponse({"value": mine})
        try:
            body = await request.json()
        except ValueError:
            return self.sb._bad("The request body is not JSON.")
        missing = [k for k in ("changeType", "notificationUrl", "resource", "expirationDateTime") if not body.get(k)]
        if missing:
            return self.sb.error(400, "InvalidRequest", f"Missing required property: {', '.join(missing)}.")
        found = self._resource_kind(body["resource"])
        if found is None:
            return self.sb.error(400, "InvalidRequest", f"Resource '{body['resource']}' is not supported for subscriptions.")
        kind, ids = found
        if kind == "drive" and body["changeType"] != "updated":
            return self.sb.error(400, "InvalidRequest", "Only 'updated' changeType is supported for driveItem resources.")
        if len(body.get("clientState") or "") > 128:
            return self.sb.error(400, "InvalidRequest", "clientState may be at most 128 characters.")
        problem = self._check_expiry(kind, body["expirationDateTime"], bool(body.get("lifecycleNotificationUrl")))
        if problem:
            return self.sb.error(400, "InvalidRequest", problem)
        if body.get("includeResourceData"):
            if kind != "channel_messages":
                return self.sb.error(400, "InvalidRequest", "includeResourceData is not supported for this resource.")
            if not body.get("encryptionCertificate") or not body.get("encryptionCertificateId"):
                return self.sb.error(400, "InvalidRequest", "encryptionCertificate and encryptionCertificateId are required "
                                  "when includeResourceData is true.")
        with self.sb.lock:
            if kind == "channel_messages" and (ids[0], ids[1]) not in self.sb._channels:
                return self.sb._not_found("Channel")
            if kind == "drive" and ids[0] not in self.sb._drives:
                return self.sb._not_found("Drive")
        for url in dict.fromkeys(u for u in (body["notificationUrl"], body.get("lifecycleNotificationUrl")) if u):
            problem = await self._handshake(url)
            if problem:
                return self.sb.error(400, "ValidationError", problem)
        sub = {
            "@odata.context": f"{self.sb._base(request)}/$metadata#subscriptions/$entity",
            "id": str(uuid.uuid4()),
            "resource": body["resource"],
            "applicationId": principal.client_id,
            "changeType": body["changeType"],
            "clientState": body.get("clientState"),
            "notificationUrl": body["notificationUrl"],
            "lifecycleNotificationUrl": body.get("lifecycleNotificationUrl"),
            "expirationDateTime": body["expirationDateTime"],
            "creatorId": principal.user_id or principal.client_id,
            "includeResourceData": bool(body.get("includeResourceData")),
            "encryptionCertificate": body.get("encryptionCertificate"),
            "encryptionCertificateId": body.get("encryptionCertificateId"),
            "latestSupportedTlsVersion": "v1_2",
            "notificationContentType": "application/json",
            "_kind": kind,
            "_ids": list(ids),
        }
        with self.sb.lock:
            self.sb.subscriptions[sub["id"]] = sub
        return JSONResponse(_public(sub), 201)

    async def subscription(self, request: Request) -> Response:
        principal = request.state.principal
        sid = request.path_params["sid"]
        with self.sb.lock:
            sub = self.sb.subscriptions.get(sid)
            if sub is not None and (parse_graph_time(sub["expirationDateTime"]) or _now()) <= _now():
                del self.sb.subscriptions[sid]  # expired subscriptions are gone
                sub = None
            if sub is None or sub["applicationId"] != principal.client_id:
                return self.sb.error(404, "ResourceNotFound", f"The object was not found. Subscription '{sid}'.")
            if request.method == "GET":
                return JSONResponse(_public(sub))
            if request.method == "DELETE":
                del self.sb.subscriptions[sid]
                return Response(status_code=204)
        body = await request.json()
        problem = self._check_expiry(sub["_kind"], body.get("expirationDateTime"), bool(sub.get("lifecycleNotificationUrl")))
        if problem:
            return self.sb.error(400, "InvalidRequest", problem)
        with self.sb.lock:
            sub["expirationDateTime"] = body["expirationDateTime"]
            return JSONResponse(_public(sub))

    def _post(self, url: str, payload: dict[str, Any]) -> None:
        # Graph signs nothing: a notification carries the subscription's clientState instead.
        self.sb.deliver(payload, url=url, headers={"content-type": "application/json"})

    def _live_subscriptions(self, kind: str, ids: tuple[str, ...]) -> list[dict[str, Any]]:
        now = _now()
        return [s for s in self.sb.subscriptions.values()
                if s["_kind"] == kind and tuple(s["_ids"]) == ids and (parse_graph_time(s["expirationDateTime"]) or now) > now]

    def notify_message(self, team: str, channel: str, root: dict[str, Any], reply: dict[str, Any] | None, change: str) -> None:
        resource = f"teams('{team}')/channels('{channel}')/messages('{root['id']}')"
        if reply is not None:
            resource += f"/replies('{reply['id']}')"
        target = reply or root
        for sub in self._live_subscriptions("channel_messages", (team, channel)):
            if change not in sub["changeType"].split(","):
                continue
            item: dict[str, Any] = {
                "subscriptionId": sub["id"],
                "changeType": change,
                "clientState": sub.get("clientState"),
                "subscriptionExpirationDateTime": sub["expirationDateTime"],
                "resource": resource,
                "resourceData": {"id": target["id"], "@odata.type": "#Microsoft.Graph.chatMessage", "@odata.id": resource},
                "tenantId": self.sb.idp.tenant,
            }
            payload: dict[str, Any] = {"value": [item]}
            if sub["includeResourceData"]:
                item["encryptedContent"] = encrypt_content(_public(target, ("replies",)), sub["encryptionCertificate"],
                                                           sub["encryptionCertificateId"])
                payload["validationTokens"] = [self.sb.idp.validation_token(sub["applicationId"])]
            self._post(sub["notificationUrl"], payload)

    def notify_drive(self, drive: str) -> None:
        for sub in self._live_subscriptions("drive", (drive,)):
            self._post(sub["notificationUrl"], {"value": [{
                "subscriptionId": sub["id"],
                "changeType": "updated",
                "clientState": sub.get("clientState"),
                "subscriptionExpirationDateTime": sub["expirationDateTime"],
                "resource": f"drives/{drive}/root",
                "resourceData": {},
                "tenantId": self.sb.idp.tenant,
            }]})
