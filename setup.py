"""The package list for setuptools; every other build setting is in pyproject.toml.

The library's packages are found under src/ (namespace packages included, so the data folders
under medprune/data/sources ship with their files; package-data in pyproject.toml says which).
The kfp components and pipelines live in top-level folders and ship as medprune.components and
medprune.pipelines (package-dir in pyproject.toml maps them); pyproject.toml's packages.find
can search folders but not add these two mapped packages to what it finds, hence this file.
"""

from setuptools import find_namespace_packages, setup

setup(
    packages=[
        *find_namespace_packages("src", include=["medprune", "medprune.*"]),
        "medprune.components",
        "medprune.pipelines",
    ]
)
