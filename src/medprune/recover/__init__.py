"""Recovery fine-tuning after pruning: distillation from the dense model, full or LoRA,
with the pruning masks held, resumable checkpoints, and an optional Vertex custom job."""
