"""A torch.distributed loop under a scaling policy, every rank stopping at the same step.
Usage: torchrun --nproc-per-node 2 distributed_loop.py LEDGER KEY POLICY [RUN_ID]"""
import sys

import torch
import torch.distributed as dist
from torch import nn

from scalegate.errors import RunPaused
from scalegate.evals import Probe, Suite
from scalegate.integrations import DistributedSupervisor

ledger, key, policy, run_id = [*sys.argv[1:], "ddp-run"][:4]
dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
torch.manual_seed(0)  # the same data and weights on every rank; each trains on its share
a, d = torch.randint(0, 16, (26624,)), torch.randint(1, 16, (26624,))
data, targets = torch.stack([a, (a + d) % 16], 1), (a + 2 * d) % 16
net = nn.Sequential(nn.Embedding(16, 32), nn.Flatten(), nn.Linear(64, 128), nn.GELU(),
                    nn.Linear(128, 16))
hx, hy = data[-1024:], targets[-1024:]  # held out: evaluated on rank 0 at milestones
evals = Suite([Probe("heldout-next-token", "next-token", "accuracy",
                     lambda m, ctx: (m(hx).argmax(-1) == hy).float().mean().item())])
try:  # on every rank; rank 0 opens the ledger and writes it, the others only count
    sup = DistributedSupervisor.open(run_id, policy, ledger, key, model=net, evaluator=evals)
except RunPaused as refused:  # paused: refused on every rank, before any step
    sys.exit(str(refused))
if sup.resume_checkpoint is not None:  # resumed: the paused weights (rank 0 read the ledger)
    net.load_state_dict(torch.load(sup.resume_checkpoint / "model.pt"))
model = nn.parallel.DistributedDataParallel(net)
opt = torch.optim.SGD(model.parameters(), lr=0.5)
for step in range(sup.step_index, 400):  # a global batch of 64, split between the ranks
    share = torch.arange(64 * step, 64 * step + 64).tensor_split(world)[rank]
    x, y = data[share], targets[share]
    opt.zero_grad(); nn.functional.cross_entropy(model(x), y).backward(); opt.step()  # noqa: E702
    if sup.step(tokens=len(y), batch=x).verdict == "pause":  # the same step on every rank
        sys.exit(f"rank {rank} paused at step {sup.step_index}")
sup.flush()
sup.close()
print(f"rank {rank} trained {sup.step_index} steps")
dist.destroy_process_group()
