"""Regenerate examples/kestrel_demo/records.jsonl (the demo's fictional team workspace).

Run from the repository root: python scripts/build_sample_workspace.py
Every name, product, date and number in it is made up.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from engram_sdk._records import Document, Edit, Message, Person, Thread

OUT = Path(__file__).resolve().parents[1] / "examples" / "kestrel_demo" / "records.jsonl"
T0 = datetime(2026, 10, 1, 9, 0, tzinfo=timezone.utc)
TEAM_GROUP = "grp-kestrel"

P = {
    "odalys": Person(id="u-odalys", name="Odalys Brenner", email="odalys@fennwick.example"),
    "teodor": Person(id="u-teodor", name="Teodor Vasquez", email="teodor@fennwick.example"),
    "mirela": Person(id="u-mirela", name="Mirela Oduya", email="mirela@fennwick.example"),
    "hakon": Person(id="u-hakon", name="Hakon Lindqvist", email="hakon@fennwick.example"),
    "ravi": Person(id="u-ravi", name="Ravi Okonkwo", email="ravi@fennwick.example"),
    "legal": Person(id="u-amara", name="Amara Velde", email="amara@fennwick.example"),
}

NOTION = dict(platform="notion", workspace_id="ws-fennwick")
MS = dict(platform="microsoft", workspace_id="tenant-fennwick")
HARVEY = dict(platform="harvey", workspace_id="org-fennwick")


def at(hours: int) -> datetime:
    return T0 + timedelta(hours=hours)


def facts(intro: str, pairs: list[tuple[str, str]], more: str = "") -> str:
    text = intro + "\n\n" + "\n".join(f"- {k}: {v}" for k, v in pairs) + "\n"
    return text + ("\n" + more.strip() + "\n" if more else "")


# Prose around the facts, so pages read like real ones and retrieval has real chunks to search.
MORE = {
    "np-charter": """Kestrel was formed when the old payments group split in two. The team works in two-week
iterations and publishes a short weekly note for the rest of engineering. Decisions that affect
other teams are written down as one-page proposals and discussed in the Thursday architecture
review. The charter is reviewed every January; changes need the agreement of the whole team.""",
    "np-oncall": """Every engineer joins the rotation after their first month. A shift lasts one week and starts at
the handover. Pages that are not acknowledged within ten minutes go to the escalation contact.
After a night with more than two pages the person on call takes the next morning off. Write a short
note in the on-call log for every page, even when it resolved itself.""",
    "np-moonwick": """The old ledger was built in 2016 and can no longer keep up with peak traffic during sales events.
Moonwick moves the records in batches by merchant, oldest first, with a dual-write period of two
weeks for each batch. Rollback is possible until the old tables are dropped. Progress is reported
every Monday in the Kestrel channel, and blockers go to the weekly steering meeting.""",
    "np-quillstone": """Quillstone keeps every payment as an append-only entry with a double-entry check at write time.
Reads go through a small cache that is invalidated by the change feed. Backups are taken every six
hours and restored once a month as a drill. Schema changes go through the usual review and need a
migration plan that works while both the old and the new code run.""",
    "np-release": """A release is cut on the morning of the release day and goes to the canary first. If the error rate
stays flat for two hours it rolls out to everyone. Anything that misses the train waits for the next
one unless it fixes a customer-facing bug. The release notes are written by the author of each
change and collected by the release manager.""",
    "np-tooling": """New tools need a short proposal that says what problem they solve, what they cost and who looks
after them. Licences are renewed every April. Personal access tokens for these tools expire after
ninety days and must be renewed through the self-service portal, never shared in chat.""",
    "np-rituals": """Standup is fifteen minutes, cameras optional, and anything longer moves to a follow-up thread.
Retrospectives rotate their facilitator. The offsite happens once a year in spring and mixes
planning sessions with a day off together. New joiners present a short talk about a hobby in their
first month.""",
    "np-comp": """This page lists salary bands, the promotion budget and individual review notes. Do not copy any of
it to other pages or channels.""",
    "np-escalations": """Escalations arrive through the support desk or directly from an account manager. Acknowledge the
merchant within the agreed time, open an incident if more than one merchant is affected, and keep
the account manager in the loop until the case is closed. Every escalation gets a short summary in
the monthly report.""",
    "np-architecture": """The checkout service is split into an API layer, a pricing module, the payment orchestrator and
the ledger writer. Services talk through the message queue, except for the synchronous price
check. Each service owns its database; no service reads another one's tables. Diagrams live in the
architecture folder and are updated with every major change.""",
    "np-glossary": """Add a word when you catch yourself explaining it twice. Keep each entry to one line and link to
the page that explains it in full. Words that are no longer used are struck through rather than
deleted, so old documents still make sense.""",
    "np-retention": """The policy follows the company's data protection rules and is reviewed by the security champion
every year. Personal data in logs is masked at the source. Deletion requests from merchants are
handled within thirty days and confirmed in writing.""",
    "np-okrs": """Each objective has three key results with a named owner. Progress is scored at the end of every
month on a scale from zero to one, and the scores are shared in the monthly review. Key results
that turn out to be wrong are changed openly, with a note saying why.""",
    "np-deps": """Changes to shared interfaces are announced two weeks in advance in both teams' channels. Each
dependency has a contract test that runs in the pipeline. When an upstream outage affects checkout,
Kestrel opens the incident and invites the other team.""",
    "on-onboarding": """Before the first day, IT ships the laptop and creates the accounts. In the first week the new
joiner pairs with their buddy, reads the charter and the architecture overview, and ships one
small change to production. At the end of the first month they join the on-call rotation.""",
    "on-security": """Secrets are never stored in code or in chat. Every service reads its secrets at start-up and
rotates them every quarter. Security reviews are needed for new external endpoints, new data stores
and any change to authentication.""",
    "on-postmortem": """Merchants saw failed payments for the whole outage window. The alert fired after four minutes but
the runbook pointed at the wrong dashboard. Actions taken since then include automatic certificate
renewal, an expiry alert thirty days ahead and a fixed runbook.""",
    "on-vendors": """Keep vendor contacts up to date after every renewal. Support tickets go through each vendor's portal
first; call the named contact only for outages or billing problems.""",
    "on-metrics": """Numbers come from the analytics warehouse and are checked by the data team before they are shared.
The monthly report compares each figure with the previous month and the same month last year.""",
    "on-hiring": """Interviews have four stages: a screening call, a take-home exercise, a systems design
conversation and a meeting with the team. Every candidate hears back within five working days of
each stage.""",
    "sp-home": """Welcome to the Kestrel site. Use the links on the left for the handbook, the release calendar and
the on-call schedule. Visitors are welcome on Tuesdays; book a desk through the facilities portal.""",
}


records = []
n = 0


def doc(src: dict, eid: str, title: str, path: list[str], intro: str, pairs: list[tuple[str, str]], *,
        doc_type: str = "page", author: str = "odalys", restricted: bool = False, visible_to=None,
        properties: dict[str, str] | None = None, parent: str | None = None) -> None:
    global n
    n += 1
    text = facts(intro, pairs, MORE.get(eid, "")) if pairs else intro
    records.append(Document(
        **src, entity_id=eid, parent_id=parent, path=path, title=title, text=text, doc_type=doc_type,
        authors=[P[author]], created_at=at(n), updated_at=at(n), restricted=restricted,
        visible_to=visible_to or [TEAM_GROUP], properties=properties or {},
        url=f"https://example.invalid/{src['platform']}/{eid}",
    ))


def thread(src: dict, eid: str, title: str, path: list[str], thread_type: str, turns: list[tuple[str, str]],
           parent: str | None = None) -> None:
    global n
    n += 1
    (a0, t0), rest = turns[0], turns[1:]
    replies = [Message(id=f"{eid}-m{i}", author=P[a], created_at=at(n) + timedelta(minutes=i), text=t)
               for i, (a, t) in enumerate(rest, 1)]
    records.append(Thread(
        **src, entity_id=eid, parent_id=parent, path=path, title=title, thread_type=thread_type,
        messages=[Message(id=f"{eid}-m0", author=P[a0], created_at=at(n), text=t0, replies=replies)],
        authors=[P[a0]], created_at=at(n), updated_at=at(n) + timedelta(minutes=len(rest)),
        visible_to=[TEAM_GROUP],
    ))


def edit(src: dict, eid: str, title: str, path: list[str], field: str, before: str, after: str, author: str) -> None:
    global n
    n += 1
    records.append(Edit(
        **src, entity_id=eid, path=path, title=title, field=field, before=before, after=after,
        author=P[author], authors=[P[author]], updated_at=at(n + 200), visible_to=[TEAM_GROUP],
    ))


K = ["Fennwick Labs", "Kestrel"]
NB = ["Kestrel Notebook"]

# --- Notion pages --------------------------------------------------------------------------------
doc(NOTION, "np-charter", "Kestrel Team Charter", K,
    "Kestrel owns the Fennwick checkout service and everything a merchant touches while paying.",
    [("Team lead", "Odalys Brenner"), ("Latency budget", "200 ms"), ("Founded", "February 2023")])
doc(NOTION, "np-oncall", "Kestrel On-call Handbook", K,
    "How the Kestrel on-call rotation works, who to wake up and when the pager changes hands.",
    [("Paging tool", "PagerHawk"), ("Escalation contact", "Teodor Vasquez"), ("Handover time", "09:30 Lisbon time")])
doc(NOTION, "np-moonwick", "Project Moonwick", K + ["Projects"],
    "Moonwick moves every payment record off the old ledger. It is the team's biggest project of the year.",
    [("Goal", "migrate payments to the Quillstone ledger"), ("Launch date", "14 March 2027"),
     ("Budget", "48,000 euros")], author="teodor")
doc(NOTION, "np-quillstone", "Quillstone Ledger Notes", K + ["Projects"],
    "Working notes on the ledger that Moonwick migrates to.",
    [("Database", "Fjordbase 7"), ("Data region", "Frankfurt"), ("Owner", "Mirela Oduya")], author="mirela")
doc(NOTION, "np-release", "Release Process", K,
    "Kestrel ships on a weekly release train; this page says when and who signs off.",
    [("Release train day", "Wednesday"), ("Release manager", "Hakon Lindqvist"),
     ("Freeze window", "last week of December")], author="hakon")
doc(NOTION, "np-tooling", "Kestrel Tooling", K,
    "The tools the team uses every day. Ask in the channel before adding a new one.",
    [("CI system", "Bramblerun"), ("Feature flag tool", "Lanternflag"), ("Error tracker", "Glintwatch")])
doc(NOTION, "np-rituals", "Team Rituals", K,
    "The meetings and traditions that keep Kestrel together.",
    [("Standup time", "10:15"), ("Retro cadence", "every second Friday"), ("Offsite location", "Porto")])
doc(NOTION, "np-comp", "Compensation Review 2027", K + ["Management"],
    "Confidential: for the team lead and HR only.",
    [("Senior engineer salary band", "98,000 euros")], restricted=True, visible_to=["u-odalys", "grp-hr"])
doc(NOTION, "np-escalations", "Customer Escalations Guide", K,
    "What to do when a merchant escalates a checkout problem.",
    [("Largest customer", "Harborline Freight"), ("Support SLA", "4 business hours")], author="teodor")
doc(NOTION, "np-architecture", "Architecture Overview", K,
    "A map of the checkout service: what talks to what, and in which language it is written.",
    [("Message queue", "Thornmq"), ("Service language", "Elixir")], author="mirela")
doc(NOTION, "np-glossary", "Kestrel Glossary", K,
    "Words the team uses that newcomers will not know.",
    [("Blue lane", "the canary deployment path"), ("Tidewater", "the nightly reconciliation job")])
doc(NOTION, "np-retention", "Data Retention Policy", K + ["Policies"],
    "How long Kestrel keeps data, and where the copies live.",
    [("Log retention", "30 days"), ("Backup location", "Oslo")], author="ravi")
doc(NOTION, "np-okrs", "Q1 2027 OKRs", K + ["Planning"],
    "What Kestrel commits to for the first quarter of 2027.",
    [("Objective", "cut checkout errors by half"), ("Key result owner", "Liesel Amankwah")])
doc(NOTION, "np-deps", "Kestrel Dependencies", K,
    "Teams Kestrel depends on and teams that depend on Kestrel.",
    [("Upstream team", "Heron"), ("Downstream consumer", "Finch analytics")], author="mirela")

# --- OneNote pages and a SharePoint site page (Microsoft 365) ----------------------------------------
doc(MS, "on-onboarding", "Onboarding Checklist", NB + ["People"],
    "Everything a new Kestrel engineer needs in the first week.",
    [("Laptop vendor", "Corvid Systems"), ("Onboarding buddy", "Ines Achterberg")], doc_type="note", author="odalys")
doc(MS, "on-security", "Security Notes", NB + ["Engineering"],
    "Where secrets live and who to ask about security reviews.",
    [("Secrets vault", "Keymoss"), ("Security champion", "Ravi Okonkwo")], doc_type="note", author="ravi")
doc(MS, "on-postmortem", "Checkout Outage Postmortem", NB + ["Incidents"],
    "The September 2026 checkout outage: what happened and what we changed.",
    [("Root cause", "expired TLS certificate"), ("Outage duration", "47 minutes")], doc_type="note", author="teodor")
doc(MS, "on-vendors", "Vendor Contacts", NB + ["Operations"],
    "Who to call at each vendor.",
    [("Account manager", "Selma Hargreave"), ("Hosting provider", "Nimbusfold")], doc_type="note", author="hakon")
doc(MS, "on-metrics", "Kestrel Metrics", NB + ["Engineering"],
    "The numbers the team reports every month.",
    [("Monthly active merchants", "12,400"), ("Conversion goal", "3.8 percent")], doc_type="note", author="odalys")
doc(MS, "on-hiring", "Hiring Plan", NB + ["People"],
    "Roles Kestrel is hiring for in 2027.",
    [("Open role", "staff site reliability engineer"), ("Recruiter", "Paz Montenegro")], doc_type="note")
doc(MS, "sp-home", "Kestrel Team Site", ["Fennwick Intranet", "Teams"],
    "The Kestrel team site on the intranet.",
    [("Team mailbox", "kestrel@fennwick.example"), ("Office", "Building C, floor 4")], doc_type="site_page")

# --- Harvey review table rows (contracts the team depends on) ---------------------------------------
HP = ["Kestrel Vendor Contracts", "Review table"]
doc(HARVEY, "hv-row-harborline", "Harborline Freight Master Services Agreement", HP,
    "Master services agreement between Fennwick Labs and Harborline Freight.", [],
    doc_type="row", author="legal", properties={
        "Governing law": "Irish law", "Renewal date": "1 July 2027", "Liability cap": "2 million euros"})
doc(HARVEY, "hv-row-nimbusfold", "Nimbusfold Hosting Contract", HP,
    "Hosting contract for the checkout service's servers.", [],
    doc_type="row", author="legal", properties={"Notice period": "90 days", "Governing law": "Dutch law"})
doc(HARVEY, "hv-row-corvid", "Corvid Systems Purchase Agreement", HP,
    "Purchase agreement for the team's laptops.", [],
    doc_type="row", author="legal", properties={"Payment terms": "net 45 days", "Warranty": "36 months"})

# --- Threads: Teams channels, Notion comments, Harvey queries ----------------------------------------------
CH = ["Kestrel", "General"]
thread(MS, "tm-loadtest", "Choosing a load tester", CH, "channel_thread", [
    ("teodor", "Which load testing tool did we settle on for Moonwick?"),
    ("mirela", "Load testing tool: Stormgauge. It won because its scripts are plain Elixir."),
])
thread(MS, "tm-dinner", "Team dinner", CH, "channel_thread", [
    ("odalys", "Where and when is the end-of-year dinner?"),
    ("hakon", "Dinner venue: Casa Merindol"),
    ("odalys", "Dinner date: 5 December"),
])
thread(MS, "tm-weekend", "December weekend pager", ["Kestrel", "On-call"], "channel_thread", [
    ("hakon", "Who has the pager on the December weekends?"),
    ("ravi", "Weekend on-call: Ravi Okonkwo, I swapped with Teodor."),
])
thread(NOTION, "nc-release-comments", "Comments on Release Process", K, "comments", [
    ("teodor", "Who approves a hotfix outside the release train?"),
    ("hakon", "Hotfix approver: Zuzana Pelletier"),
], parent="np-release")
thread(HARVEY, "hv-q-termination", "Harborline termination notice", ["Kestrel Vendor Contracts"], "query", [
    ("legal", "What is the termination notice period in the Harborline Freight agreement?"),
    ("legal", "Termination notice: 60 days written notice, per clause 14.2."),
])

# --- Edits: a Notion property change, a review-table cell, a page line ------------------------------
edit(NOTION, "np-moonwick", "Project Moonwick", K + ["Projects"], "Launch date", "14 March 2027", "21 March 2027",
     "teodor")
edit(HARVEY, "hv-row-nimbusfold", "Nimbusfold Hosting Contract", HP, "cell:Notice period", "90 days", "120 days",
     "legal")
edit(NOTION, "np-rituals", "Team Rituals", K, "Standup time", "10:15", "09:45", "odalys")

OUT.parent.mkdir(parents=True, exist_ok=True)
with open(OUT, "w") as f:
    for r in records:
        f.write(r.model_dump_json() + "\n")
print(f"{len(records)} records -> {OUT}")
