"""A plain PyTorch loop under a scaling policy: python torch_loop.py LEDGER KEY POLICY [RUN]"""
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from scalegate.errors import RunPaused
from scalegate.evals import Probe, Suite
from scalegate.ledger.keys import SigningKey
from scalegate.ledger.log import Ledger
from scalegate.manifest import manifest_of
from scalegate.policy import load_policy
from scalegate.supervisor import Supervisor

ledger_path, key_path, policy, run_id = (sys.argv[1:] + ["example-run"])[:4]
V, STEPS = 16, 400

def windows(n):  # the task: the next term of an arithmetic progression mod V
    a, d = torch.randint(0, V, (n,)), torch.randint(1, V, (n,))
    return torch.stack([a, (a + d) % V], 1), (a + 2 * d) % V

@torch.no_grad()
def accuracy(model, ctx):  # the capability the policy watches, on held-out samples
    x, y = windows(1024)
    return (model(x).argmax(-1) == y).float().mean().item()

torch.manual_seed(0)
model = nn.Sequential(nn.Embedding(V, 32), nn.Flatten(), nn.Linear(64, 128), nn.GELU(),
                      nn.Linear(128, V))
opt = torch.optim.SGD(model.parameters(), lr=0.5)
with Ledger.open(ledger_path) as ledger:
    try:  # a paused run without the approvals it needs is refused here
        sup = Supervisor.open(run_id, load_policy(policy), ledger, SigningKey.load(key_path),
                              model=model, checkpoint_dir=Path(ledger_path).parent / "ckpt",
                              evaluator=Suite([Probe("heldout-next-token", "next-token",
                                                     "accuracy", accuracy)]))
    except RunPaused as refused:
        sys.exit(str(refused))
    if sup.state.resumes:  # resumed: start from the checkpoint the pause recorded
        ck = sup.state.find(sup.state.resumes[-1].predicate.checkpoint).predicate
        if manifest_of(ck.uri).digest != ck.digest:
            sys.exit(f"checkpoint {ck.uri} changed since the pause")
        model.load_state_dict(torch.load(Path(ck.uri) / "model.pt"))
        print(f"resumed from step {sup.step_index}")
    for _ in range(sup.step_index, STEPS):
        x, y = windows(64)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(); loss.backward(); opt.step()
        if sup.step(tokens=len(y), batch=x).verdict == "pause":  # checkpoint saved, declared
            print(f"paused at step {sup.step_index}: {sup.decision.reasons[0].message}",
                  file=sys.stderr)
            sys.exit(75)  # EX_TEMPFAIL: run again once the pause is lifted
    sup.flush()
    print(f"trained to step {sup.step_index}")
