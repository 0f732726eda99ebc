"""Plain-text paragraphs about ontology entries (held-out, calibration and recovery text)."""

from __future__ import annotations

from medprune.data.clinical.ontology import HpoTerm, IcdCategory


def hpo_text(term: HpoTerm) -> str:
    """One paragraph about an HPO term: name, definition, comment, synonyms."""
    parts = [f"{term.name}: {term.definition}" if term.definition else f"{term.name}."]
    if term.comment:
        parts.append(term.comment)
    if term.synonyms:
        parts.append("Also called: " + "; ".join(term.synonyms) + ".")
    return " ".join(parts)


def icd_text(category: IcdCategory, max_codes: int = 25) -> str:
    """One paragraph about an ICD-10-CM category: its codes, inclusion and exclusion notes."""
    lines = []
    for c in category.codes[:max_codes]:
        line = f"{c.code} {c.description}."
        if c.inclusion_terms:
            line += " Includes: " + "; ".join(c.inclusion_terms) + "."
        if c.excludes:
            line += " Excludes: " + "; ".join(c.excludes) + "."
        lines.append(line)
    return "\n".join(lines)
