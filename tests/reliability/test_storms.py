"""429 storms and revoked credentials against the sandboxes, on a fake clock shared by connector
and sandbox (a five-minute storm costs milliseconds).

Storms held: the sync completes with every event of an undisturbed run; a Retry-After beyond the
retry budget stops the sync at once with a message naming the wait, and a rerun completes it.
Revocations held: a platform token revoked mid-sync stops with ``reconnect_needed`` and keeps the
checkpoint, nothing moves while it stays revoked, and after restoring it the sync completes; events
signed by a revoked key are not trained on."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from engram_notion import NotionConnector
from engram_notion.sandbox import NotionSandbox
from engram_sdk import load_key_set
from engram_sdk._example import ExampleConnector
from engram_sdk._example.sandbox import ExampleSandbox, sample_workspace
from engram_sdk._http import FakeClock
from engram_sdk._sandbox import serve
from engram_sdk.testing import Harness

from .conftest import scale


class Platform:
    """One connector against its sandbox, twice: the deployment under test and a reference."""

    def __init__(self, tmp, kind: str):
        self.clock = FakeClock()
        if kind == "notion":
            self.sandbox = NotionSandbox({"pages": []}, clock=self.clock)
            self.cls, self.name, self.token = NotionConnector, "acme-notion", "secret_sandbox"
        else:
            self.sandbox = ExampleSandbox(sample_workspace(12), clock=self.clock)
            self.cls, self.name, self.token = ExampleConnector, "ex", "tok-example-1"
        self.kind = kind
        self.server = serve(self.sandbox)
        self.admin = self.server.admin
        if kind == "notion":
            self.admin.op("generate", count=scale(40, 400))
        else:
            self.admin.op("generate", count=scale(40, 400), folder="eng")
        self.h = self._harness(tmp / "home")
        self.expected = self._harness(tmp / "reference")
        assert self.expected.sync(self.name).ok

    def _harness(self, home) -> Harness:
        h = Harness(home, clock=self.clock, connector_cls=self.cls)
        config = {"token": self.token, "base_url": self.server.url}
        h.connect(self.kind, self.name, scope="all", config=config)
        return h

    def close(self) -> None:
        self.h.close()
        self.expected.close()
        self.server.stop()


@pytest.fixture(params=["notion", "example"])
def platform(request, tmp_path) -> Iterator[Platform]:
    p = Platform(tmp_path, request.param)
    yield p
    p.close()


def test_429_storms_are_ridden_out(platform, tally):
    p = platform
    row = tally.row(f"429 / 5xx storms, {p.kind} sync")
    storms = {
        "consecutive 429s with a short Retry-After": dict(status=429, times=scale(30, 150), retry_after=1.5),
        "consecutive 503s without Retry-After": dict(status=503, times=scale(8, 9)),  # backoff 0.5 s doubling
        "429s with a fractional Retry-After": dict(status=429, times=scale(30, 150), retry_after=0.25),
    }
    for what, fault in storms.items():
        p.admin.fault(**fault)
        p.admin.set_budget(scale(10, 5), window=10.0)  # sustained throttling on top
        result = p.h.sync(p.name, full=True)
        p.admin.clear_faults()
        p.admin.clear_budget()
        row.check(result.ok and p.h.event_ids() == p.expected.event_ids(), f"{what}: {result.error}")


def test_a_retry_after_beyond_the_budget_stops_at_once_and_a_rerun_completes(platform, tally):
    p = platform
    row = tally.row(f"Retry-After beyond the retry budget, {p.kind} sync")
    for wait in (scale(400, 400), scale(3600, 86400)):
        p.admin.set_budget(scale(15, 60), window=float(wait))
        slept = p.clock.slept
        first = p.h.sync(p.name, full=True)  # from scratch, so each round has work to be stopped in
        p.admin.clear_budget()
        told = not first.ok and "asked to wait" in (first.error or "") and "resumes from the last checkpoint" in (
            first.error or "")
        again = p.h.sync(p.name)  # incremental: from the checkpoint the stopped run left
        row.check(told and p.clock.slept - slept < 300 and again.ok and p.h.event_ids() == p.expected.event_ids(),
                  f"Retry-After {wait}: {first.status} {first.error!r}; rerun {again.status}")


def test_a_platform_token_revoked_mid_sync(platform, tally):
    p = platform
    row = tally.row(f"platform token revoked mid-sync, {p.kind}")
    p.admin.revoke(p.token, after=scale(20, 60))
    first = p.h.sync(p.name)
    checkpoint, stored = p.h.checkpoint(p.name), p.h.event_count()
    again = p.h.sync(p.name)
    stuck = (again.status == "reconnect_needed" and p.h.checkpoint(p.name) == checkpoint
             and p.h.event_count() == stored)
    p.admin.restore()
    done = p.h.sync(p.name)
    row.check(first.status == "reconnect_needed" and 0 < stored < len(p.expected.event_ids()) and stuck
              and done.ok and p.h.event_ids() == p.expected.event_ids(),
              f"first {first.status} ({stored} stored), again {again.status}, after restore {done.status}")


def test_events_of_a_revoked_signing_key_are_not_trained_on(tmp_path, tally):
    from engram_training.dataset import collect

    from tests.factories import signed_events

    h = Harness(tmp_path / "home")
    good = signed_events(h.keyring, 5)
    h.store.append(good)
    old = h.keyring.active().kid
    h.keyring.rotate()
    h.store.trust(load_key_set(h.keyring.export_public()))
    newer = signed_events(h.keyring, 3, start=10)
    h.store.append(newer)
    h.store.revoke_key(old, "acme")
    out = collect(h.store, "acme")
    row = tally.row("signing key revoked: its stored events left out of training")
    for ev in good:
        row.check(out.rejected.get("revoked_key") == len(good) and ev.subject not in out.records,
                  f"{ev.subject} still trained on")
    assert set(out.records) == {e.subject for e in newer}
    h.close()
