"""``python -m medprune.recover``: run the recover stage (also under ``accelerate launch``).

This is the entry point of the Vertex custom job that the pipeline's recover step submits
when ``recover.custom_job.enabled``; every process runs it, the main one writes the model.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from medprune.config import RunConfig
from medprune.errors import MedpruneError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m medprune.recover", description=__doc__)
    parser.add_argument(
        "--config-json", required=True, help="The run config as JSON, or @FILE holding it."
    )
    parser.add_argument("--model-dir", required=True, help="The pruned model (local or /gcs/...).")
    parser.add_argument("--out-dir", required=True, help="Where the recovered model is written.")
    parser.add_argument("--teacher-dir", default=None, help="The dense model, for distillation.")
    parser.add_argument(
        "--report", default=None, help="Also write the training report (JSON) here."
    )
    args = parser.parse_args(argv)

    from medprune.io.atomic import atomic_write_json
    from medprune.recover.stage import stage_recover

    text = args.config_json
    if text.startswith("@"):
        text = Path(text[1:]).read_text(encoding="utf-8")
    try:
        cfg = RunConfig.from_json(text)
        report = stage_recover(cfg, args.model_dir, args.out_dir, teacher_dir=args.teacher_dir)
    except MedpruneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.report and report.get("enabled"):  # the main process only
        atomic_write_json(args.report, report)
    print(
        json.dumps({k: v for k, v in report.items() if k not in ("losses", "evals")}, default=str)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
