"""Questions a colleague could ask about a unit, generated on spaCy's parse of its statement.

For each answerable span of a statement (a person, organisation, product, place, date, time,
amount, count, a proper name the tagger missed, and with ``objects`` the noun phrase a verb
takes: "runs the conservation lab", "specialises in ...") the parse gives the clause around it,
and the span is turned into a wh-question the way English does it:

- the span is the subject:   "Priya owns the exporter."        -> "Who owns the exporter?"
- anything else:             "The export runs at 02:15."       -> "What time does the export run?"
  (do-support or auxiliary inversion, the span's preposition dropped or kept at the end)
- an embedded form:          "Do you know when the loan was approved?"
- a short form (modifiers, relative clauses and side phrases dropped);
- with ``given_names``, a person other than the answer named by the given name alone, as
  colleagues name each other.

Pronouns are resolved before parsing ("She also approves refunds" after a sentence naming Priya
becomes "Priya also approves refunds"; in a message, "I" is its author), so a statement names its
subject. Units with no span get topic questions about their noun phrases.

The recall probe asks what was never asked in training. A lead-in on a trained question ("Quick
question: who owns the exporter?") measured the templates: the adapter answered 0.84-0.95 of such a
probe and a fifth of what colleagues asked. So a sample of units (``hold_out``) keeps one of its
spans out of training altogether: the statement is still trained (as the answer to the unit's other
questions, in its section's passage, in links), but no training example asks for that span, and the
probe asks for it. That is the extraction a colleague's question needs: a fact read in a sentence,
asked for in a question nobody trained. Units that hold nothing out keep the lead-in forms
(``PROBE_*``, never trained), which a changed sentence's probe still uses.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from . import facts as F
from .units import Unit

WH = {"PERSON": "who", "ORG": "what", "PRODUCT": "what", "FAC": "what", "WORK_OF_ART": "what", "EVENT": "what",
      "LAW": "what", "NORP": "what", "LANGUAGE": "what", "GPE": "where", "LOC": "where", "DATE": "when",
      "TIME": "what time", "MONEY": "how much", "PERCENT": "what percentage", "QUANTITY": "how much",
      "CARDINAL": "how many", "ORDINAL": "which", "THING": "what", "OBJECT": "what"}
NAME_LABELS = {"PERSON", "ORG", "PRODUCT", "FAC", "WORK_OF_ART", "EVENT", "LAW", "GPE", "LOC", "THING", "NORP"}
_TIME = re.compile(r"\b\d{1,2}[:.]\d{2}(?:\s?[ap]\.?m\.?)?\b|\b\d{1,2}\s?[ap]\.?m\.?\b|\bnoon\b|\bmidnight\b", re.I)
_DROP_PREPS = {"on", "in", "at", "during", "of"}
_SUBJ = {"nsubj", "nsubjpass", "csubj"}
_PRON = {"he": "", "she": "", "him": "", "her": "'s", "his": "'s", "hers": "'s"}
# "I've booked" by Marcus -> "Marcus has booked": the verb after a resolved "I" agrees with the name.
_FIRST_PERSON_VERBS = {"'m": "is", "am": "is", "'ve": "has", "have": "has", "'ll": "will", "'d": "would",
                       "was": "was", "do": "does"}

TRAIN_EMBEDDED = ["Do you know {e}?", "Remind me {e}.", "I'm trying to remember {e}."]
PROBE_EMBEDDED = ["Any idea {e}?", "Could you tell me {e}?"]
PROBE_LEAD = ["Quick question: {q}", "Sorry to bother you, {q}"]
TOPIC_TRAIN = ["What do we know about {c}?", "What does {t} say about {c}?", "Tell me about {c}."]
TOPIC_PROBE = ["Anything written down about {c}?"]


@dataclass
class Generated:
    statement: str  # the unit as one self-contained sentence (pronouns resolved)
    train: list[str] = field(default_factory=list)  # training questions (answered with the statement)
    # per training question, the span it asks for ("" for a topic question): the short answer
    # a ``short_answers`` run puts before the statement
    train_answers: list[str] = field(default_factory=list)
    probe: list[tuple[str, str]] = field(default_factory=list)  # (probe question, expected short answer)
    answers: list[str] = field(default_factory=list)  # the answer spans the questions ask for
    names: set[str] = field(default_factory=set)  # names it mentions (people, systems, places)
    asks: list[tuple[str, str, str]] = field(default_factory=list)  # (question, name it mentions, verb lemma)
    held: bool = False  # one span kept out of training: ``probe`` asks for it


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _join(tokens: Iterable[Any]) -> str:
    toks = sorted(tokens, key=lambda t: t.i)
    # A token whose neighbour was dropped gets a space (the comma after "exporter" is gone).
    text = "".join(t.text + (t.whitespace_ or (" " if k + 1 < len(toks) and toks[k + 1].i != t.i + 1 else ""))
                   for k, t in enumerate(toks)).strip()
    text = re.sub(r"\s+([,.;:!?)])", r"\1", text)
    return re.sub(r"[\s,;:-]+$", "", text)


def resolve(units: list[Unit], people: set[str] = frozenset()) -> list[str]:
    """Each unit's statement: pronouns replaced by the person they most likely mean (the last
    person named earlier in the same record; a message's "I" is its author), list items given
    their lead-in, short items their section."""
    from .nlp import parse

    docs = parse([u.text for u in units])
    out, last_person, last_entity = [], "", ""
    for u, doc in zip(units, docs):
        if u.order == 0:
            last_person, last_entity = "", u.entity_id
        if u.entity_id != last_entity:
            last_person, last_entity = "", u.entity_id
        # A pronoun means the last person named before it, in this unit or an earlier one of the
        # record: "Bartholomew is the treasurer. He keeps the key." is about Bartholomew, not about
        # whoever the previous item named.
        named = [e for e in map(_whole_name, doc.ents) if e.root.dep_ not in ("compound", "amod") and (
                 (e.label_ == "PERSON" and (len(e) >= 2 or e.text in people or any(p.split()[0] == e.text
                                                                                   for p in people)))
                 or _looks_like_person(e))]
        # The small tagger misses some names altogether (a two-word name as the subject of "is
        # the treasurer"): a Title Case name as a clause's subject counts too.
        taken = {t.i for e in doc.ents for t in e}
        named += [nc for nc in doc.noun_chunks if not taken & {t.i for t in nc} and _looks_like_person(nc, any_label=True)]
        ends = {e.end: e.text for e in named}
        pieces = []
        after_i = False
        for t in doc:
            if t.i in ends:
                last_person = ends[t.i]
            low = t.text.lower()
            rep = None
            if after_i and low in _FIRST_PERSON_VERBS:
                rep = " " + _FIRST_PERSON_VERBS[low] if t.text.startswith("'") else _FIRST_PERSON_VERBS[low]
            after_i = False
            if u.author and low in ("i", "my", "me") and t.pos_ == "PRON":
                rep = u.author + ("'s" if low == "my" else "")
                after_i = low == "i"
            elif last_person and low in _PRON and t.pos_ == "PRON":
                # "comes to her" is the person; "her lab" is the person's
                suffix = ("'s" if t.tag_ == "PRP$" else "") if low == "her" else _PRON[low]
                rep = last_person + suffix
            if rep is not None:
                pieces.append(rep + t.whitespace_)
            else:
                pieces.append(t.text_with_ws)
        text = "".join(pieces).strip()
        if named:
            last_person = max(named, key=lambda e: e.end).text
        if u.kind == "item":
            if u.lead and u.lead.endswith(":"):
                text = f"{u.lead} {text}"
            elif len(text.split()) < 6 and u.section:
                text = f"{u.section}: {text}"
        out.append(text)
    return out


def _whole_name(span: Any) -> Any:
    """The entity with the Title Case names the tagger left in front of it: it often tags only
    the surname of a two-word name."""
    start = span.start
    while start > 0 and span.doc[start - 1].pos_ == "PROPN" and span.doc[start - 1].dep_ == "compound" \
            and span.doc[start - 1].head.i in range(start, span.end) and span.doc[start - 1].text[:1].isupper():
        start -= 1
    if start == span.start:
        return span
    from spacy.tokens import Span
    return Span(span.doc, start, span.end, label=span.label_)


def _looks_like_person(span: Any, *, any_label: bool = False) -> bool:
    """A two- or three-word Title Case name acting as a subject ("Wilhelmina Okafor chairs ..."):
    the small tagger often calls such names places or organisations, or nothing at all."""
    return (span.root.dep_ in ("nsubj", "nsubjpass") and 2 <= len(span) <= 3
            and all(t.text[:1].isupper() and t.text[1:].islower() for t in span)
            and (span.label_ in ("PERSON", "GPE", "ORG", "NORP", "LOC")
                 or (any_label and all(t.pos_ == "PROPN" for t in span))))


def _spans(doc: Any, people: set[str] = frozenset(), *, objects: bool = False) -> list[tuple[Any, str]]:
    """Answerable spans (spaCy Span, label), named entities first, then times and proper names
    the tagger missed. A name in ``people`` (the workspace's authors) is a person whatever the
    tagger thought."""
    def who(sp: Any) -> bool:
        return sp.text in people or _looks_like_person(sp) or any(
            c.lower_ == "who" and sp.root in (c.head, c.head.head) for c in sp.root.subtree)

    spans = [(e, "PERSON" if who(e) else e.label_) for e in map(_whole_name, doc.ents) if e.label_ in WH]
    taken = {t.i for s, _ in spans for t in s}
    for m in _TIME.finditer(doc.text):
        sp = doc.char_span(m.start(), m.end(), alignment_mode="expand")
        if sp is not None and not taken & {t.i for t in sp}:
            spans.append((sp, "TIME"))
            taken |= {t.i for t in sp}
    i = 0
    while i < len(doc):
        if doc[i].pos_ == "PROPN" and i not in taken and i > 0:
            j = i
            while j + 1 < len(doc) and doc[j + 1].pos_ == "PROPN" and j + 1 not in taken:
                j += 1
            sp = doc[i : j + 1]
            spans.append((sp, "PERSON" if who(sp) else "THING"))
            taken |= set(range(i, j + 1))
            i = j + 1
        else:
            i += 1
    if objects:
        spans += _object_spans(doc, taken)
    return spans


# What a clause says of its subject that no tagger names: "specialises in metals", "runs the
# conservation lab", "is the registrar". Most facts in prose are these, and colleagues ask for them
# ("what does X specialise in?") as often as for names, dates and numbers.
_OBJECT_DEPS = {"dobj", "attr", "oprd", "pobj"}


def _object_spans(doc: Any, taken: set[int]) -> list[tuple[Any, str]]:
    out = []
    for nc in doc.noun_chunks:
        root = nc.root
        # a name inside the chunk only as a modifier ("the Lisbon office") is never asked for itself
        if root.pos_ != "NOUN" or root.dep_ not in _OBJECT_DEPS or \
                {t.i for t in nc if not (t.dep_ == "compound" and t.head.i in range(nc.start, nc.end))} & taken:
            continue
        verb = root.head.head if root.dep_ == "pobj" else root.head
        if root.dep_ == "pobj" and root.head.dep_ != "prep":
            continue
        if verb.pos_ not in ("VERB", "AUX") or _subject(verb) is None:
            continue  # a noun hanging on a noun ("the lab on the second floor"): the clause asks it
        if not any(t.is_alpha and not t.is_stop for t in nc):
            continue
        # the chunk without its article: "the registrar" is answered "registrar" as well
        start = nc.start + 1 if nc[0].dep_ == "det" and len(nc) > 1 else nc.start
        out.append((doc[start : nc.end], "OBJECT"))  # not a name: no links or swaps are made of it
        taken |= {t.i for t in nc}
    return out


def _clause_verb(tok: Any) -> Any:
    while tok.dep_ != "ROOT" and tok.pos_ not in ("VERB", "AUX"):
        tok = tok.head
    return tok


def _subject(v: Any) -> Any | None:
    for c in v.children:
        if c.dep_ in _SUBJ:
            return c
    return None


def _rel_head(v: Any) -> Any | None:
    """In a relative clause ("..., which everyone calls Ledgerline"), the noun "which" stands for."""
    return v.head if v.dep_ == "relcl" else None


def _np(tok: Any) -> list[Any]:
    return [t for t in tok.subtree if t.dep_ not in ("relcl", "punct", "appos") and
            not any(a.dep_ in ("relcl", "appos") for a in t.ancestors if a in tok.subtree and a != tok)]


def _wh_for(span: Any, label: str) -> tuple[str, set[int], str]:
    """(wh phrase, token indices it replaces, preposition kept at the end)."""
    root = span.root
    # The answer goes with everything that hangs on it: "every Thursday", "Marta, who reviews ...".
    remove = {t.i for t in span} | {t.i for t in root.subtree}
    wh, trail = WH[label], ""
    before = span.doc[span.start - 1].lower_ if span.start > 0 else ""
    if label in ("DATE", "TIME") and (re.match(r"(every|each|once|twice|daily|weekly|monthly)\b", span.text, re.I)
                                      or before in ("every", "each", "once")):
        wh = "how often"
    elif label in ("DATE", "TIME") and re.search(r"\b(minutes?|hours?|days?|weeks?|months?|years?)$", span.text):
        wh = "how long"
    if label == "CARDINAL" and root.dep_ == "nummod" and root.head.pos_ == "NOUN":
        wh = f"how many {root.head.text}"
        remove.add(root.head.i)
        root = root.head
    elif label == "ORDINAL":  # "on the third floor of X" -> "which floor ... on?"
        wh = f"which {root.head.text}"
        remove |= {t.i for t in root.head.subtree}
        root = root.head
    head = root.head
    prep = head.text.lower() if root.dep_ == "pobj" and head.dep_ in ("prep", "agent") else ""
    if prep:
        remove.add(head.i)
    if label in ("GPE", "LOC") and prep not in ("in", "at", "from", "to", "near"):
        wh = "what"
    if prep and label == "ORDINAL":
        trail = prep
    elif prep and label in ("DATE", "TIME") and prep in ("until", "by", "before", "after", "since"):
        wh = f"{prep} when" if label == "DATE" else f"{prep} what time"
    elif prep and label == "OBJECT":
        trail = prep  # "what does X specialise in?": without it the question asks something else
    elif prep and not (prep in _DROP_PREPS or (wh == "where" and prep in ("in", "at"))):
        trail = prep
    return wh, remove, trail


_PRUNE = {"relcl", "appos", "advcl", "parataxis", "conj", "cc", "npadvmod", "punct", "acl"}


def _tokens(v: Any, skip: set[int], *, short: bool) -> list[Any]:
    """The clause's tokens minus ``skip``; ``short`` also drops side clauses and modifiers, and
    the verb's own prepositional phrases unless that leaves the verb bare ("looks after X"
    keeps "after X")."""
    def pruned(drop_preps: bool) -> list[Any]:
        out = []
        for t in v.subtree:
            if t.i in skip or t == v:
                continue
            if t.dep_ == "punct" or t.dep_ == "mark":
                continue
            if short and any(a.dep_ in _PRUNE or (drop_preps and a.dep_ in ("amod", "advmod", "prep") and a.head == v)
                             for a in [t, *t.ancestors] if a.i != v.i and v in a.ancestors):
                continue
            out.append(t)
        return out

    toks = pruned(True)
    if short and not any(t.pos_ in ("NOUN", "PROPN", "NUM", "ADJ") for t in toks):
        toks = pruned(False)
    return toks


def _questions_for(doc: Any, span: Any, label: str) -> tuple[str, str, str] | None:
    """(direct question, embedded clause, short question) asking for ``span``; None when the
    parse gives no clause to ask about."""
    v = _clause_verb(span.root)
    if v.pos_ not in ("VERB", "AUX"):
        return None
    if any(c.tag_ == "WRB" or c.dep_ == "mark" for c in v.children if c.i < v.i):
        return None  # a subordinate clause ("when humidity leaves the band"): turned round, it is no question
    subj = _subject(v)
    if subj is None:
        return None
    wh, removed, trail = _wh_for(span, label)
    subj_idx = {t.i for t in subj.subtree}
    # the tagger sometimes splits a name (the first name an adverb, the surname the subject): the
    # entity the subject belongs to is the subject
    subj_idx |= {t.i for e in doc.ents if subj.i in range(e.start, e.end) for t in e}
    rel = _rel_head(v)
    if span.root.i in subj_idx:  # the subject is asked for: "Who owns the exporter?"
        if not (span.root == subj or subj.i in removed):
            return None
        def body(short: bool) -> str:
            toks = [v] + [t for t in _tokens(v, subj_idx, short=short) if t.i > subj.right_edge.i]
            return _join(toks)
        full, short = body(False), body(True)
        if len(full.split()) < 3 or not any(t.pos_ in ("NOUN", "PROPN", "NUM") and t.i > subj.right_edge.i
                                            for t in v.subtree):
            return None  # "Who says so?": nothing a colleague could recognise the fact by
        return f"{_cap(wh)} {full}?", f"{wh} {full}", f"{_cap(wh)} {short}?"
    if subj.lower_ in ("whoever", "whatever", "what") or (subj.lower_ in ("which", "that", "who") and rel is None):
        return None
    auxes = [c for c in v.children if c.dep_ in ("aux", "auxpass") and c.i < v.i]
    pre = [c for c in v.children if c.dep_ in ("neg", "advmod") and c.i < v.i and c.i not in subj_idx]
    skip = subj_idx | {a.i for a in auxes} | {p.i for p in pre} | removed
    subject = _join(t for t in doc if t.i in subj_idx)
    if subj.lower_ in ("which", "that", "who") and rel is not None:
        subject = _join(_np(rel))
    elif doc[subj.left_edge.i].pos_ != "PROPN" and not subject[:2].isupper() and subject.split()[0] != "I":
        subject = subject[:1].lower() + subject[1:]

    def rest(short: bool) -> str:
        toks = _tokens(v, skip, short=short)
        text = _join(toks)
        if rel is not None:  # "..., which everyone calls X": "which" stands for the noun before it
            for t in toks:
                if t.lower_ in ("which", "that", "whom") and t.tag_ in ("WDT", "WP"):
                    text = (_join([x for x in toks if x != t]) + " " + _join(_np(rel))).strip()
                    break
        return text

    adv = " ".join(p.text for p in pre)
    out = []
    for short in (False, True):
        r = rest(short)
        if auxes:
            first, more = auxes[0].text, " ".join(a.text for a in auxes[1:])
            direct = f"{_cap(wh)} {first} {subject} {adv} {more} {v.text} {r} {trail}"
            embedded = f"{wh} {subject} {first} {adv} {more} {v.text} {r} {trail}"
        elif v.lemma_ == "be":
            direct = f"{_cap(wh)} {v.text} {subject} {adv} {r} {trail}"
            embedded = f"{wh} {subject} {v.text} {adv} {r} {trail}"
        else:
            do = {"VBD": "did", "VBZ": "does"}.get(v.tag_, "do")
            direct = f"{_cap(wh)} {do} {subject} {adv} {v.lemma_} {r} {trail}"
            embedded = f"{wh} {subject} {adv} {v.text} {r} {trail}"
        out.append((" ".join(direct.split()) + "?", " ".join(embedded.split())))
    (direct, embedded), (short, _) = out
    return direct, embedded, short


def _cloze(doc: Any, span: Any, label: str) -> str:
    """The statement with the span replaced by its wh word: the fallback when the parse gives
    no clause ("The nightly export runs at what time?")."""
    wh = WH[label]
    text = doc[: span.start].text_with_ws + wh + (" " if span.end < len(doc) else "") + doc[span.end :].text
    return re.sub(r"[.!]\s*$", "", text.strip()) + "?"


def _chunks(doc: Any, exclude: set[int]) -> list[str]:
    out = []
    for nc in doc.noun_chunks:
        if nc.root.pos_ == "PRON" or {t.i for t in nc} & exclude:
            continue
        words = [t for t in nc if not t.is_stop and t.is_alpha]
        if any(t.pos_ == "PROPN" for t in words) or len(words) >= 2:
            out.append(_join([t for t in nc if t.dep_ != "det" or t.i != nc.start]))
    return out


def generate(units: list[Unit], *, per_unit: int, seed: int, people: set[str] = frozenset(),
             short_first: bool = False, hold_out: Callable[[Unit], bool] | None = None,
             objects: bool = False, given_names: bool = False) -> list[Generated]:
    """Statements, training questions and probe questions for every unit; ``people`` are names
    known to be people (authors of the team's records). ``short_first``: a small budget keeps
    each span's short question before its full clause (measured on the development workspace:
    no recall gained either way, docs/training.md). ``hold_out`` is asked, for each table cell and
    each sentence with at least two answers, whether to keep one answer out of training for the
    probe. ``objects`` and ``given_names``: see the module's docstring (off by default: measured
    on the development workspace, no recall gained, docs/training.md)."""
    from .nlp import parse

    statements = resolve(units, people)
    docs = parse(statements)
    out = []
    for n, (u, statement, doc) in enumerate(zip(units, statements, docs)):
        g = Generated(statement=statement)
        if u.fact is not None:  # a table cell or property: the fact templates, one form held out
            train, held = F.phrasings(u.fact, seed=seed, n_train=per_unit, n_holdout=1)
            g.train, g.answers = train, [u.fact.value]
            g.train_answers = [u.fact.value] * len(train)
            g.probe = [(q, u.fact.value) for q in held]
            g.names = {u.fact.subject}
            if hold_out is not None and hold_out(u):
                # No question asks for the value; the statement is trained as what the row says.
                where = u.title or "the page"
                g.held, g.train = True, [TOPIC_TRAIN[1].format(t=where, c=u.fact.subject)]
                g.train_answers = [""]
            out.append(g)
            continue
        spans = _spans(doc, people, objects=objects)
        g.names = {s.text for s, lab in spans if lab in NAME_LABELS}
        forms: list[tuple[str, str, str, str, str]] = []  # (direct, embedded, short, answer, verb)
        for span, label in spans:
            if label == "ORDINAL" and not (span.root.dep_ == "amod" and span.root.head.pos_ == "NOUN"):
                continue  # "second" alone: nothing to ask "which" of
            if span.root.dep_ in ("compound", "amod", "poss", "nmod") and span.root.head.pos_ in ("NOUN", "PROPN") \
                    and label != "ORDINAL":
                continue  # "the Lisbon office": a modifier, not something a colleague asks for
            q = _questions_for(doc, span, label)
            parsed = q is not None
            if q is None:
                c = _cloze(doc, span, label)
                if len(c.split()) > 16:
                    continue  # a long sentence with a hole in it teaches noise; its topic questions stay
                q = (c, "", c)
            if span.text.lower() in q[0].lower():
                continue
            forms.append((*q, span.text, _clause_verb(span.root).lemma_ if parsed else ""))
        familiar = _given_names(spans) if given_names else []
        r = (seed + n) % 7
        held = -1
        # Two answers at least, so the unit keeps a question whose answer is its statement.
        if hold_out is not None and len({f[3] for f in forms}) >= 2 and hold_out(u):
            held = (seed + n) % len(forms)
            direct, _, _, answer, _ = forms[held]
            g.held, g.probe = True, [(direct, answer)]
        cands: list[tuple[str, str]] = []  # (question, the span it asks for)
        firsts = set()
        for k, (direct, emb, short, answer, verb) in enumerate(forms):
            if held >= 0 and answer == forms[held][3]:
                g.answers.append(answer)
                continue
            # Colleagues ask the short form ("Who keeps the seed bank?"), but trained
            # first it gained nothing measurable, so by default it follows the full clause, as
            # in prose-units/1.
            short_ok = short != direct and len(short.split()) >= 4
            first = short if short_first and short_ok else direct
            firsts.add(first)
            cands.append((first, answer))
            for full, given in familiar:  # colleagues say "Ifor", not "Ifor Pryce-Jenkins"
                if full in direct and full != answer:
                    cands.append((direct.replace(full, given), answer))
                    break
            if short_ok:
                cands.append((direct if first == short else short, answer))
            if emb:
                cands.append((TRAIN_EMBEDDED[(r + k) % len(TRAIN_EMBEDDED)].format(e=emb), answer))
            where = u.section or u.title
            if where:
                cands.append((f"About {where}: {direct[:1].lower() + direct[1:]}", answer))
            g.answers.append(answer)
            if not g.held:
                g.probe.append((PROBE_LEAD[(r + k) % len(PROBE_LEAD)].format(q=short[:1].lower() + short[1:]),
                                answer))
                if emb:
                    g.probe.append((PROBE_EMBEDDED[(r + k) % len(PROBE_EMBEDDED)].format(e=emb), answer))
            for name in sorted(g.names):  # sorted: set order changes between processes (resume)
                if verb and name in direct and name != answer:
                    g.asks.append((direct, name, verb))
        chunks = _chunks(doc, {t.i for s, _ in spans for t in s if s.text in g.answers})
        for k, c in enumerate(chunks[:2]):
            cands.append((TOPIC_TRAIN[(r + k) % len(TOPIC_TRAIN)].format(c=c, t=u.title or "the page"), ""))
        seen, chosen = set(), []
        for q, a in cands:
            if q.lower() not in seen and len(q.split()) <= 40:
                seen.add(q.lower())
                chosen.append((q, a))
        g.train = _spread([q for q, _ in chosen], per_unit, firsts)
        asked_for = dict(chosen)
        g.train_answers = [asked_for[q] for q in g.train]
        if not forms and chunks:
            g.probe.append((TOPIC_PROBE[0].format(c=chunks[0]), ""))
        out.append(g)
    return out


def _given_names(spans: list[tuple[Any, str]]) -> list[tuple[str, str]]:
    """(full name, given name) of the unit's people: a team calls its members by their given
    names, and the statements (pronouns resolved to the full name) never do."""
    out = []
    for sp, label in spans:
        words = sp.text.split()
        if label == "PERSON" and 2 <= len(words) <= 3 and words[0][:1].isupper() and len(words[0]) > 2:
            out.append((sp.text, words[0]))
    return out


def _spread(questions: list[str], n: int, direct: set[str]) -> list[str]:
    """Up to n questions: the direct question of each span first (a small budget still covers
    every span), then the other forms in order."""
    firsts = [q for q in questions if q in direct]
    return (firsts + [q for q in questions if q not in direct])[:n]
