"""Which teacher layer each student layer came from, and which hidden states are distilled.

Intermediate-layer distillation (``recover.distill.hidden_weight``) pairs the output of a
student layer with the output of the teacher layer it was pruned from. Unstructured, N:M
and width pruning keep every layer (width pruning keeps the hidden size unless
``prune.structured.prune_hidden`` or ``hidden_size`` shrink it), so layer ``i`` pairs with
teacher layer ``i``. Depth pruning removes layers: the prune stage records, for every layer
of the model it writes, the dense layer it came from (``dense_layers`` in the lineage beside
the model, composed across chained pruning steps); models pruned before that record existed
fall back to the depth report's ``removed_layers``.
"""

from __future__ import annotations

from collections.abc import Sequence

from medprune.errors import ConfigError

FIELD = "recover.distill.hidden_weight"


def teacher_layer_map(lineage: dict, student_layers: int, teacher_layers: int) -> list[int]:
    """For each student layer, the teacher layer it came from, read from the pruned model's
    ``lineage`` (see the module docstring). Raises :class:`ConfigError` naming
    ``recover.distill.hidden_weight`` when no consistent map can be found."""
    origin = lineage.get("dense_layers")
    source = "lineage dense_layers"
    if origin is None:
        removed = (lineage.get("prune") or {}).get("removed_layers")
        if removed is not None:
            origin = [i for i in range(teacher_layers) if i not in set(removed)]
            source = f"the prune report's removed_layers {sorted(removed)}"
        elif student_layers == teacher_layers:
            return list(range(student_layers))
        else:
            raise ConfigError(
                f"{FIELD}: the student has {student_layers} layers and the teacher "
                f"{teacher_layers}, and its lineage records no map from student to teacher "
                "layers (dense_layers, or a depth report's removed_layers); prune it with this "
                f"medprune version or set {FIELD}: 0"
            )
    origin = [int(i) for i in origin]
    if len(origin) != student_layers or any(not 0 <= i < teacher_layers for i in origin):
        raise ConfigError(
            f"{FIELD}: {source} gives teacher layers {origin} for a student of "
            f"{student_layers} layers and a teacher of {teacher_layers}; is the teacher the "
            "dense model this one was pruned from?"
        )
    return origin


def distilled_layers(spec: str | Sequence[int], student_layers: int) -> list[int]:
    """Student layers whose outputs are distilled for ``recover.distill.hidden_layers``:
    ``'all'`` (every layer but the last, whose output reaches the logits through the final
    norm and is distilled by the KL term), ``'every:K'`` (layers ``K-1, 2K-1, ...`` before
    the last) or an explicit list (each before the last)."""
    last = student_layers - 1
    if isinstance(spec, str):
        step = 1 if spec == "all" else int(spec.split(":", 1)[1])
        chosen = list(range(step - 1, last, step))
    else:
        chosen = sorted(int(i) for i in spec)
        bad = [i for i in chosen if not 0 <= i < last]
        if bad:
            raise ConfigError(
                f"recover.distill.hidden_layers: layers {bad} are not intermediate layers of "
                f"the student (0..{last - 1}; layer {last}, the last, is distilled through "
                "the logits)"
            )
    if not chosen:
        raise ConfigError(
            f"recover.distill.hidden_layers={spec!r} selects no intermediate layer of a "
            f"student with {student_layers} layers; set {FIELD}: 0"
        )
    return chosen


def _hidden_size(model) -> int | None:
    config = getattr(model, "config", None)
    if config is None:
        return None
    if hasattr(config, "get_text_config"):
        config = config.get_text_config()
    return getattr(config, "hidden_size", None)


def _num_layers(model) -> int:
    config = (
        model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    )
    return int(config.num_hidden_layers)


def hidden_state_pairs(
    student,
    teacher,
    spec: str | Sequence[int],
    layer_map: Sequence[int] | None = None,
) -> list[tuple[int, int]]:
    """Pairs of ``hidden_states`` indices (student, teacher) to distil: the output of
    student layer ``j`` (index ``j + 1``) with the output of teacher layer ``layer_map[j]``.
    ``layer_map`` None: the identity, allowed only when both have as many layers. Raises
    :class:`ConfigError` naming ``recover.distill.hidden_weight`` before any training when
    the hidden sizes differ or no map fits."""
    hs, ht = _hidden_size(student), _hidden_size(teacher)
    if hs is None or ht is None or hs != ht:
        raise ConfigError(
            f"{FIELD}: the student's hidden size ({hs}) differs from the teacher's ({ht}); "
            "intermediate-layer distillation compares hidden states directly, so it needs "
            f"pruning that keeps the hidden size, or {FIELD}: 0"
        )
    ls, lt = _num_layers(student), _num_layers(teacher)
    if layer_map is None:
        layer_map = teacher_layer_map({}, ls, lt)
    elif len(layer_map) != ls or any(not 0 <= i < lt for i in layer_map):
        raise ConfigError(
            f"{FIELD}: the layer map {list(layer_map)} does not fit a student of {ls} layers "
            f"and a teacher of {lt}"
        )
    return [(j + 1, int(layer_map[j]) + 1) for j in distilled_layers(spec, ls)]
