"""The search's state as typed records that save and load themselves: :class:`SearchState`
(phase, chains, budget, every candidate), :class:`Candidate` (one candidate's record) and
:class:`Workspace` (the paths of the search's folder). ``state.json`` is their plain JSON
(:meth:`SearchState.save` / :meth:`SearchState.load`), the shape the search wrote when its
state was a dict: a state file written before these records reads back unchanged.

What a task hands to the next in a compiled pipeline (the batch of tasks, each candidate's
result) stays plain JSON: the tasks are ``dsl.ParallelFor`` items, and a rung's result is
kept with its candidate as the candidate task returned it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from medprune.io.atomic import atomic_write_json

STATE_FILE = "state.json"
SEARCH_SUMMARY = "summary.json"
# What a compiled pipeline's tasks add to the state they pass on (the next batch): not state.
HANDOFF_KEYS = ("next_batch",)


class _Record(BaseModel):
    # A typo in a field name is an error, never a silently dropped key.
    model_config = ConfigDict(extra="forbid")

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class Workspace(_Record):
    """Paths of the search's folder (:mod:`medprune.search.workspace` makes them): the run's
    folder (state, summary, report), the candidate cache, the items and the dense model's
    shared products."""

    root: str
    run_dir: str
    cache_dir: str
    dense_model: str
    search_items: str
    certification_items: str
    slices: list[str]
    baseline_search_eval: str
    baseline_certification_eval: str
    certification_eval: dict[str, Any]  # the evaluate section certification runs
    kl_texts: str | None = None
    dense_calibration: str | None = None
    run_id: str

    @property
    def state_file(self) -> Path:
        return Path(self.run_dir) / STATE_FILE

    @property
    def summary_file(self) -> Path:
        return Path(self.run_dir) / SEARCH_SUMMARY

    def candidate_dir(self, cid: str) -> Path:
        """The cache folder of candidate ``cid`` (pruned model, recoveries, evaluations)."""
        return Path(self.cache_dir) / cid


class Candidate(_Record):
    """One candidate's record: what it is (``steps``: prune settings applied in order), how
    far it got (``status``: ``untried``, ``running``, ``rungR``, ``failed``, ``certified``),
    why it stopped, its result at every rung it ran (keyed by the rung, as a string) and
    what the CPU budget did to its recovery."""

    id: str
    label: str
    chain: str
    index: int  # position in its chain (0 = least compressed)
    steps: list[dict[str, Any]]
    first_value: float | None
    status: str = "untried"
    stopped: str | None = None
    results: dict[str, dict[str, Any]] = {}
    objective_value: int | float | None = None  # params counts are ints
    recover_caps: dict[str, float] | None = None  # rung -> CPU minutes (plan.cap_recovery)
    cap_reasons: dict[str, str] | None = None
    cut_short: list[str] | None = None
    certification: dict[str, Any] | None = None


class ChainState(_Record):
    """Where the bisection along one chain stands: ``lo`` is the most compressed index known
    in the race, ``hi`` the least compressed known out."""

    name: str
    ids: list[str]
    lo: int
    hi: int
    first_values: list[float | None]
    structured: bool
    done: bool = False
    why: str | None = None


class Budget(_Record):
    candidates: int
    cpu_minutes: float | None
    candidates_used: int = 0
    cpu_seconds: float = 0.0
    cpu_seconds_cached: float = 0.0
    cut_short: list[dict[str, Any]] = []


class SearchState(_Record):
    """Everything the search decided and recorded so far; the pure planner
    (:mod:`medprune.search.plan`) reads and updates it, each task saves it."""

    version: int = 1
    phase: str  # explore, rung, done
    step: int = 0
    rung: int | None = None  # set once the rungs after rung 0 begin
    explore_rounds: int
    n_rungs: int
    margin: float
    objective: str
    workspace: Workspace | None  # None only for a plan run without files (tests)
    split: dict[str, Any]
    baseline: dict[str, Any]
    chains: list[ChainState]
    candidates: dict[str, Candidate]
    budget: Budget
    rung_counts: list[int]
    sample_size: dict[str, Any] | None = None
    independence: list[dict[str, Any]] | None = None  # set by setup
    error: str | None = None
    certification: dict[str, Any] | None = None
    registered: dict[str, Any] | None = None

    @property
    def ws(self) -> Workspace:
        """The workspace, which every search that runs candidates has."""
        if self.workspace is None:
            raise ValueError("this search state has no workspace")
        return self.workspace

    @property
    def last_rung(self) -> str:
        """The final rung's key in a candidate's results."""
        return str(self.n_rungs - 1)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchState:
        return cls.model_validate({k: v for k, v in data.items() if k not in HANDOFF_KEYS})

    @classmethod
    def from_json(cls, text: str) -> SearchState:
        return cls.from_dict(json.loads(text))

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    def save(self, path: str | Path) -> None:
        atomic_write_json(Path(path), self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> SearchState:
        return cls.from_json(Path(path).read_text())
