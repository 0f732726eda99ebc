"""Run by test_recover_multiprocess under torchrun: the best-weights snapshot on FSDP2 shards.

accelerate 1.15 never enables FSDP on the CPU, so this shards a tiny Llama with torch's own
``fully_shard`` over a gloo mesh and checks that :func:`trainable_snapshot` keeps only this
rank's shard and :func:`load_trainable` puts it back exactly.
"""

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard

from medprune.recover.train import load_trainable, trainable_snapshot

from tests.helpers.tiny import tiny_llama  # the repository root is on PYTHONPATH (the test)


def main(out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    mesh = init_device_mesh("cpu", (dist.get_world_size(),))
    model = tiny_llama(0)
    for layer in model.model.layers:
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    snap = trainable_snapshot(model)
    before = {n: p.full_tensor().clone() for n, p in model.named_parameters()}
    model(input_ids=torch.randint(0, 100, (2, 16))).logits.sum().backward()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.ones_like(p))  # "training" moves every weight
    moved = all(not torch.equal(p.full_tensor(), before[n]) for n, p in model.named_parameters())
    load_trainable(model, snap)
    restored = all(torch.equal(p.full_tensor(), before[n]) for n, p in model.named_parameters())
    result = {
        "param_type": type(next(model.parameters())).__name__,
        "moved": moved,
        "restored": restored,
        "snapshot_numel": sum(t.numel() for t in snap.values()),
        "full_numel": sum(t.numel() for t in before.values()),
    }
    Path(out, f"rank{rank}.json").write_text(json.dumps(result))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
