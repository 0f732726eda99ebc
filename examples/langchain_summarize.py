"""Summarise a clinical note with a pruned model through LangChain, offline.

    python examples/langchain_summarize.py                                   # the demo's SmolLM2
    python examples/langchain_summarize.py registry://smollm2-135m-clinical@candidate   # after make demo
    python examples/langchain_summarize.py --ollama smollm2-135m-clinical    # an exported model in Ollama

Needs the serving extra (`pip install -e '.[serve]'`, which `make test` installs).
"""

from __future__ import annotations

import argparse
import sys

NOTE = (
    "67-year-old man presenting with two hours of central chest pain radiating to the left arm. "
    "Background of type 2 diabetes on metformin and hypertension on ramipril. Troponin raised; "
    "ECG shows ST elevation in V1-V4. Taken for primary PCI to the LAD. Started aspirin, "
    "ticagrelor and atorvastatin 80 mg. Plan: echocardiogram, cardiac rehabilitation referral."
)


def main() -> int:
    from medprune.integrations.langchain import (
        load_chat_model,
        ollama_chat_model,
        summarization_chain,
    )

    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "model",
        nargs="?",
        default=".cache/medprune/models/smollm2-135m-instruct",
        help="registry://NAME@ALIAS, NAME@VERSION, vertex://..., or a model directory",
    )
    p.add_argument("--root", default="registry", help="local registry root")
    p.add_argument("--ollama", metavar="NAME", help="use this model on an Ollama server instead")
    p.add_argument("--ollama-url", default="http://127.0.0.1:11434")
    p.add_argument("--max-new-tokens", type=int, default=96)
    p.add_argument("--note", default=NOTE, help="the clinical note to summarise")
    args = p.parse_args()
    if args.ollama:
        chat = ollama_chat_model(
            args.ollama, base_url=args.ollama_url, num_predict=args.max_new_tokens
        )
    else:
        chat = load_chat_model(
            args.model, registry_root=args.root, max_new_tokens=args.max_new_tokens
        )
    print(summarization_chain(chat).invoke({"note": args.note}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
