"""Report layout with many categories: a short chart of the categories that changed most,
every category in its own table, a summary table without per-category rows, and figures
whose panels and labels do not overlap."""

from __future__ import annotations

import re

import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from medprune.config import GateConfig
from medprune.gate.decision import decide
from medprune.report.data import CHART_CATEGORIES, build_report_data, most_changed
from medprune.report.html import render_report
from medprune.report.plots import category_figure, tradeoff_figure

# 38 categories like the built-in clinical set (HPO branches and ICD-10-CM chapters), with
# long names; category i has 8 items and loses i % 5 of them in the candidate.
CATEGORIES = [
    f"Abnormality of the organ system number {i} with a long ontology name" for i in range(38)
]


def _predictions():
    base, cand = [], []
    for ci, cat in enumerate(CATEGORIES):
        lost = ci % 5
        gained = 1 if ci % 7 == 0 else 0
        for j in range(8):
            b = j < 6  # the baseline gets 6 of 8 right
            c = (b and j >= lost) or (not b and j - 6 < gained)
            for out, ok in ((base, b), (cand, c)):
                out.append(
                    {
                        "id": f"{ci}-{j}",
                        "category": cat,
                        "question": f"Q {ci}-{j}?",
                        "options": ["a", "b", "c", "d"],
                        "answer": 0,
                        "pred": 0 if ok else 1,
                        "correct": ok,
                        "correct_norm": ok,
                        "loglikelihoods": [-1.0, -2.0, -3.0, -4.0]
                        if ok
                        else [-2.0, -1.0, -3.0, -4.0],
                    }
                )
    return base, cand


def _results(predictions, latency, nonzero):
    per: dict[str, list[int]] = {}
    for p in predictions:
        right_total = per.setdefault(p["category"], [0, 0])
        right_total[0] += p["correct"]
        right_total[1] += 1
    acc = sum(p["correct"] for p in predictions) / len(predictions)
    return {
        "complete": True,
        "mcq": {
            "acc": acc,
            "acc_norm": acc,
            "n": len(predictions),
            "per_category": {
                k: {"acc": r / n, "acc_norm": r / n, "n": n} for k, (r, n) in per.items()
            },
        },
        "perplexity": {
            "perplexity": 26.0,
            "nll": 3.2,
            "tokens": 1000,
            "texts": 10,
            "bits_per_byte": 1.1,
        },
        "efficiency": {
            "total_params": 134_515_008,
            "nonzero_params": nonzero,
            "size_bytes": 268_000_000,
            "latency_ms_p50": latency,
            "latency_ms_p95": latency * 1.2,
            "tokens_per_s": 1e5 / latency,
        },
    }


@pytest.fixture(scope="module")
def run():
    bp, cp = _predictions()
    base, cand = _results(bp, 120.0, 134_189_880), _results(cp, 95.0, 81_139_203)
    gate = decide(
        base, cand, GateConfig(min_accuracy=0.5), baseline_predictions=bp, candidate_predictions=cp
    ).to_dict()
    return {
        "gate": gate,
        "baseline": base,
        "candidate": cand,
        "baseline_predictions": bp,
        "candidate_predictions": cp,
    }


def _table(html: str, cls: str) -> str:
    return re.search(rf'<table class="{cls}">(.*?)</table>', html, re.DOTALL).group(1)


def test_summary_table_has_no_category_rows_and_the_category_table_has_them_all(tmp_path, run):
    html = render_report(tmp_path, **run)["html"].read_text()
    summary = _table(html, "metrics-table")
    names = re.findall(r"<tr><td>([^<]+)</td>", summary)
    assert names[:2] == ["accuracy", "accuracy_norm"] and "perplexity" in names
    assert not [n for n in names if n.startswith("accuracy_") and n != "accuracy_norm"]
    categories = _table(html, "category-table")
    assert categories.count("<tr>") == len(CATEGORIES) + 1
    assert all(c in categories for c in CATEGORIES)
    # the summary comes before the categories
    assert html.index('class="metrics-table"') < html.index('class="category-table"')
    md = (tmp_path / "report.md").read_text()
    summary_md = md.split("## Baseline vs candidate: summary")[1].split("##")[0]
    assert "accuracy_abnormality" not in summary_md
    by_category = md.split("## Accuracy by category")[1].split("\n## ")[0]
    assert by_category.count("\n| Abnormality of the organ system") == len(CATEGORIES)


def test_chart_shows_the_categories_that_changed_most(run):
    data = build_report_data(**run)
    fig = category_figure(data)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert len(labels) == CHART_CATEGORIES < len(CATEGORIES)
    chosen = most_changed(data.categories)
    biggest = sorted(abs(c.net_items) for c in data.categories)[-CHART_CATEGORIES:]
    assert sorted(abs(c.net_items) for c in chosen) == biggest
    # worst change at the top of the chart (the last tick label is drawn highest)
    assert labels[-1].startswith(chosen[0].category[:20]) and chosen[0].delta == min(
        c.delta for c in chosen
    )
    assert chosen[0].delta == min(c.delta for c in data.categories)
    assert "12 of 38 categories" in fig.get_suptitle()


def test_a_one_item_flip_does_not_outrank_a_category_that_lost_several_items():
    from medprune.report.data import CategoryComparison

    one = CategoryComparison("rare", 1, 1.0, 0.0, 1, 0)  # -100%, one item
    big = CategoryComparison("common", 40, 0.8, 0.7, 5, 1)  # -10%, four items
    same = CategoryComparison("steady", 30, 0.5, 0.5, 2, 2)
    assert [c.category for c in most_changed([one, big, same], top=1)] == ["common"]
    assert [c.category for c in most_changed([same, one, big], top=2)] == ["rare", "common"]


def test_chart_with_few_categories_shows_every_one(run):
    data = build_report_data(**run)
    data.categories = data.categories[:3]
    fig = category_figure(data)
    assert len(fig.axes[0].get_yticklabels()) == 3
    assert "every category" in fig.get_suptitle()


def _boxes(fig):
    FigureCanvasAgg(fig).draw()
    renderer = fig.canvas.get_renderer()
    return renderer, [ax.get_tightbbox(renderer) for ax in fig.axes]


def test_tradeoff_panels_and_labels_do_not_overlap(run):
    fig = tradeoff_figure(build_report_data(**run))
    left, right = fig.axes
    assert left.get_ylabel() == "accuracy" and right.get_ylabel() == ""  # one shared y axis
    _renderer, (a, b) = _boxes(fig)
    assert not a.overlaps(b), (a, b)
    page = fig.bbox
    for box in (a, b):  # nothing drawn outside the image
        assert (
            box.x0 >= page.x0 - 1
            and box.x1 <= page.x1 + 1
            and box.y0 >= page.y0 - 1
            and box.y1 <= page.y1 + 1
        )


def test_category_labels_fit_in_the_figure(run):
    fig = category_figure(build_report_data(**run))
    renderer, (box,) = _boxes(fig)
    assert box.x0 >= fig.bbox.x0 - 1 and box.x1 <= fig.bbox.x1 + 1
    title = fig._suptitle.get_window_extent(renderer)
    legend = fig.legends[0].get_window_extent(renderer)
    assert fig.bbox.x0 <= title.x0 and title.x1 <= fig.bbox.x1 and not title.overlaps(legend)


def test_without_predictions_categories_come_from_the_evaluations(tmp_path, run):
    html = render_report(
        tmp_path, gate=run["gate"], baseline=run["baseline"], candidate=run["candidate"]
    )["html"].read_text()
    categories = _table(html, "category-table")
    assert categories.count("<tr>") == len(CATEGORIES) + 1 and "n/a" in categories
    assert "accuracy_abnormality" not in _table(html, "metrics-table")
