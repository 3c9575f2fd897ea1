"""A PyTorch loop under a scaling policy.
Usage: torch_loop.py LEDGER KEY POLICY [RUN_ID] [--evaluate-paused]"""
import sys

import torch
from torch import nn

from scalegate import Ledger, Probe, RunPaused, SigningKey, Suite, Supervisor, load_policy
from scalegate.supervisor import paused_checkpoint

args = [a for a in sys.argv[1:] if a != "--evaluate-paused"]
ledger_path, key_path, policy, run_id = [*args, "example-run"][:4]
torch.manual_seed(0)  # the task: the next term of an arithmetic progression mod 16
a, d = torch.randint(0, 16, (26624,)), torch.randint(1, 16, (26624,))
data, targets = torch.stack([a, (a + d) % 16], 1), (a + 2 * d) % 16
model = nn.Sequential(nn.Embedding(16, 32), nn.Flatten(), nn.Linear(64, 128), nn.GELU(),
                      nn.Linear(128, 16))
opt = torch.optim.SGD(model.parameters(), lr=0.5)
hx, hy = data[-1024:], targets[-1024:]  # held out: the policy watches the model's accuracy
evals = Suite([Probe("heldout-next-token", "next-token", "accuracy",
                     lambda m, ctx: (m(hx).argmax(-1) == hy).float().mean().item())])
with Ledger.open(ledger_path) as ledger:
    if "--evaluate-paused" in sys.argv:  # evaluate the checkpoint a paused run recorded
        model.load_state_dict(torch.load(paused_checkpoint(ledger, run_id) / "model.pt"))
        res = Supervisor.evaluate_paused(run_id, load_policy(policy), ledger,
                                         SigningKey.load(key_path), model=model, evaluator=evals)
        sys.exit("\n".join(["evaluated; the resumption still lacks:", *res.missing_messages()]))
    try:  # a paused run is refused until the policy's quorum has approved its resumption
        sup = Supervisor.open(run_id, load_policy(policy), ledger, SigningKey.load(key_path),
                              model=model, evaluator=evals)  # checkpoints go to ./checkpoints
    except RunPaused as refused:
        sys.exit(str(refused))
    if sup.resume_checkpoint:  # just resumed: from the checkpoint the pause recorded
        model.load_state_dict(torch.load(sup.resume_checkpoint / "model.pt"))
    for step in range(sup.step_index, 400):  # 400 batches of 64, then the held-out 1024
        x, y = data[64 * step : 64 * step + 64], targets[64 * step : 64 * step + 64]
        opt.zero_grad(); nn.functional.cross_entropy(model(x), y).backward(); opt.step()  # noqa: E702
        if sup.step(tokens=len(y), batch=x).verdict == "pause":  # checkpoint saved, declared
            sys.exit(f"paused at step {sup.step_index}: {sup.decision.reasons[0].message}")
    sup.flush()
    print(f"trained {sup.step_index} steps")
