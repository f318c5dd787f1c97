"""Training fixtures (make_golden.py --what train): for the tiny golden decoders of
tests/golden/models/ (llama, qwen2, qwen3), what PyTorch computes for one batch of packed
examples, written to OUT/train/<name>/{expected.json,expected.safetensors}:

  full   the mean cross-entropy over the trained tokens and every parameter's gradient; then
         ten AdamW steps (transformers' linear schedule with warm-up, clip 1.0): the loss and
         the gradient norm (before clipping) of each step
  lora   peft's LoRA (r 4, alpha 8, all seven projections, dropout 0) with A and B set from a
         seed (B not zero, so that every gradient moves): the loss, the adapters' gradients,
         and ten AdamW steps' losses
  dpo    the DPO sigmoid loss (beta 0.1) of two preference pairs on the LoRA model, the
         reference policy being the same model with the adapter disabled: the log-probs, the
         rewards TRL reports, the loss and the adapters' gradients

tests/golden/train/export/ is not written here: it holds a model twin trained (twin train sft
--lora r=4,alpha=8 --dtype f32 on the golden llama), exported as a merged folder and a PEFT
adapter, with the logits transformers gives the merged folder and peft gives the base with the
adapter (written on the GPU machine by a one-off script; the two agree to 1e-6).

A packed row is computed in PyTorch as its examples run one by one (each from position 0):
the block-diagonal attention and restarted positions that twin's packing uses, without relying
on a 4-D mask. Tensor names are transformers' and (without ".default") peft's."""
import json
import os

T = 16
STEPS = 10
FULL_OPT = {"lr": 3e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.01,
            "warmup": 2, "clip": 1.0}
LORA = {"r": 4, "alpha": 8.0}
LORA_OPT = dict(FULL_OPT, lr=1e-2)
BETA = 0.1
MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def _ids(rng, n, vocab):
    return [int(x) for x in rng.integers(3, vocab, size=n)]


def _batch(vocab, seed):
    """Two rows of T: row 0 packs examples of 7 and 9 tokens, row 1 holds one of 12 and four
    pads. Each example: (ids, first trained target index): targets[t] = ids[t + 1] for
    first <= t < len - 1."""
    import numpy as np
    rng = np.random.default_rng(seed)
    examples = [[(_ids(rng, 7, vocab), 2), (_ids(rng, 9, vocab), 0)],
                [(_ids(rng, 12, vocab), 4)]]
    ids, targets, pos, start = [], [], [], []
    for row in examples:
        r_ids, r_tg, r_pos, r_st = [], [], [], []
        for ex, first in row:
            s = len(r_ids)
            for i, tok in enumerate(ex):
                r_ids.append(tok)
                r_tg.append(ex[i + 1] if first <= i < len(ex) - 1 else -100)
                r_pos.append(i)
                r_st.append(s)
        while len(r_ids) < T:
            r_st.append(len(r_ids))
            r_ids.append(0)
            r_tg.append(-100)
            r_pos.append(0)
        ids += r_ids
        targets += r_tg
        pos += r_pos
        start += r_st
    return examples, {"B": 2, "T": T, "ids": ids, "targets": targets, "pos": pos, "start": start}


def _sum_logp(model, ex, first):
    """The summed log-prob of an example's targets and their count."""
    import torch
    logits = model(input_ids=torch.tensor([ex])).logits[0]
    lp = torch.log_softmax(logits.float(), dim=-1)
    tgt = torch.tensor(ex[first + 1:])
    return lp[first:len(ex) - 1].gather(1, tgt[:, None]).sum(), len(ex) - 1 - first


def _ce(model, examples):
    total, n = 0, 0
    for row in examples:
        for ex, first in row:
            s, k = _sum_logp(model, ex, first)
            total = total - s
            n += k
    return total / n


def _decay_groups(model, o):
    decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim >= 2]
    other = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim < 2]
    groups = [{"params": decay, "weight_decay": o["weight_decay"]}]
    if other:
        groups.append({"params": other, "weight_decay": 0.0})
    return groups


def _train(model, examples, o):
    import torch
    from transformers import get_linear_schedule_with_warmup
    opt = torch.optim.AdamW(_decay_groups(model, o), lr=o["lr"], betas=(o["beta1"], o["beta2"]),
                            eps=o["eps"], foreach=False)
    sched = get_linear_schedule_with_warmup(opt, o["warmup"], STEPS)
    params = [p for p in model.parameters() if p.requires_grad]
    losses, norms = [], []
    for _ in range(STEPS):
        opt.zero_grad()
        loss = _ce(model, examples)
        loss.backward()
        norms.append(float(torch.nn.utils.clip_grad_norm_(params, o["clip"])))
        opt.step()
        sched.step()
        losses.append(float(loss))
    return losses, norms


def _name(n):
    return n.replace(".default", "")


def _lora_model(cls, folder, seed):
    import numpy as np
    import torch
    from peft import LoraConfig, get_peft_model
    from make_golden import _load
    base = _load(cls, folder)
    cfg = LoraConfig(r=LORA["r"], lora_alpha=LORA["alpha"], lora_dropout=0.0,
                     target_modules=MODULES, bias="none")
    model = get_peft_model(base, cfg)
    rng = np.random.default_rng(seed)
    init = {}
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_" in n:
                v = rng.normal(0.0, 0.2, size=tuple(p.shape)).astype("float32")
                p.copy_(torch.from_numpy(v))
                init[_name(n)] = p.detach().clone()
    return model, init


def make_one(name, models_dir, out, log):
    import torch
    from safetensors.torch import save_file
    import transformers
    folder = os.path.join(models_dir, name)
    cfg = json.load(open(os.path.join(folder, "config.json")))
    cls = getattr(transformers, cfg["architectures"][0])
    from make_golden import _load
    examples, batch = _batch(cfg["vocab_size"], 1234 + len(name))
    doc = {"model": name, "batch": batch, "steps": STEPS, "full_opt": FULL_OPT,
           "lora": LORA, "lora_opt": LORA_OPT, "beta": BETA,
           "versions": {"torch": torch.__version__, "transformers": transformers.__version__}}
    tensors = {}
    # full: one step's loss and gradients, then ten AdamW steps
    model = _load(cls, folder)
    model.train()
    loss = _ce(model, examples)
    loss.backward()
    doc["full_loss"] = float(loss)
    for n, p in model.named_parameters():
        tensors["full.grad." + n] = p.grad.detach().clone()
    model.zero_grad()
    model = _load(cls, folder)
    model.train()
    doc["full_losses"], doc["full_norms"] = _train(model, examples, FULL_OPT)
    # LoRA: one step, then ten steps
    model, init = _lora_model(cls, folder, 99)
    model.train()
    for n, v in init.items():
        tensors["lora.init." + n] = v
    loss = _ce(model, examples)
    loss.backward()
    doc["lora_loss"] = float(loss)
    for n, p in model.named_parameters():
        if p.requires_grad:
            tensors["lora.grad." + _name(n)] = p.grad.detach().clone()
    model, _ = _lora_model(cls, folder, 99)
    model.train()
    doc["lora_losses"], doc["lora_norms"] = _train(model, examples, LORA_OPT)
    # DPO: two pairs (prompt, chosen, rejected), one example a row, padded to T
    import numpy as np
    rng = np.random.default_rng(7)
    pairs = []
    for _ in range(2):
        prompt = _ids(rng, 5, cfg["vocab_size"])
        pairs.append((prompt, _ids(rng, 6, cfg["vocab_size"]), _ids(rng, 4, cfg["vocab_size"])))
    model, _ = _lora_model(cls, folder, 99)
    model.train()
    rows = [(p + c, len(p) - 1) for p, c, _ in pairs] + [(p + r, len(p) - 1) for p, _, r in pairs]
    pol = [_sum_logp(model, ex, first)[0] for ex, first in rows]
    with torch.no_grad(), model.disable_adapter():
        ref = [_sum_logp(model, ex, first)[0] for ex, first in rows]
    n = len(pairs)
    pc, pr = torch.stack(pol[:n]), torch.stack(pol[n:])
    rc, rr = torch.stack(ref[:n]), torch.stack(ref[n:])
    logits = BETA * ((pc - rc) - (pr - rr))
    loss = -torch.nn.functional.logsigmoid(logits).mean()
    loss.backward()
    dpo = {"rows": [], "loss": float(loss),
           "policy_chosen_logps": pc.tolist(), "policy_rejected_logps": pr.tolist(),
           "reference_chosen_logps": rc.tolist(), "reference_rejected_logps": rr.tolist(),
           "rewards_chosen": (BETA * (pc - rc)).tolist(),
           "rewards_rejected": (BETA * (pr - rr)).tolist(),
           "rewards_margins": (BETA * ((pc - rc) - (pr - rr))).tolist(),
           "rewards_accuracies": float(((pc - rc) > (pr - rr)).float().mean())}
    for ex, first in rows:
        tg = [ex[i + 1] if first <= i < len(ex) - 1 else -100 for i in range(len(ex))]
        pad = T - len(ex)
        dpo["rows"].append({"ids": ex + [0] * pad, "targets": tg + [-100] * pad,
                            "pos": list(range(len(ex))) + [0] * pad,
                            "start": [0] * len(ex) + list(range(len(ex), T))})
    doc["dpo"] = dpo
    for n_, p in model.named_parameters():
        if p.requires_grad:
            tensors["dpo.grad." + _name(n_)] = p.grad.detach().clone()
    d = os.path.join(out, "train", name)
    os.makedirs(d, exist_ok=True)
    save_file({k: v.contiguous().float() for k, v in tensors.items()},
              os.path.join(d, "expected.safetensors"))
    with open(os.path.join(d, "expected.json"), "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1)
    log("train %s: full loss %.6f, 10 steps %.6f -> %.6f; lora %.6f -> %.6f; dpo %.6f" % (
        name, doc["full_loss"], doc["full_losses"][0], doc["full_losses"][-1],
        doc["lora_losses"][0], doc["lora_losses"][-1], dpo["loss"]))


def make_train(models_dir, out, names):
    import torch
    torch.set_num_threads(4)
    torch.manual_seed(0)
    for name in names:
        make_one(name, models_dir, out, print)
