"""Export a registered model for serving stacks outside Python: GGUF for llama.cpp and
Ollama (:mod:`medprune.export.gguf`) with an Ollama ``Modelfile``
(:mod:`medprune.export.modelfile`); :mod:`medprune.export.bundle` does both for one
registered version."""
