"""A Lightning fit under a scaling policy. Usage: lightning_fit.py LEDGER KEY POLICY [RUN_ID]"""
import sys

import lightning as L
import torch
from torch import nn

from scalegate.errors import RunPaused
from scalegate.evals import Probe, Suite
from scalegate.integrations import resume_checkpoint
from scalegate.integrations.lightning import ScalegateCallback

ledger, key, policy, run_id = [*sys.argv[1:], "lightning-run"][:4]
torch.manual_seed(0)  # the task: the next term of an arithmetic progression mod 16
a, d = torch.randint(0, 16, (26624,)), torch.randint(1, 16, (26624,))
data, targets = torch.stack([a, (a + d) % 16], 1), (a + 2 * d) % 16
hx, hy = data[-1024:], targets[-1024:]  # held out: the policy watches the model's accuracy


class NextTerm(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Embedding(16, 32), nn.Flatten(), nn.Linear(64, 128),
                                 nn.GELU(), nn.Linear(128, 16))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        return nn.functional.cross_entropy(self(batch[0]), batch[1])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.5)


train = torch.utils.data.TensorDataset(data[:25600], targets[:25600])
evals = Suite([Probe("heldout-next-token", "next-token", "accuracy",
                     lambda m, ctx: (m(hx).argmax(-1) == hy).float().mean().item())])
callback = ScalegateCallback(run_id, policy, ledger, key, evaluator=evals)  # the one addition
trainer = L.Trainer(max_steps=400, callbacks=[callback], accelerator="cpu",
                    enable_progress_bar=False, enable_model_summary=False)
try:  # a paused run is refused; a resumed one starts from the checkpoint its pause recorded
    trainer.fit(NextTerm(), torch.utils.data.DataLoader(train, batch_size=64),
                ckpt_path=resume_checkpoint(ledger, run_id))
except RunPaused as refused:
    sys.exit(str(refused))
if callback.supervisor.paused:  # checkpoints/<run>-step<N>.ckpt is saved and declared
    sys.exit(f"paused at step {trainer.global_step}: see the ledger")
print(f"trained {trainer.global_step} steps")
