"""Visit-note summarization: a doctor-patient dialogue in, a clinical note out, scored
against the note a clinician wrote.

Prompt (defaults): ``Visit transcript:``, the dialogue between triple-quote lines with its
turn tags written as names (``[doctor] hi`` -> ``Doctor: hi``; ``speaker_labels``), a
blank line, then the configured instruction (``evaluate.visit_notes.instruction``; the
default, :data:`medprune.config.DEFAULT_NOTE_INSTRUCTION`, asks for a summary in the usual
sections with nothing the visit did not contain), as one user turn of the model's chat
template (``prompt_style: chat``) or as plain text. ``instruction_position: before`` puts
the instruction first and the bare dialogue after a blank line instead (SmolLM2-135M then
continues the dialogue rather than writing a note). Baseline and candidate
get identical prompts: the prompt depends only on the tokenizer, data and settings, and a
SHA-256 of the prompts goes into the results.

A prompt longer than ``max_input_tokens`` loses dialogue from the **front** (the end of a
visit holds the assessment and plan), starting at the next turn, with a warning and the
number of tokens cut recorded per item; with ``truncate: false`` it is an error naming the
file, record and field before any model work.

Generation is greedy, batched, at most ``max_new_tokens`` per note. Per note:

* ROUGE-1, ROUGE-2 and ROUGE-Lsum F1 (``rouge-score``, stemming, notes split into lines);
* section coverage: the share of the reference note's sections (chief complaint, history
  of present illness, review of systems, physical exam, results, assessment and plan, ...;
  headings and their usual variants) that the generated note has as a heading;
* hallucination rate: the share of the note's clinical concepts (:mod:`.concepts`) that the
  dialogue never mentions; omission rate: the share of the reference note's concepts that
  the generated note misses. The reference note's own hallucination rate is reported beside
  them: paraphrase the proxy cannot see sets a floor no model is expected to beat.
"""

from __future__ import annotations

import functools
import hashlib
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from statistics import mean

from medprune.errors import DataError
from medprune.evaluate.concepts import ConceptVocabulary, item_concepts
from medprune.evaluate.generation import generate_greedy_ids
from medprune.evaluate.note_formats import VisitNoteItem

#: Per-item scores of a note, higher is better; the gate's paired test picks one.
NOTE_ITEM_SCORES = (
    "rouge1",
    "rouge2",
    "rougeLsum",
    "section_coverage",
    "faithfulness",
    "completeness",
)

#: Canonical note sections and the headings that name them (lower case, no punctuation).
SECTIONS: dict[str, tuple[str, ...]] = {
    "chief_complaint": ("chief complaint", "cc", "reason for visit"),
    "history_of_present_illness": (
        "history of present illness",
        "hpi",
        "history of presenting illness",
        "history",
    ),
    "review_of_systems": ("review of systems", "ros"),
    "physical_exam": ("physical exam", "physical examination", "exam", "examination"),
    "vitals": ("vitals", "vital signs", "vitals reviewed"),
    "results": ("results", "labs", "laboratory results", "imaging", "test results", "diagnostics"),
    "assessment_and_plan": (
        "assessment and plan",
        "assessment & plan",
        "assessment",
        "plan",
        "impression",
        "impression and plan",
    ),
    "medications": ("medications", "current medications", "medication"),
    "allergies": ("allergies",),
    "past_history": (
        "past medical history",
        "medical history",
        "past history",
        "past surgical history",
        "surgical history",
    ),
    "social_history": ("social history",),
    "family_history": ("family history",),
    "instructions": ("instructions", "patient instructions"),
}
_HEADING_TO_SECTION = {h: name for name, heads in SECTIONS.items() for h in heads}


def note_sections(note: str) -> set[str]:
    """Canonical sections a note has as headings: a line that is (or starts with, before a
    colon) a known heading, in any case, with Markdown marks ignored."""
    found = set()
    for line in note.splitlines():
        text = line.strip().strip("#*_ ").strip()
        if not text:
            continue
        head = text.split(":", 1)[0] if ":" in text else text
        key = " ".join(re.sub(r"[^a-z& ]", " ", head.lower()).split())
        if key in _HEADING_TO_SECTION and (":" in text or len(text.split()) <= 6):
            found.add(_HEADING_TO_SECTION[key])
    return found


@functools.lru_cache(maxsize=1)
def _rouge_scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeLsum"], use_stemmer=True)


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def sentence_lines(text: str) -> str:
    """One sentence a line, which ROUGE-Lsum expects (rouge-score's own splitter needs NLTK
    data downloaded at run time; notes split well on line breaks and sentence ends)."""
    return "\n".join(
        s for line in text.splitlines() for s in _SENTENCE_END.split(line.strip()) if s
    )


def rouge_scores(prediction: str, reference: str) -> dict[str, float]:
    """ROUGE-1, ROUGE-2 and ROUGE-Lsum F1 of a note against its reference."""
    scores = _rouge_scorer().score(sentence_lines(reference), sentence_lines(prediction))
    return {k: float(v.fmeasure) for k, v in scores.items()}


@dataclass(frozen=True)
class NotePrompt:
    id: str
    text: str
    token_ids: tuple[int, ...]
    truncated_tokens: int  # dialogue tokens cut from the front


_SPEAKER_TAG = re.compile(r"^\[([A-Za-z][A-Za-z _-]{0,30})\][ \t]*", re.MULTILINE)


def name_speakers(dialogue: str) -> str:
    """Turn tags at the start of a line written as names: ``[doctor] hi`` -> ``Doctor: hi``,
    ``[patient_guest]`` -> ``Patient guest:``."""
    return _SPEAKER_TAG.sub(
        lambda m: m.group(1).replace("_", " ").strip().capitalize() + ": ", dialogue
    )


def _render(
    tokenizer, instruction: str, dialogue: str, style: str, position: str = "before"
) -> str:
    if position == "after":
        content = f'Visit transcript:\n"""\n{dialogue}\n"""\n\n{instruction}'
    else:
        content = f"{instruction}\n\n{dialogue}"
    if style == "chat":
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True
        )
    return f"{content}\n\nCLINICAL NOTE:\n"


def _encode(tokenizer, text: str, style: str) -> list[int]:
    # a chat template writes its own special tokens; plain text gets the tokenizer's usual ones
    return list(tokenizer(text, add_special_tokens=style != "chat")["input_ids"])


def build_note_prompts(
    tokenizer,
    items: Sequence[VisitNoteItem],
    *,
    instruction: str,
    prompt_style: str = "chat",
    instruction_position: str = "after",
    speaker_labels: str = "names",
    max_input_tokens: int,
    truncate: bool = True,
    source: str = "visit notes",
    field: str = "src",
    warn: Callable[[str], None] | None = None,
) -> list[NotePrompt]:
    """The prompt of every item, front-truncated to ``max_input_tokens``.

    ``instruction_position`` puts the instruction before the dialogue or after it (the
    dialogue then sits between triple quotes after ``Visit transcript:``);
    ``speaker_labels="names"`` writes turn tags as names (:func:`name_speakers`) first.

    Raises :class:`DataError` (naming ``source``, the record and ``field``) for an empty
    dialogue, a tokenizer without a chat template when ``prompt_style`` is ``chat``, an
    instruction that leaves no room for a dialogue, or an over-long dialogue with
    ``truncate`` off.
    """
    if prompt_style == "chat" and not getattr(tokenizer, "chat_template", None):
        raise DataError(
            f"{source}: the model's tokenizer has no chat template; set evaluate.visit_notes.prompt_style: plain"
        )
    overhead = len(
        _encode(
            tokenizer,
            _render(tokenizer, instruction, "", prompt_style, instruction_position),
            prompt_style,
        )
    )
    budget = max_input_tokens - overhead
    if budget < 16:
        raise DataError(
            f"{source}: the instruction and template take {overhead} tokens, leaving {budget} of "
            f"evaluate.visit_notes.max_input_tokens ({max_input_tokens}) for the dialogue"
        )
    prompts = []
    for item in items:
        if not item.dialogue.strip():
            raise DataError(f"{source}: record {item.id!r}: field {field!r} is empty")
        dialogue = item.dialogue.strip()
        if speaker_labels == "names":
            dialogue = name_speakers(dialogue)
        ids = _encode(
            tokenizer,
            _render(tokenizer, instruction, dialogue, prompt_style, instruction_position),
            prompt_style,
        )
        cut = 0
        if len(ids) > max_input_tokens:
            if not truncate:
                raise DataError(
                    f"{source}: record {item.id!r}: field {field!r} makes a prompt of {len(ids)} tokens, over "
                    f"evaluate.visit_notes.max_input_tokens ({max_input_tokens}), and truncation is off "
                    "(evaluate.visit_notes.truncate: false)"
                )
            d_ids = list(tokenizer(dialogue, add_special_tokens=False)["input_ids"])
            keep = d_ids[len(d_ids) - budget :]
            kept = tokenizer.decode(keep, skip_special_tokens=True)
            newline = kept.find("\n")
            if 0 <= newline < len(kept) - 1:
                kept = kept[newline + 1 :]  # start at a whole turn
            ids = _encode(
                tokenizer,
                _render(tokenizer, instruction, kept, prompt_style, instruction_position),
                prompt_style,
            )
            while len(ids) > max_input_tokens:  # re-tokenisation can differ by a token or two
                kept = kept[max(1, len(kept) // 50) :]
                ids = _encode(
                    tokenizer,
                    _render(tokenizer, instruction, kept, prompt_style, instruction_position),
                    prompt_style,
                )
            cut = len(d_ids) - len(tokenizer(kept, add_special_tokens=False)["input_ids"])
            message = (
                f"{source}: record {item.id!r}: dialogue cut from the front by {cut} of {len(d_ids)} tokens "
                f"to fit evaluate.visit_notes.max_input_tokens ({max_input_tokens})"
            )
            warnings.warn(message, stacklevel=2)
            if warn:
                warn(message)
        text = _render(
            tokenizer,
            instruction,
            dialogue if not cut else kept,
            prompt_style,
            instruction_position,
        )
        prompts.append(NotePrompt(item.id, text, tuple(ids), cut))
    return prompts


def prompts_sha256(prompts: Sequence[NotePrompt]) -> str:
    digest = hashlib.sha256()
    for p in prompts:
        digest.update(p.id.encode() + b"\0" + p.text.encode() + b"\0")
    return digest.hexdigest()


@dataclass
class NoteResult:
    n: int
    rouge1: float
    rouge2: float
    rougeLsum: float  # the metric's own name
    section_coverage: float
    hallucination_rate: float
    omission_rate: float
    reference_hallucination_rate: float
    mean_new_tokens: float
    budget_hits: int  # notes that used the whole token budget (likely cut short)
    truncated_items: int
    max_new_tokens: int
    vocabulary: str
    per_category: dict[str, dict[str, float]]
    predictions: list[dict] = field(default_factory=list)


def score_note(item: VisitNoteItem, note: str, vocab: ConceptVocabulary) -> dict:
    """Every per-item score of one generated note."""
    rouge = rouge_scores(note, item.reference)
    ref_sections = note_sections(item.reference)
    got = note_sections(note)
    coverage = len(ref_sections & got) / len(ref_sections) if ref_sections else None
    gen = item_concepts(note, item.dialogue, item.reference, vocab)
    ref = item_concepts(item.reference, item.dialogue, item.reference, vocab)
    return {
        **rouge,
        "section_coverage": coverage,
        "reference_sections": sorted(ref_sections),
        "note_sections": sorted(got),
        "missing_sections": sorted(ref_sections - got),
        "hallucination_rate": gen.hallucination_rate,
        "omission_rate": gen.omission_rate,
        "faithfulness": 1.0 - gen.hallucination_rate,
        "completeness": 1.0 - gen.omission_rate,
        "unsupported_concepts": gen.unsupported,
        "omitted_concepts": gen.omitted,
        "note_concepts": len(gen.note),
        "reference_hallucination_rate": ref.hallucination_rate,
    }


def _summary(rows: Sequence[dict]) -> dict[str, float]:
    cov = [r["section_coverage"] for r in rows if r["section_coverage"] is not None]
    return {
        "n": len(rows),
        "rouge1": mean(r["rouge1"] for r in rows),
        "rouge2": mean(r["rouge2"] for r in rows),
        "rougeLsum": mean(r["rougeLsum"] for r in rows),
        "section_coverage": mean(cov) if cov else 0.0,
        "hallucination_rate": mean(r["hallucination_rate"] for r in rows),
        "omission_rate": mean(r["omission_rate"] for r in rows),
    }


def score_visit_notes(
    model,
    tokenizer,
    items: Sequence[VisitNoteItem],
    prompts: Sequence[NotePrompt],
    vocab: ConceptVocabulary,
    *,
    max_new_tokens: int,
    batch_size: int = 4,
    progress: Callable[[int, int], None] | None = None,
) -> NoteResult:
    """Generate a note for every prompt (greedy) and score it against its reference."""
    if not items:
        raise DataError("no visit-note items to score")
    if [i.id for i in items] != [p.id for p in prompts]:
        raise ValueError("items and prompts differ")
    outputs = generate_greedy_ids(
        model,
        tokenizer,
        [p.token_ids for p in prompts],
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        progress=progress,
    )
    rows = []
    for item, prompt, (note, n_new) in zip(items, prompts, outputs, strict=True):
        rows.append(
            {
                "id": item.id,
                "category": item.category,
                "prediction": note,
                "reference": item.reference,
                "new_tokens": n_new,
                "hit_token_budget": n_new >= max_new_tokens,
                "truncated_tokens": prompt.truncated_tokens,
                **score_note(item, note, vocab),
            }
        )
    overall = _summary(rows)
    cats: dict[str, list[dict]] = {}
    for r in rows:
        cats.setdefault(r["category"], []).append(r)
    return NoteResult(
        n=len(rows),
        rouge1=overall["rouge1"],
        rouge2=overall["rouge2"],
        rougeLsum=overall["rougeLsum"],
        section_coverage=overall["section_coverage"],
        hallucination_rate=overall["hallucination_rate"],
        omission_rate=overall["omission_rate"],
        reference_hallucination_rate=mean(r["reference_hallucination_rate"] for r in rows),
        mean_new_tokens=mean(r["new_tokens"] for r in rows),
        budget_hits=sum(r["hit_token_budget"] for r in rows),
        truncated_items=sum(r["truncated_tokens"] > 0 for r in rows),
        max_new_tokens=max_new_tokens,
        vocabulary=vocab.source,
        per_category={c: _summary(v) for c, v in sorted(cats.items())},
        predictions=rows,
    )
