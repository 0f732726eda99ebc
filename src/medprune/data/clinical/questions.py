"""Multiple-choice questions about ontology entries, with distractors of similar length
from the same branch (HPO) or chapter (ICD-10-CM).

Phrasing for log-likelihood scoring: the scorer sums log p(" " + option | question), so
every question ends with "Answer:" and options are bare terms or sentences.
"""

from __future__ import annotations

import bisect
import functools
import random
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from medprune.data.clinical.ontology import (
    HPO_PHENOTYPIC_ABNORMALITY,
    IcdCategory,
    IcdCode,
    Ontologies,
)


def _hpo_definition_question(definition: str) -> str:
    return f"Question: Which clinical term matches this definition? {definition}\nAnswer:"


def _hpo_term_question(name: str) -> str:
    return f"Question: What is the definition of the clinical term '{name}'?\nAnswer:"


def _icd_inclusion_question(inclusion_terms: Sequence[str]) -> str:
    listed = "; ".join(inclusion_terms)
    return (
        "Question: In ICD-10-CM, which diagnosis includes the following conditions: "
        f"{listed}?\nAnswer:"
    )


def _is_catch_all(description: str) -> bool:
    """ICD residual codes ("Other ...", "... unspecified") fit many questions at once."""
    d = description.lower()
    return (
        d.startswith("other")
        or "unspecified" in d
        or "not elsewhere classified" in d
        or " nec" in d
    )


class LengthPool:
    """Candidate distractors sorted by word count, to find the ones nearest an answer's
    length quickly (so that the summed log-probability does not simply favour the
    shortest option)."""

    def __init__(self, entries: Iterable[tuple[str, str]]) -> None:
        # (word count, text, key); the text decides ties so the order is reproducible.
        self.rows = sorted({(len(text.split()), text, key) for key, text in entries})
        self.lengths = [r[0] for r in self.rows]

    def pick(
        self,
        rng: random.Random,
        answer: str,
        reject: Callable[[str, str], bool],
        k: int = 3,
        window: int = 24,
    ) -> list[str] | None:
        """``k`` texts, none equal (case-insensitively) to ``answer`` or to each other and
        none with ``reject(key, text)``, drawn from the ``window`` valid candidates nearest
        the answer's word count. None when the pool has fewer than ``k``."""
        seen = {answer.lower()}
        near: list[str] = []
        centre = bisect.bisect_left(self.lengths, len(answer.split()))
        lo, hi = centre - 1, centre
        n_words = len(answer.split())
        while len(near) < window and (lo >= 0 or hi < len(self.rows)):
            # Step to whichever side is closer in word count.
            take_hi = lo < 0 or (
                hi < len(self.rows) and self.lengths[hi] - n_words <= n_words - self.lengths[lo]
            )
            _, text, key = self.rows[hi] if take_hi else self.rows[lo]
            if take_hi:
                hi += 1
            else:
                lo -= 1
            if text.lower() not in seen and not reject(key, text):
                seen.add(text.lower())
                near.append(text)
        if len(near) < k:
            return None
        return rng.sample(near, k)


def mcq_item(
    rng: random.Random,
    item_id: str,
    question: str,
    answer: str,
    distractors: list[str],
    category: str,
    source: str,
) -> dict[str, Any]:
    options = [answer, *distractors]
    rng.shuffle(options)
    return {
        "id": item_id,
        "question": question,
        "options": options,
        "answer": options.index(answer),
        "category": category,
        "source": source,
    }


def hpo_questions(
    rng: random.Random, onto: Ontologies, term_ids: Sequence[str], kind: str, want: int
) -> list[dict[str, Any]]:
    """Up to ``want`` HPO items of ``kind`` about ``term_ids`` (in order); distractors are
    askable terms of the same branch that are neither ancestors nor descendants."""
    by_branch: dict[str, list[str]] = {}
    for tid in sorted(onto.hpo_branch):
        if hpo_askable(onto, tid):
            by_branch.setdefault(onto.hpo_branch[tid], []).append(tid)
    field_of = "name" if kind == "hpo_definition_to_term" else "definition"
    pools = {
        b: LengthPool((t, getattr(onto.hpo_terms[t], field_of)) for t in tids)
        for b, tids in by_branch.items()
    }
    items: list[dict[str, Any]] = []
    for tid in term_ids:
        if len(items) >= want:
            break
        term = onto.hpo_terms[tid]
        branch = onto.hpo_branch[tid]
        ancestors = onto.hpo_ancestors.get(tid, frozenset())
        synonyms = {s.lower() for s in term.synonyms}

        def reject(
            other: str,
            text: str,
            tid: str = tid,
            ancestors: frozenset[str] = ancestors,
            synonyms: set[str] = synonyms,
        ) -> bool:
            return (
                other == tid
                or other in ancestors
                or tid in onto.hpo_ancestors.get(other, frozenset())
                or text.lower() in synonyms
            )

        if kind == "hpo_definition_to_term":
            question, answer, prefix = (
                _hpo_definition_question(term.definition),
                term.name,
                "hpo-def",
            )
        else:
            question, answer, prefix = _hpo_term_question(term.name), term.definition, "hpo-term"
        distractors = pools[branch].pick(rng, answer, reject)
        if distractors is None:
            continue
        items.append(mcq_item(rng, f"{prefix}-{tid}", question, answer, distractors, branch, "hpo"))
    return items


def hpo_askable(onto: Ontologies, tid: str) -> bool:
    """A term we can ask about: has a definition, a branch under Phenotypic abnormality,
    and a definition that does not spell out its own name (that would be trivial)."""
    term = onto.hpo_terms[tid]
    if not term.definition or len(term.definition.split()) < 5:
        return False
    if HPO_PHENOTYPIC_ABNORMALITY not in onto.hpo_ancestors.get(tid, frozenset()):
        return False
    return term.name.lower() not in term.definition.lower()


def _icd_answer_codes(category: IcdCategory) -> list[IcdCode]:
    return [
        c
        for c in category.codes
        if c.inclusion_terms
        and not _is_catch_all(c.description)
        and not any(c.description.lower() == t.lower() for t in c.inclusion_terms)
    ]


def _in_category(category: str, code: str, _text: str) -> bool:
    """Codes of an answer's own 3-character category are related to it (parent, siblings)."""
    return code[:3] == category


def icd_questions(
    rng: random.Random,
    categories: Sequence[IcdCategory],
    all_categories: Sequence[IcdCategory],
    want: int,
) -> list[dict[str, Any]]:
    """Up to ``want`` items "which diagnosis includes these terms", one per category at
    most; distractors are descriptions from the same chapter at the same depth."""
    rows: dict[tuple[str, int], list[tuple[str, str]]] = {}
    for cat in all_categories:
        for c in cat.codes:
            if not _is_catch_all(c.description):
                rows.setdefault((cat.chapter, c.depth), []).append((c.code, c.description))
    pools = {key: LengthPool(r) for key, r in rows.items()}
    items: list[dict[str, Any]] = []
    for cat in categories:
        if len(items) >= want:
            break
        answers = _icd_answer_codes(cat)
        if not answers:
            continue
        code = answers[rng.randrange(len(answers))]
        pool = pools.get((cat.chapter, code.depth))
        distractors = (
            pool.pick(rng, code.description, functools.partial(_in_category, cat.code))
            if pool
            else None
        )
        if distractors is None:
            continue
        terms = list(code.inclusion_terms[:6])
        items.append(
            mcq_item(
                rng,
                f"icd-incl-{code.code}",
                _icd_inclusion_question(terms),
                code.description,
                distractors,
                cat.chapter,
                "icd10cm",
            )
        )
    return items
