"""The candidate space: every pruned model the search may try, grouped into monotone chains.

A candidate is one or two pruning steps (``width`` then ``unstructured`` for a combo), each a
:class:`~medprune.config.PruneConfig` made from the run's ``prune`` section with the method,
sparsity, pattern and allocation of the axis value. A *chain* lists candidates of one axis
(or of a combo at one value of its first axis) from least to most compressed, the order in
which accuracy is expected to fall, so the search can bisect along it.

Where to look first follows the literature: width before unstructured before N:M before
depth (Minitron found width pruning kept far more accuracy than depth pruning at equal
size), OWL allocation for unstructured sparsity, and bisection's first probe on a structured
axis at the largest value removing no more than about a third of the model
(``search.max_step_share``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from medprune.config import AxisConfig, PruneConfig, RunConfig
from medprune.errors import ConfigError

#: Chain order when the budget cannot pay for every chain: literature's priorities.
KIND_PRIORITY = {"width": 0, "unstructured": 1, "nm": 2, "depth": 3}


@dataclass(frozen=True)
class Candidate:
    id: str
    label: str
    chain: str
    index: int  # position in its chain (0 = least compressed)
    steps: tuple[dict, ...]  # PruneConfig field overrides, applied in order
    first_value: float | None  # structured share of the first step (for the one-third prior)

    def prune_configs(self, cfg: RunConfig) -> list[PruneConfig]:
        return [step_config(cfg, s) for s in self.steps]

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "label": self.label,
            "chain": self.chain,
            "index": self.index,
            "steps": list(self.steps),
            "first_value": self.first_value,
        }


@dataclass(frozen=True)
class Chain:
    name: str
    priority: int
    candidates: tuple[Candidate, ...]
    structured: bool  # the one-third prior applies to its first probe


def axis_step(axis: AxisConfig, value: float | str) -> dict:
    """The prune settings of one axis value."""
    if axis.kind == "width":
        return {"method": "width", "sparsity": float(value)}
    if axis.kind == "depth":
        return {"method": "depth", "sparsity": float(value)}
    if axis.kind == "nm":
        n, m = (int(x) for x in str(value).split(":"))
        return {
            "method": axis.method or "wanda",
            "pattern": str(value),
            "sparsity": round(1 - n / m, 6),
            "allocation": "uniform",
        }
    return {
        "method": axis.method or "wanda",
        "sparsity": float(value),
        "allocation": axis.allocation or "owl",
    }


def _step_label(step: dict) -> str:
    if step.get("pattern", "unstructured") != "unstructured":
        return f"{step['method']} {step['pattern']}"
    extra = " owl" if step.get("allocation") == "owl" else ""
    return f"{step['method']}{extra} {step['sparsity']:.0%}"


def step_config(cfg: RunConfig, step: dict) -> PruneConfig:
    """``cfg.prune`` with one step's method, sparsity, pattern and allocation."""
    data = json.loads(cfg.prune.model_dump_json())
    data["method"] = step["method"]
    data["sparsity"] = step["sparsity"]
    data["pattern"] = step.get("pattern", "unstructured")
    data["allocation"]["kind"] = step.get("allocation", "uniform")
    if step["method"] in ("width", "depth"):
        data["allocation"]["kind"] = "uniform"
        st = data["structured"]
        for key in (
            "num_attention_heads",
            "num_key_value_heads",
            "intermediate_size",
            "hidden_size",
            "layers_to_remove",
        ):
            st[key] = None  # the axis value decides the size
    return PruneConfig.model_validate(data)


def candidate_id(cfg: RunConfig, steps: tuple[dict, ...]) -> str:
    """A hash of everything that decides the pruned model: the dense model, the calibration
    settings, the shared prune settings and the steps. Equal settings, equal id."""
    prune = json.loads(cfg.prune.model_dump_json())
    for key in ("method", "sparsity", "pattern"):
        prune.pop(key)
    identity = {
        "source": cfg.model.source,
        "dtype": cfg.model.dtype,
        "seed": cfg.seed,
        "prune": prune,
        "steps": list(steps),
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def build_space(cfg: RunConfig) -> list[Chain]:
    """Every chain of the configured space, in the order the budget is spent on them.

    Fails with a :class:`ConfigError` naming the axis and value when a value makes an
    invalid prune config (for example an OWL spread that leaves [0, 1))."""
    sc = cfg.search
    if sc is None:
        raise ConfigError("the config has no search section")
    by_label = {a.label: a for a in sc.axes}
    chains: list[Chain] = []
    seen: set[str] = set()

    def make(
        chain: str, index: int, steps: tuple[dict, ...], first_value: float | None
    ) -> Candidate:
        for s in steps:
            try:
                step_config(cfg, s)
            except ValueError as exc:  # pydantic ValidationError: name the axis value
                msg = str(exc).splitlines()
                raise ConfigError(
                    f"search.axes: chain {chain!r} value {_step_label(s)!r} is not a valid prune setting: {' '.join(msg[1:3]) or msg[0]}"
                ) from None
        return Candidate(
            candidate_id(cfg, steps),
            " + ".join(_step_label(s) for s in steps),
            chain,
            index,
            steps,
            first_value,
        )

    for pos, axis in enumerate(sc.axes):
        single: list[Candidate] = []
        for i, v in enumerate(axis.points()):
            share = float(v) if axis.kind in ("width", "depth") else None
            single.append(make(axis.label, i, (axis_step(axis, v),), share))
        chains.append(
            Chain(
                axis.label,
                KIND_PRIORITY[axis.kind] * 100 + pos,
                tuple(single),
                axis.kind in ("width", "depth"),
            )
        )
    for pos, (a, b) in enumerate(sc.combos):
        outer, inner = by_label[a], by_label[b]
        for v in outer.points():
            name = f"{a}={v}+{b}"
            combo = tuple(
                make(name, i, (axis_step(outer, v), axis_step(inner, w)), float(v))
                for i, w in enumerate(inner.points())
            )
            chains.append(Chain(name, 1000 + pos * 100 + KIND_PRIORITY[outer.kind], combo, False))
    chains.sort(key=lambda c: c.priority)
    for chain in chains:
        for cand in chain.candidates:
            if cand.id in seen:
                raise ConfigError(
                    f"search: candidate {cand.label!r} appears twice in the space (check axes and combos)"
                )
            seen.add(cand.id)
    return chains


def first_probe(first_values: list[float | None], structured: bool, max_share: float) -> int:
    """Where bisection starts on a fresh chain: the middle, or on a structured axis the
    largest value removing at most ``max_share`` (when that is below the middle)."""
    mid = (len(first_values) - 1) // 2
    if not structured:
        return mid
    ok = [i for i, v in enumerate(first_values) if v is not None and v <= max_share + 1e-9]
    return min(mid, ok[-1]) if ok else 0


def bisect_rounds(chains: list[Chain], bisect: bool) -> int:
    """Rounds of rung 0 the pipeline reserves: enough to finish bisecting the longest
    chain (one more for the prior's first probe), or one round that tries everything."""
    if not bisect:
        return 1
    longest = max(len(c.candidates) for c in chains)
    return max(1, (longest).bit_length() + 1)


def search_graph_settings(cfg: RunConfig, image: str) -> dict:
    """The settings the compiled search pipeline's graph depends on (recorded in the
    template, checked at submit/schedule): the image, the number of steps, the candidate
    machines and the registry target."""
    sc = cfg.search
    steps = None if sc is None else bisect_rounds(build_space(cfg), sc.bisect) + len(sc.rungs) - 1
    return {
        "pipeline.image": image,
        "registry.target": cfg.registry.target,
        "search.steps": steps,
        "search.parallelism": None if sc is None else sc.parallelism,
        "search.candidate_resources": None
        if sc is None
        else sc.candidate_resources.model_dump(mode="json"),
        "pipeline.resources": {
            k: v.model_dump(mode="json") for k, v in sorted(cfg.pipeline.resources.items())
        },
    }
