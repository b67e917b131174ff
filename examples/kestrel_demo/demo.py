"""The end-to-end demo (``engram demo``), and the measurements built on it (``engram bench demo``,
``engram bench freshness``).

One team (Kestrel, ``records.jsonl`` beside this file) on three platforms, every part real:

1. three sandboxes (Notion, Microsoft 365 over TLS, Harvey) on loopback, seeded with the team's
   workspace in each platform's own format (``kestrel_workspace()`` in ``*_workspace.py`` here), with
   demo-sized rate-limit budgets (the 429 paths stay on);
2. the three connections made as ``engram connect`` makes them (Notion token; Microsoft client
   credentials plus a device-code sign-in approved in the sandbox's identity provider; Harvey token),
   then synced: records -> signed events -> the store; the team's later edits happen in the
   sandboxes and an incremental sync turns them into ``Edit`` events;
3. the team adapter trained on the base model (``DEMO_TRAINING``), evaluated, gated, published;
4. the server (``engram serve``) in its own process on loopback, an API key, questions through the
   SDK client, each answer and its prompt tokens next to the retrieval baseline's (the trainer's
   BM25 top-k prompt, answered by the base model);
5. a page edited in the Notion sandbox: its signed webhook goes to the server's
   ``/v1/webhooks/<connection>``, the server's webhook worker refetches and stores the edit, a
   short continual training run follows (``DEMO_BOUNDS``), and the question is asked again.

Everything lives under one ENGRAM_HOME (``.engram-demo/`` by default), with the sandboxes'
workspaces saved beside it, so a rerun reuses what is done: the connections keep their
checkpoints (nothing new to sync), an adapter trained on the same events is not trained again, and
an edit already made is not made twice.
"""

from __future__ import annotations

import json
import os
import secrets as _secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engram_sdk import EngramError, EventStore, Keyring, Settings, load_key_set
from engram_sdk.connectors import AuthorizationPending, FileSecretStore

from .records import load_records

if TYPE_CHECKING:  # the sandboxes need the server extra: imported when they start
    from engram_sdk.connectors import SandboxServer

__all__ = ["CONNECTIONS", "DEMO_BOUNDS", "DEMO_FACTS", "DEMO_TRAINING", "EDITED_FACT", "FRESHNESS_START", "Demo",
           "DemoError", "DemoReport", "check_installed", "measure_freshness"]

# The demo's training recipe: TrainConfig overrides (training/engram_training/config.py holds the
# full recipe; whatever is not named here follows it). The first run uses the recipe that passed
# every gate in `engram bench train` (docs/training.md, run r2: 4 trained phrasings per fact, no
# page-chunk examples, general replay at half the team examples), named here so the demo does not
# drift with later recipe experiments, with 3 passes instead of 4 and only the retrieval baseline
# scored beside the adapter (the demo's first run must fit in 20 minutes on 2 cores; measured:
# held-out recall 0.88, general 0.70 = the base model's). "continual" overrides it for the short
# update after the live edit: its data is small (the changed page's facts plus bounded replay), so
# more passes cost little. Chosen from trials on the demo's version 1 (docs/demo.md): 5 passes at
# lr 5e-4 with 8 replayed examples per new one -> recall 1.00, retention 0.86, general 0.69, 246 s;
# 4 replayed at 8 passes passed by one question on two gates; 8 replayed at 8 passes cost 357 s.
DEMO_TRAINING: dict[str, Any] = {
    # The Kestrel sample states its facts as `Key: value` lines; the demo keeps the recipe that was
    # measured on it (docs/demo.md) rather than the prose recipe that is the default now.
    "generation": "facts",
    "max_new_tokens": 32,
    "epochs": 3.0,
    "train_questions_per_fact": 4,
    "statements_per_fact": 1,
    "page_examples": False,
    "replay_general": 0.5,
    "checkpoint_every": 25,
    "eval_baselines": ["rag"],
    "continual": {"epochs": 5.0, "lr": 5e-4},
}
# A continual update replays at most 8 earlier examples per new one and asks at most 64 retention
# questions, so its cost follows the new events, not the workspace size (engram bench freshness).
DEMO_BOUNDS: dict[str, int] = {"replay_per_example": 8, "retention_questions": 64}
# The facts the demo asks about (fact keys), one per platform, and the one its live edit changes.
DEMO_FACTS = ("launch date", "load testing tool", "notice period", "team lead")
EDITED_FACT = "launch date"
CONNECTIONS = {"notion": "kestrel-notion", "microsoft": "kestrel-microsoft", "harvey": "kestrel-harvey"}


class DemoError(EngramError):
    """A demo step failed; the message names the step and the reason."""


def check_installed() -> None:
    """DemoError naming the extra to install when the trainer is missing (the demo trains an adapter)."""
    try:
        import engram_training  # noqa: F401
    except ImportError as exc:
        raise DemoError(f"the demo trains an adapter: pip install 'engram-sdk[all]' ({exc.name} is missing)") from None


@dataclass
class Answered:
    question: str
    expected: str
    answer: str
    prompt_tokens: int
    correct: bool
    rag_answer: str | None = None
    rag_prompt_tokens: int | None = None
    rag_correct: bool | None = None
    adapter_version: int | None = None


@dataclass
class DemoReport:
    team: str
    home: str
    events_by_platform: dict[str, int] = field(default_factory=dict)
    verified_events: int = 0
    synced: dict[str, int] = field(default_factory=dict)  # new events stored this run, per platform
    trained: list[dict[str, Any]] = field(default_factory=list)  # versions trained this run
    adapter_version: int | None = None
    gate_failures: list[str] = field(default_factory=list)
    answers: list[Answered] = field(default_factory=list)
    edit: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def answers_correct(self) -> int:
        return sum(a.correct for a in self.answers)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["answers_correct"] = self.answers_correct
        out["answers_total"] = len(self.answers)
        return out


Say = Callable[[str], None]


@contextmanager
def _step(report: DemoReport, name: str) -> Iterator[None]:
    t0 = time.perf_counter()
    try:
        yield
    except DemoError:
        raise
    except EngramError as exc:
        raise DemoError(f"{name}: {exc}") from exc
    finally:
        report.timings[name] = round(report.timings.get(name, 0.0) + time.perf_counter() - t0, 2)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Demo:
    """One run of the demo over ``home`` (see the module docstring). ``training`` replaces
    ``DEMO_TRAINING`` (tests pass a tiny-model recipe with the gates off)."""

    def __init__(self, home: Path, *, team: str = "kestrel", base_model: str | None = None,
                 training: dict[str, Any] | None = None, bounds: dict[str, int] | None = None,
                 say: Say = print, progress: Any = None, live_edit: bool = True,
                 first_training: dict[str, Any] | None = None, extra_pages: int = 0):
        self.root = Path(home).resolve()
        self.team = team
        self.training = dict(DEMO_TRAINING if training is None else training)
        self.bounds = dict(DEMO_BOUNDS if bounds is None else bounds)
        self.say = say
        self.progress = progress  # a rich Progress (or None)
        self.live_edit = live_edit
        # ``engram bench freshness``: the first version's recipe (only a starting point there), and
        # generated Notion pages that make the workspace bigger
        self.first_training = dict(first_training) if first_training is not None else None
        self.extra_pages = extra_pages
        base = Settings.load(self.root / "home")
        self.settings = Settings(home=base.home, database_url=f"sqlite:///{base.home / 'engram.db'}",
                                 base_model=base_model or base.base_model)
        self.state_path = self.root / "demo-state.json"
        self.state: dict[str, Any] = json.loads(self.state_path.read_text()) if self.state_path.exists() else {}
        self.report = DemoReport(team=team, home=str(self.root))

    # --- bookkeeping ------------------------------------------------------------------------------

    def _save_state(self) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state, indent=2))
        tmp.replace(self.state_path)

    def _bar(self, description: str, total: float | None) -> Any:
        return self.progress.add_task(description, total=total) if self.progress is not None else None

    def _advance(self, task: Any, n: float = 1, **kw: Any) -> None:
        if self.progress is not None and task is not None:
            self.progress.update(task, advance=n, **kw)

    def _done(self, task: Any) -> None:
        if self.progress is not None and task is not None:
            self.progress.remove_task(task)

    # --- the run ----------------------------------------------------------------------------------

    def run(self) -> DemoReport:
        t0 = time.perf_counter()
        self.root.mkdir(parents=True, exist_ok=True)
        self.settings.init_home()
        with EventStore.open(self.settings.database_url) as store, ExitStack() as stack:
            self.store = store
            self.secrets = FileSecretStore(self.settings.home / "secrets" / "secrets.json")
            self.keyring = Keyring(self.settings.keys_dir)
            if not any(k.status == "active" for k in self.keyring.keys()):
                self.keyring.generate([self.team])
            store.trust([k for k in load_key_set(self.keyring.export_public()) if k.team_id == self.team],
                        origin="demo-keyring")
            with _step(self.report, "sandboxes"):
                self.sandboxes = self._start_sandboxes(stack)
            stack.callback(self._save_workspaces)  # also when a later step fails: nothing is lost
            with _step(self.report, "connect"):
                self._connect_all()
            with _step(self.report, "sync"):
                self._sync_all()
                self._team_history()
            self._count_events()
            with _step(self.report, "train"):
                self._train_if_needed()
            with _step(self.report, "server"):
                self.server_url = self._start_server(stack)
                token = self._api_key(stack)
            from engram_sdk.client import EngramClient

            self.client = stack.enter_context(EngramClient(self.server_url, token, timeout=600.0, max_retries=0))
            with _step(self.report, "questions"):
                self._ask_all()
            if self.live_edit:
                with _step(self.report, "live_edit"):
                    self._live_edit()
        self.report.seconds = round(time.perf_counter() - t0, 2)
        return self.report

    # --- 1. sandboxes ------------------------------------------------------------------------------

    def _workspace(self, platform: str) -> dict[str, Any]:
        saved = self.root / "sandboxes" / f"{platform}.json"
        if saved.exists():
            return json.loads(saved.read_text())
        if platform == "notion":
            from .notion_workspace import kestrel_workspace, with_generated_pages

            return with_generated_pages(kestrel_workspace(), self.extra_pages)
        elif platform == "microsoft":
            from .microsoft_workspace import kestrel_workspace
        else:
            from .harvey_workspace import kestrel_workspace
        return kestrel_workspace()

    def _start_sandboxes(self, stack: ExitStack) -> dict[str, SandboxServer]:
        try:
            from engram_harvey.sandbox import HarveySandbox
            from engram_microsoft.sandbox import MicrosoftSandbox
            from engram_notion.sandbox import NotionSandbox
            from engram_sdk.connectors import SandboxServer
        except ImportError as exc:
            raise DemoError(f"the demo needs the connectors: pip install 'engram-sdk[all]' ({exc.name} is missing)")
        # Each sandbox keeps its port from run to run: a connection's checkpoint may hold the
        # platform's absolute links (Graph's deltaLinks), which must stay valid for a rerun.
        ports: dict[str, int] = self.state.setdefault("ports", {})

        def start(name: str, sandbox: Any, **kw: Any) -> SandboxServer:
            try:
                server = SandboxServer(sandbox, port=ports.get(name, 0), **kw)
            except OSError as exc:
                raise DemoError(f"the {name} sandbox cannot listen on port {ports.get(name)} again ({exc}); "
                                f"free it, or start over with a new --home") from None
            ports[name] = server.port
            return stack.enter_context(server)

        servers = {
            "notion": start("notion", NotionSandbox(self._workspace("notion"))),
            "microsoft": start("microsoft", MicrosoftSandbox(self._workspace("microsoft")), tls=True,
                               tls_dir=self.root / "sandboxes" / "tls"),
            "harvey": start("harvey", HarveySandbox(self._workspace("harvey"))),
        }
        self._save_state()
        # Demo-sized budgets: the platforms' 429 paths stay on, at rates a demo does not wait on.
        servers["notion"].admin.set_budget(100, window=1.0)
        servers["microsoft"].admin.set_budget(60, window=1.0)
        self.say(f"sandboxes: Notion {servers['notion'].url}, Microsoft 365 {servers['microsoft'].url} (TLS), "
                 f"Harvey {servers['harvey'].url}")
        return servers

    def _save_workspaces(self) -> None:
        d = self.root / "sandboxes"
        d.mkdir(parents=True, exist_ok=True)
        for name, server in self.sandboxes.items():
            sandbox = server.sandbox
            with sandbox.lock:
                text = json.dumps(sandbox.workspace)
            tmp = d / f"{name}.json.tmp"
            tmp.write_text(text)
            tmp.replace(d / f"{name}.json")

    # --- 2. connections and syncs ------------------------------------------------------------------

    def _connect(self, platform: str, scope: str, config: dict[str, Any]) -> Any:
        from engram_sdk._connections import connect  # what `engram connect` runs (no public name)

        return connect(self.store, self.secrets, platform=platform, name=CONNECTIONS[platform], team_id=self.team,
                       scope=scope, config=config)

    def _connect_all(self) -> None:
        from pydantic import SecretStr

        from . import harvey_workspace as hv
        from . import microsoft_workspace as ms
        from . import notion_workspace as nt

        sb = self.sandboxes
        conns = {}
        conns["notion"] = self._connect("notion", f"page:{nt.kestrel_scope_root()}", {
            "token": SecretStr(nt.KESTREL_TOKEN), "base_url": sb["notion"].url, "requests_per_second": 90.0})
        ws = sb["microsoft"].sandbox.workspace
        ms_config = {"tenant": ws["tenant"], "client_id": ms.KESTREL_APP["client_id"],
                     "client_secret": SecretStr(ms.KESTREL_APP["client_secret"]), "delegated": True,
                     "authority": f"{sb['microsoft'].url}/{ws['tenant']}", "graph_url": f"{sb['microsoft'].url}/v1.0",
                     "ca_bundle": sb["microsoft"].ca_bundle,
                     "rate_limits": {k: "50/s" for k in ("channel", "team", "onenote", "drive", "site", "default")}}
        # The sandbox's identity provider starts afresh each run (tokens live in its memory), so the
        # sign-in is made again: the cached MSAL tokens of an earlier run would only be refused.
        for secret in ("msal_token_cache", "device_flow"):
            self.secrets.delete(CONNECTIONS["microsoft"], secret)
        try:
            conns["microsoft"] = self._connect("microsoft", ms.kestrel_scope(), ms_config)
        except AuthorizationPending as pending:
            # The device-code sign-in: a person would open the URL and enter the code; the
            # sandbox's identity provider approves it for the team's user.
            code = pending.instructions.rsplit("enter the code ", 1)[1].split()[0]
            sb["microsoft"].admin.op("approve_device", user_code=code, user=ms.KESTREL_USER)
            self.say(f"Microsoft 365: device-code sign-in {code} approved in the sandbox for {ms.KESTREL_USER}")
            conns["microsoft"] = self._connect("microsoft", ms.kestrel_scope(), {})
        conns["harvey"] = self._connect("harvey", hv.kestrel_scope(), {
            "token": SecretStr(hv.KESTREL_TOKEN), "base_url": sb["harvey"].url, "lookback_days": 7,
            "rate_limits": dict(hv.DEMO_RATE_LIMITS), "audit_dir": str(self.settings.home / "audit" / "harvey")})
        for platform, c in conns.items():
            self.say(f"connected {c.name}: {c.account_name} ({c.source}) -> team {c.team_id}")

    def _sync_all(self) -> None:
        from engram_sdk.connectors import SyncRunner

        runner = SyncRunner(self.store, self.keyring, self.secrets)
        task = self._bar("syncing", len(CONNECTIONS))
        for platform, name in CONNECTIONS.items():
            if self.progress is not None:
                self.progress.update(task, description=f"syncing {platform}")
            result = runner.run(name)
            if not result.ok:
                raise DemoError(f"sync of {name} failed: {result.error}")
            self.report.synced[platform] = self.report.synced.get(platform, 0) + result.stored
            self.say(f"synced {name}: {result.records} records, {result.stored} new events, "
                     f"{result.duplicates} already stored ({result.seconds:.1f} s)")
            self._advance(task)
        self._done(task)

    def _team_history(self) -> None:
        """The edits the team made after the first sync (all but the live one), made once in the
        sandboxes and picked up by an incremental sync as Edit events."""
        if self.state.get("history_edits"):
            return
        from .harvey_workspace import kestrel_edits as harvey_edits
        from .notion_workspace import kestrel_edits as notion_edits

        for e in notion_edits():
            if e.field.lower() != EDITED_FACT:
                self.sandboxes["notion"].admin.op(e.op, **e.body)
                self.say(f"the team edits Notion: {e.field} {e.before} -> {e.after}")
        for body in harvey_edits():
            self.sandboxes["harvey"].admin.op("edit_cell", **body)
            self.say(f"the team edits a Harvey review table: {body['column_name']} -> {body['summary']}")
        self._sync_all()
        self.state["history_edits"] = True
        self._save_state()
        self._save_workspaces()

    def _count_events(self) -> None:
        from engram_sdk import SignatureError

        trusted = self.store.trusted_keys()
        by_platform: dict[str, int] = {}
        verified = 0
        for ev in self.store.iter_events(self.team):
            platform = ev.event.record.platform
            by_platform[platform] = by_platform.get(platform, 0) + 1
            try:
                trusted.verify(ev.envelope)
                verified += 1
            except SignatureError:
                pass
        self.report.events_by_platform = by_platform
        self.report.verified_events = verified
        counts = ", ".join(f"{k} {v}" for k, v in sorted(by_platform.items()))
        self.say(f"store: {sum(by_platform.values())} signed events ({counts}), "
                 f"{verified} verify against the team's trusted key")

    # --- 3. training ---------------------------------------------------------------------------------

    def _config(self, *, continual: bool) -> Any:
        """The TrainConfig of a first or a continual run (``DEMO_TRAINING`` and its "continual" part)."""
        from engram_training.config import TrainConfig

        recipe = self.first_training if self.first_training is not None and not continual else self.training
        values = {k: v for k, v in recipe.items() if k != "continual"}
        if continual:
            values.update(self.training.get("continual") or {})
        return TrainConfig.from_dict({**TrainConfig().to_dict(), **values})

    def _train(self, *, continual: bool) -> Any:
        from engram_training.train import Bounds, train

        config = self._config(continual=continual)
        task = self._bar("training the team adapter" + (" (continual)" if continual else ""), None)

        def on_progress(p: Any) -> None:
            if self.progress is not None and task is not None:
                what = (f"training: loss {p.loss:.3f}, {p.tokens_per_s:.0f} tokens/s" if p.step < p.total else
                        "evaluating: held-out recall, general probe, retrieval baseline")
                self.progress.update(task, total=p.total, completed=p.step, description=what)

        t0 = time.perf_counter()
        result = train(self.team, store=self.store, settings=self.settings, config=config, on_progress=on_progress,
                       bounds=Bounds(**self.bounds) if continual else None)
        self._done(task)
        m = result.metrics
        entry = {"version": result.version.version, "published": result.published, "reasons": result.reasons,
                 "continual": continual, "seconds": round(time.perf_counter() - t0, 2),
                 **{k: m.get(k) for k in ("recall", "retention", "general_score", "base_general_score", "rag_recall",
                                          "rag_prompt_tokens", "adapter_prompt_tokens", "train_seconds",
                                          "train_tokens", "tokens_per_s", "steps")}}
        self.report.trained.append(entry)
        fmt = lambda v: "-" if v is None else (f"{v:.2f}" if isinstance(v, float) else str(v))  # noqa: E731
        self.say(f"version {entry['version']}: recall {fmt(m.get('recall'))} (retrieval top-{m.get('rag_top_k', '?')}: "
                 f"{fmt(m.get('rag_recall'))}), retention {fmt(m.get('retention'))}, "
                 f"general {fmt(m.get('general_score'))} "
                 f"(base {fmt(m.get('base_general_score'))}); {m.get('steps')} steps, {fmt(m.get('train_seconds'))} s")
        if result.published:
            self.say(f"version {entry['version']} published: it answers the team's questions from now on")
        else:
            self.report.gate_failures += result.reasons
            self.say(f"[bold red]quality gate failed[/bold red]: version {entry['version']} was NOT published: "
                     + "; ".join(result.reasons))
        return result

    def _needs_training(self) -> bool:
        """False when the newest version (published or not) was trained on every event stored."""
        from engram_training.registry import Registry

        versions = Registry(self.store, self.settings.adapters_dir).versions(self.team)
        if not versions:
            return True
        latest = versions[-1].manifest.get("watermark")
        return self.store.read(self.team, after=latest, limit=1).events != []

    def _train_if_needed(self) -> None:
        from engram_training.registry import Registry

        if self._needs_training():
            self._train(continual=Registry(self.store, self.settings.adapters_dir).current(self.team) is not None)
        else:
            self.say("adapter: already trained on every stored event, not training again")
        self._note_current()

    def _note_current(self) -> None:
        from engram_training.registry import Registry

        reg = Registry(self.store, self.settings.adapters_dir)
        current = reg.current(self.team)
        self.report.adapter_version = current.version if current else None
        versions = reg.versions(self.team)
        rejected = bool(versions) and not versions[-1].current and versions[-1].status == "rejected"
        if rejected and not self.report.gate_failures:
            # rejected in an earlier run: say so again (this run trained nothing new)
            self.report.gate_failures.append(versions[-1].reason or "a quality gate failed")
            self.say(f"[bold red]quality gate failed[/bold red] earlier: version {versions[-1].version} was NOT "
                     f"published: {versions[-1].reason}")

    # --- 4. server, key, questions --------------------------------------------------------------------

    def _start_server(self, stack: ExitStack) -> str:
        port = _free_port()
        # The demo's own home: its SQLite file and its file secrets store, whatever the shell says.
        env = {k: v for k, v in os.environ.items() if k != "ENGRAM_DATABASE_URL"}
        env.update(ENGRAM_HOME=str(self.settings.home), ENGRAM_SECRETS="file")
        if self.settings.base_model:
            env["ENGRAM_BASE_MODEL"] = self.settings.base_model
        log = open(self.root / "server.log", "ab")
        stack.callback(log.close)
        cmd = [sys.executable, "-c", "from engram_sdk._cli import main; main()", "serve", "--port", str(port),
               "--query-rate", "6000/min"]
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)

        def stop() -> None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

        stack.callback(stop)
        import httpx

        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise DemoError(f"the server exited with code {proc.returncode}; see {self.root / 'server.log'}")
            try:
                if httpx.get(url + "/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise DemoError(f"the server did not answer within 120 s; see {self.root / 'server.log'}")
            time.sleep(0.2)
        self.server_pid = proc.pid
        self.say(f"server: {url}/v1 (engram serve, pid {proc.pid}; OpenAPI at {url}/openapi.json)")
        return url

    def _api_key(self, stack: ExitStack) -> str:
        from engram_sdk._apikeys import ApiKeys  # the server's key table (no public name)

        keys = ApiKeys(self.store)
        key, token = keys.create(self.team, "query", "engram demo")
        stack.callback(keys.revoke, key.key_id)  # one key per run, revoked when the run ends
        self.say(f"API key {key.key_id} created for team {self.team} (role query; the secret is not shown)")
        return token

    def _questions(self) -> list[tuple[str, str]]:
        """(question, fact id) for DEMO_FACTS: each fact's held-out phrasing (the trainer's probe
        question, never trained on), chosen once and kept in the demo's state."""
        if self.state.get("questions"):
            return [tuple(q) for q in self.state["questions"]]  # type: ignore[misc]
        from engram_training import dataset as D
        from engram_training import facts as F

        seed = self._config(continual=False).seed
        facts = D.current_facts(D.collect(self.store, self.team))
        out = []
        for key in DEMO_FACTS:
            fact = next((f for f in facts if f.key.lower() == key), None)
            if fact is not None:
                out.append((F.phrasings(fact, seed=seed, n_train=0, n_holdout=1)[1][0], fact.ident))
        self.state["questions"] = out
        self._save_state()
        return out

    def _expected(self) -> dict[str, str]:
        from engram_training import dataset as D

        return {f.ident: f.value for f in D.current_facts(D.collect(self.store, self.team))}

    def _rag(self, questions: list[str]) -> list[Any]:
        """The retrieval baseline for these questions: the trainer's BM25 top-k prompt, base model."""
        from engram_training import base as base_model
        from engram_training import dataset as D
        from engram_training.evaluate import retrieval_contexts
        from engram_training.infer import Engine

        config = self._config(continual=False)
        base = base_model.load(self.settings.base_model, self.settings.cache_root)
        chunks = D.page_chunks(D.collect(self.store, self.team), base.tokenizer, config.rag_chunk_tokens)
        contexts = retrieval_contexts(chunks, questions, top_k=config.rag_top_k)
        return Engine(base).answer_many(questions, contexts=contexts, max_new_tokens=config.max_new_tokens)

    def _ask(self, question: str, fact: str, expected: dict[str, str], rag: Any = None) -> Answered:
        from engram_training.facts import is_correct

        from engram_sdk import APIError

        want = expected.get(fact, "")
        try:
            r = self.client.query(self.team, question, max_tokens=32)
            answer, tokens, version = r.answer, r.usage.prompt_tokens, r.adapter_version
        except APIError as exc:
            answer, tokens, version = f"(the server answered {exc})", 0, None
        a = Answered(question=question, expected=want, answer=answer, prompt_tokens=tokens,
                     correct=bool(want) and version is not None and is_correct(answer, [want]), adapter_version=version)
        if rag is not None:
            a.rag_answer, a.rag_prompt_tokens = rag.text, rag.prompt_tokens
            a.rag_correct = bool(want) and is_correct(rag.text, [want])
        return a

    def _ask_all(self) -> None:
        questions = self._questions()
        if not questions:
            self.say("no adapter probe to ask from: training did not run")
            return
        expected = self._expected()
        rag = self._rag([q for q, _ in questions])
        task = self._bar("asking the team adapter", len(questions))
        for (q, fact), r in zip(questions, rag):
            a = self._ask(q, fact, expected, r)
            self.report.answers.append(a)
            self._advance(task)
            self._show(a)
        self._done(task)

    def _show(self, a: Answered) -> None:
        mark = lambda ok: "[green]correct[/green]" if ok else "[red]wrong[/red]"  # noqa: E731
        self.say(f"[bold]Q:[/bold] {a.question}  (expected: {a.expected})")
        who = f"adapter v{a.adapter_version}" if a.adapter_version is not None else "adapter   "
        self.say(f"  {who}: {a.answer!r} - {mark(a.correct)}, {a.prompt_tokens} prompt tokens")
        if a.rag_answer is not None:
            self.say(f"  retrieval : {a.rag_answer!r} - {mark(a.rag_correct)}, {a.rag_prompt_tokens} prompt tokens")

    # --- 5. the live edit -----------------------------------------------------------------------------

    def _notion_webhook(self) -> None:
        """Point the Notion sandbox's webhook at the server; the first time, through Notion's
        verification handshake (the token arrives at the server, the operator confirms it)."""
        from engram_notion import confirm_webhook_verification, reset_webhook_verification, reveal_verification_token
        from engram_notion._connector import WEBHOOK_STATE  # no public name: the connection's handshake state
        from engram_sdk.connectors import Connections

        name = CONNECTIONS["notion"]
        admin = self.sandboxes["notion"].admin
        url = f"{self.server_url}/v1/webhooks/{name}"
        token = reveal_verification_token(self.secrets, name)
        verified = Connections(self.store).get(name).meta.get(WEBHOOK_STATE) == "verified"
        if token is None or not verified:
            reset_webhook_verification(self.store, name, self.secrets)
            sent = _secrets.token_urlsafe(24)
            admin.set_webhook(url, sent)
            admin.op("send_verification")
            deadline = time.monotonic() + 30
            while (token := reveal_verification_token(self.secrets, name)) is None:
                if time.monotonic() > deadline:
                    raise DemoError("Notion's verification request did not reach the server")
                time.sleep(0.1)
            # What pasting the token into Notion's UI checks: the server kept the token Notion sent.
            if token != sent:
                raise DemoError("the server holds a verification token Notion did not send")
            confirm_webhook_verification(self.store, name, self.secrets)
            self.say("Notion webhook verified: the server holds the verification token (not shown)")
        admin.set_webhook(url, token)

    def _live_edit(self) -> None:
        from .notion_workspace import kestrel_edits

        questions = dict((fact.rsplit("::", 1)[1], (q, fact)) for q, fact in self._questions())
        edit = next(e for e in kestrel_edits() if e.field.lower() == EDITED_FACT)
        q = questions.get(EDITED_FACT)
        page_text = json.dumps(self.sandboxes["notion"].sandbox.workspace)
        if f"{edit.field}: {edit.after}" in page_text:
            self.say(f"live edit: already made in an earlier run ({edit.field} is {edit.after})")
            self.report.edit = {"already_made": True}
        else:
            if self.report.adapter_version is None:
                self.say("live edit skipped: there is no published adapter to update (see the gate above)")
                self.report.edit = {"skipped": "no published adapter"}
                return
            self._notion_webhook()
            before = self.store.count(self.team)
            t0 = time.perf_counter()
            self.sandboxes["notion"].admin.op(edit.op, **edit.body)
            self._save_workspaces()
            self.say(f"live edit in Notion: {edit.field} {edit.before} -> {edit.after}; the sandbox sends the "
                     "signed webhook to the server")
            stored = self._wait_for_events(before)
            ingested = time.perf_counter() - t0
            self.say(f"the server's webhook worker refetched the page and stored {stored} new events "
                     f"({ingested:.1f} s after the edit)")
            self.report.edit = {"field": edit.field, "before": edit.before, "after": edit.after,
                                "events_stored": stored, "seconds_to_ingest": round(ingested, 2)}
            result = self._train(continual=True)
            self.report.edit.update(version=result.version.version, published=result.published,
                                    seconds_to_update=round(time.perf_counter() - t0, 2))
            self._note_current()
        if q is not None:
            a = self._ask(q[0], q[1], self._expected())
            self.report.edit["answer"] = asdict(a)
            if "field" in self.report.edit:  # made in this run: edit -> first answer, timed
                self.report.edit["seconds_to_answer"] = round(time.perf_counter() - t0, 2)
            self._show(a)

    def _wait_for_events(self, before: int, timeout: float = 120.0) -> int:
        from engram_sdk.connectors import WebhookQueue

        queue = WebhookQueue(self.store)
        deadline = time.monotonic() + timeout
        while True:
            deliveries = self.sandboxes["notion"].admin.deliveries(wait=False)
            failed = [d for d in deliveries if (d.get("status") or 0) >= 400]
            if failed:
                raise DemoError(f"the server refused the Notion webhook: HTTP {failed[-1]['status']}")
            n = self.store.count(self.team) - before
            if n > 0 and not queue.counts().get("pending", 0):
                return n
            dead = queue.counts().get("dead", 0)
            if dead:
                raise DemoError(f"the webhook work was dead-lettered: {queue.dead()[-1]}")
            if time.monotonic() > deadline:
                raise DemoError(f"the edit did not reach the store within {timeout:.0f} s "
                                f"(queue: {queue.counts()}); see {self.root / 'server.log'}")
            time.sleep(0.2)


# --- engram bench freshness --------------------------------------------------------------------------

# ``engram bench freshness`` times the edit -> correct answer path at 1x from a first version trained
# with the demo's recipe, as a team's adapter is before its next edit (measured: from a version of a
# few steps, the same update drifted to general 0.58 and was rejected: it had to learn every replayed
# example for the first time). At 10x only the update's cost is compared, so the first version there
# is just a starting point: a few steps, no held-out probe (its evaluation stays cheap at 10x), and
# its general gate relaxed so that it is published. The update being measured keeps every gate.
FRESHNESS_START: dict[str, Any] = {"epochs": 0.05, "holdout_per_fact": 0, "min_recall": 0.0, "general_tolerance": 1.0}


def measure_freshness(root: Path, *, scale: int = 10, base_model: str | None = None,
                      training: dict[str, Any] | None = None, bounds: dict[str, int] | None = None,
                      say: Say = print, progress: Any = None) -> dict[str, Any]:
    """Edit one fact in the Notion sandbox and time it to the first answer from the team adapter,
    through the webhook, the queue, the events and a continual update; at 1x and at ``scale`` x the
    workspace (generated Notion pages). Each size runs in its own home under ``root``; the first
    version is trained with the demo's recipe at 1x and is only a cheap start (``FRESHNESS_START``)
    at ``scale`` x, where only the update's cost is compared."""
    recipe = dict(DEMO_TRAINING if training is None else training)
    out: dict[str, Any] = {"scale": scale, "bounds": dict(DEMO_BOUNDS if bounds is None else bounds)}
    for size in (1, scale):
        kestrel = len(load_records())
        say(f"[bold]freshness at {size}x the workspace[/bold]")
        demo = Demo(root / f"x{size}", base_model=base_model, training=recipe, bounds=bounds, say=say,
                    progress=progress, first_training=None if size == 1 else {**recipe, **FRESHNESS_START},
                    extra_pages=(size - 1) * kestrel)
        report = demo.run()
        edit = report.edit
        if "field" not in edit:  # no starting version was published: say why, with the numbers
            out[f"x{size}"] = {"events": sum(report.events_by_platform.values()), "update_seconds": None,
                               "skipped": edit, "gate_failures": report.gate_failures, "trained": report.trained,
                               "correct": False}
            continue
        update = next(t for t in reversed(report.trained) if t["continual"])
        answer = edit.get("answer") or {}
        out[f"x{size}"] = {"events": sum(report.events_by_platform.values()), "update_seconds": update["seconds"],
                           "train_seconds": update["train_seconds"], "steps": update["steps"],
                           "published": update["published"], "reasons": update["reasons"],
                           "seconds_to_ingest": edit["seconds_to_ingest"],
                           "seconds_to_answer": edit.get("seconds_to_answer"),
                           "answer": answer.get("answer"), "correct": bool(answer.get("correct"))}
    one, big = out["x1"], out[f"x{scale}"]
    both = one["update_seconds"] is not None and big["update_seconds"] is not None
    out.update({
        "seconds_to_correct_answer": one["seconds_to_answer"] if one["correct"] else None,
        "answered_correctly": one["correct"],
        "update_seconds_1x": one["update_seconds"],
        f"update_seconds_{scale}x": big["update_seconds"],
        "update_ratio": round(big["update_seconds"] / max(one["update_seconds"], 1e-9), 2) if both else None,
        "events_1x": one["events"], f"events_{scale}x": big["events"],
    })
    return out

