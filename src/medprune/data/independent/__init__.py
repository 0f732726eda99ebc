"""Clinical multiple-choice sets from sources that nothing medprune trains on uses.

The built-in set and the recovery text both come from HPO and ICD-10-CM, so a certificate
on the built-in set says nothing about what the model knew beyond them. These sets come
from elsewhere: :mod:`.wordnet` (medical glosses of Princeton WordNet 3.0; the demo and
examples certify on it) and :mod:`.drugs` (medication brand names, MedlinePlus / DrugBank;
kept for the retention benchmark only). :mod:`.build` writes both from the extracts that
ship in ``medprune/data/sources/``; ``python -m medprune.data.independent.extract``
remakes those extracts from the original files.
"""
