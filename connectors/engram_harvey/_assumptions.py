"""Everything Harvey's public API docs leave open, written down in one place.

Each constant below is a decision this connector (and its sandbox) makes where
developers.harvey.ai is silent or ambiguous. When Harvey documents the point, change it
here; the client, the normalizer and the sandbox read these names and nothing else.
The same list is in ``docs/connectors/harvey.md``.

Documented facts (not assumptions) are kept next to them as plain constants, so one
module answers "what do we believe about Harvey's API" end to end.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "ASSUMPTIONS",
    "AUDIT_FROM_EXCLUSIVE",
    "AUDIT_MAX_TAKE",
    "AUDIT_SEARCH_404_WHEN_EMPTY",
    "FEEDBACK_FIELDS_MAY_BE_LISTS",
    "FILE_DOWNLOAD_PATH",
    "HISTORY_LOOKBACK_DAYS",
    "HISTORY_MAX_WINDOW_DAYS",
    "HISTORY_OVERLAP_SECONDS",
    "HISTORY_TIME_FORMAT",
    "HISTORY_WINDOW_DAYS",
    "PERMISSIONS",
    "RATE_LIMIT_RETRY_AFTER_S",
    "RATE_LIMITS_PER_MINUTE",
    "REGIONS",
    "REPLACED_FILE_FIELD",
    "STREAMING_FORMAT",
    "V1_TIME_FORMATS",
    "WEBHOOKS",
    "WHOAMI_ORG_FIELDS",
]

# --- documented ------------------------------------------------------------------------------

#: Regional hosts (developers.harvey.ai intro).
REGIONS: Final[dict[str, str]] = {
    "us": "https://api.harvey.ai",
    "eu": "https://eu.api.harvey.ai",
    "au": "https://au.api.harvey.ai",
}

#: Requests per minute, per organization, per category (api-reference/ratelimits).
RATE_LIMITS_PER_MINUTE: Final[dict[str, int]] = {
    "completion": 20,
    "vault": 10,
    "audit": 60,
    "history": 60,
    "client_matters": 150,
}

#: A history call covers at most 30 days (get-usage-history).
HISTORY_MAX_WINDOW_DAYS: Final = 30
#: Audit pages: ``take`` at most 1000.
AUDIT_MAX_TAKE: Final = 1000
#: v2 ``utc_time`` is "YYYY-MM-DD HH:MM:SS" in UTC.
HISTORY_TIME_FORMAT: Final = "%Y-%m-%d %H:%M:%S"

#: The permission each stream's endpoints need. "View history" and "View workspace projects" are
#: documented; the audit-log and client-matter read permissions are not named publicly (ASSUMED).
PERMISSIONS: Final[dict[str, str]] = {
    "history": "View history",
    "vault": "View workspace projects",
    "audit": "View audit logs",
    "client_matters": "View client matters",
}

# --- assumed ---------------------------------------------------------------------------------

#: Harvey documents no webhooks or event subscriptions: the connector polls.
WEBHOOKS: Final = None

#: The streaming format of ``POST /api/v2/completion?stream=true`` is undocumented. The
#: connector never calls completion, so nothing depends on it; the sandbox answers
#: ``stream=true`` with a single JSON body, the same as ``stream=false``.
STREAMING_FORMAT: Final = "unknown; treated as a single JSON body"

#: The v2 usage docs mention "the file download endpoint" but publish no path. Until they do,
#: Vault files become Documents carrying metadata only (name, type, size, status, dates), never
#: file text. Set this to the path template (e.g. "/api/v1/vault/files/{file_id}/download") when
#: Harvey documents it.
FILE_DOWNLOAD_PATH: Final[str | None] = None

#: ``duplicate_mode=replace`` "creates a new file_id with root_file_id = original". The docs show
#: the field on upload, not on listings; we assume file listings and ``get_files`` carry it on
#: replacement files (absent or null on originals), and that it names the chain's first file.
REPLACED_FILE_FIELD: Final = "root_file_id"

#: Harvey's docs say to pull history one day at a time and at most a year back; PostHog's public
#: client uses 364 days, so a window never starts at the very edge of the year.
HISTORY_WINDOW_DAYS: Final = 1
HISTORY_LOOKBACK_DAYS: Final = 364
#: Incremental syncs re-read this much before their checkpoint, so late-arriving queries and
#: feedback added after a first read are seen; ``unique_usage_id`` de-duplicates the overlap.
HISTORY_OVERLAP_SECONDS: Final = 86_400

#: v1 ``Time`` has no documented format; these are tried in order (then ISO 8601).
V1_TIME_FORMATS: Final[tuple[str, ...]] = ("%Y-%m-%d %H:%M:%S", "%m/%d/%Y %H:%M:%S", "%Y-%m-%dT%H:%M:%S")

#: ``feedback_comments`` / ``feedback_sentiments`` (v2, plural names) may hold one string or a list.
FEEDBACK_FIELDS_MAY_BE_LISTS: Final = True

#: ``GET /api/whoami`` shows no response shape. The first of these keys present names the
#: organisation (the event ``source`` is ``harvey://org/<it>``); the token's own id is the fallback
#: only if none is present, and is reported as such.
WHOAMI_ORG_FIELDS: Final[tuple[str, ...]] = ("org_id", "organization_id", "workspace_id", "tenant_id")

#: Rate-limit header names are undocumented. A 429 with ``Retry-After`` waits that long; without
#: it, the connector waits for the one-minute window to pass.
RATE_LIMIT_RETRY_AFTER_S: Final = 60.0

#: Observed in PostHog's client: ``from`` is exclusive, and ``search`` answers 404 when no log
#: exists at or after the time asked.
AUDIT_FROM_EXCLUSIVE: Final = True
AUDIT_SEARCH_404_WHEN_EMPTY: Final = True

#: One line per assumption, for ``engram connect harvey`` to print and the docs to list.
ASSUMPTIONS: Final[dict[str, str]] = {
    "webhooks": "none documented; the connector is poll-only",
    "streaming": STREAMING_FORMAT,
    "file_download": "no documented path; files are synced as metadata-only Documents",
    "replaced_files": "file listings carry root_file_id (the chain's first file) on replacements",
    "history_window": "one-day windows, 364 days back at most, re-reading one day before the checkpoint",
    "feedback_fields": "feedback_comments / feedback_sentiments may be a string or a list of strings",
    "v1_time": "v1 'Time' parsed as 'YYYY-MM-DD HH:MM:SS' UTC (other common layouts accepted)",
    "whoami": "organisation id read from org_id / organization_id / workspace_id / tenant_id",
    "rate_limit_headers": "undocumented; Retry-After honoured when sent, else a 60 s wait",
    "audit_paging": "from=<id> is exclusive; search answers 404 when no log is at or after the time",
    "permissions": "audit logs need 'View audit logs', client matters 'View client matters' (names not public)",
    "response_wrappers": "projects under response.content; files under 'files' (+ 'pagination'); get_files under "
    "'files'; audit pages under 'logs'; v1 history a bare list (v2: 'events')",
    "edit_author": "a review cell's editor is not returned: an edit is credited to the row's assigned_user, "
    "a verification to verified_user",
    "scope": "a query belongs to a project when its vault_project_name or file_ids match the project, "
    "to a matter when its cm_id (v2) or 'Client Matter #' (v1) matches the matter's id or name",
}
