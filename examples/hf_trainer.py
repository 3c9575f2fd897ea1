"""A Hugging Face Trainer under a scaling policy. Usage: hf_trainer.py LEDGER KEY POLICY [RUN_ID]"""
import sys

import torch
from transformers import LlamaConfig, LlamaForCausalLM, Trainer, TrainingArguments

from scalegate.errors import RunPaused
from scalegate.evals import Probe, Suite
from scalegate.integrations.hf import ScalegateCallback

ledger, key, policy, run_id = [*sys.argv[1:], "hf-run"][:4]
torch.manual_seed(0)  # the task: walks through a fixed permutation of 16 tokens
step = torch.randperm(16)
walks = torch.stack([torch.randint(0, 16, (1600,))] * 8, 1)
for t in range(1, 8):
    walks[:, t] = step[walks[:, t - 1]]
mask = (torch.arange(8) < torch.randint(3, 9, (1600, 1))).long()  # 3 to 8 tokens, then padding
data = [{"input_ids": w.masked_fill(m == 0, 16), "attention_mask": m,
         "labels": w.masked_fill(m == 0, -100)} for w, m in zip(walks, mask, strict=True)]
held = torch.arange(16)[:, None]  # held out: every token's successor, from that token alone
evals = Suite([Probe("heldout-next-token", "next-token", "accuracy", lambda m, ctx: (
    m(input_ids=held).logits[:, -1].argmax(-1) == step).float().mean().item())])
# A Llama-style model: its fused (SDPA) attention backward recomputes the scores, which
# the policy's training regime does not count; evaluations still come at every milestone.
model = LlamaForCausalLM(LlamaConfig(vocab_size=17, hidden_size=32, intermediate_size=64,
                                     num_hidden_layers=1, num_attention_heads=2,
                                     max_position_embeddings=8, pad_token_id=16,
                                     bos_token_id=0, eos_token_id=1))
callback = ScalegateCallback(run_id, policy, ledger, key, evaluator=evals)
args = TrainingArguments("hf-out", max_steps=100, per_device_train_batch_size=16,
                         learning_rate=1e-3, save_strategy="no", report_to=[], use_cpu=True)
trainer = Trainer(model=model, args=args, train_dataset=data, callbacks=[callback])
callback.trainer = trainer  # report to the Trainer's loggers through trainer.log
try:  # a paused run is refused; a resumed one starts from the checkpoint its pause recorded
    trainer.train(resume_from_checkpoint=callback.resume_checkpoint())
except RunPaused as refused:
    sys.exit(str(refused))
if callback.supervisor.paused:  # the Trainer saved hf-out/checkpoint-<step>, then stopped
    sys.exit(f"paused at step {trainer.state.global_step}: see the ledger")
print(f"trained {trainer.state.global_step} steps")
