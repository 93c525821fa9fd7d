#!/usr/bin/env python3
"""A small training loop: a decoder-only transformer whose attention is an
attnc variant (causal ALiBi with grouped-query heads), learning to copy
random sequences (the second half of each sequence repeats the first).

    python3 examples/python/train_block.py                     # attnc, 200 steps
    python3 examples/python/train_block.py --impl flex         # FlexAttention
    python3 examples/python/train_block.py --impl both         # both, same seed:
                                                               # the losses must agree
    python3 examples/python/train_block.py --forward-only --impl both

Runs wherever PyTorch is installed: on CUDA in bfloat16 when a GPU is
there, else on the CPU in float32 (FlexAttention is compared on CUDA
only). Q, K and V reach the kernel as strided views of the fused QKV
projection, with no copy. ``--compile`` wraps the model in torch.compile
(the kernel is then one ``attnc::attention`` node of the graph).

Training needs the kernel's backward, which libattn does not have yet:
until it does, the script says so and exits with status 77 (skipped), as
it does without PyTorch. ``--forward-only`` evaluates the untrained model
under ``torch.no_grad()`` instead (and, with ``--impl both``, compares
attnc's loss with FlexAttention's).
"""

import argparse
import sys

SKIP = 77

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError:
    print("skipped: PyTorch is not installed")
    sys.exit(SKIP)

import attnc

ALIBI_GQA = """
attention alibi_causal {
  param slopes: f32[H];
  score = score + slopes[h] * f32(kv_idx - q_idx);
  mask = causal();
}
"""


def alibi_slopes(heads):
    return torch.tensor([2.0 ** (-8.0 * (h + 1) / heads) for h in range(heads)],
                        dtype=torch.float32)


class Attention(nn.Module):
    def __init__(self, dim, heads, kv_heads, impl, kernel):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, dim // heads
        self.qkv = nn.Linear(dim, (heads + 2 * kv_heads) * self.head_dim, bias=False)
        self.proj = nn.Linear(dim, dim, bias=False)
        self.register_buffer("slopes", alibi_slopes(heads))
        self.impl, self.kernel = impl, kernel
        self.block_mask = None

    def forward(self, x):
        B, L, _ = x.shape
        H, Hkv, D = self.heads, self.kv_heads, self.head_dim
        qkv = self.qkv(x).view(B, L, H + 2 * Hkv, D).transpose(1, 2)
        q, k, v = qkv.split([H, Hkv, Hkv], dim=1)       # strided views
        # f32[H] in the variant: Module.to(dtype) made the buffer bf16 (the
        # slopes are powers of two, exact in either)
        slopes = self.slopes.float()
        if self.impl == "attnc":
            o = self.kernel(q, k, v, slopes=slopes)
        else:
            o = self.flex(q, k, v, L, slopes)
        return self.proj(o.transpose(1, 2).reshape(B, L, H * D))

    def flex(self, q, k, v, L, slopes):
        from torch.nn.attention.flex_attention import (create_block_mask,
                                                       flex_attention)
        if self.block_mask is None or self.block_mask.shape[-1] != L:
            self.block_mask = create_block_mask(
                lambda b, h, qi, ki: ki <= qi, None, None, L, L,
                device=q.device)
        return flex_attention(
            q, k, v, block_mask=self.block_mask, enable_gqa=True,
            score_mod=lambda s, b, h, qi, ki: s + slopes[h] * (ki - qi))


class Block(nn.Module):
    def __init__(self, dim, heads, kv_heads, impl, kernel):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, kv_heads, impl, kernel)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(),
                                 nn.Linear(4 * dim, dim))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class Model(nn.Module):
    def __init__(self, vocab, dim, heads, kv_heads, layers, impl, kernel):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.blocks = nn.ModuleList(Block(dim, heads, kv_heads, impl, kernel)
                                    for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab, bias=False)

    def forward(self, tokens):
        x = self.embed(tokens)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))


def batch(gen, args, device):
    """Random first halves, copied into the second halves."""
    half = torch.randint(0, args.vocab, (args.batch, args.seq // 2), generator=gen)
    tokens = torch.cat([half, half], dim=1).to(device)
    return tokens[:, :-1], tokens[:, 1:]


def run(impl, kernel, args, device, dtype):
    """Losses of `args.steps` steps (training) or of one forward pass."""
    torch.manual_seed(args.seed)
    model = Model(args.vocab, args.dim, args.heads, args.kv_heads, args.layers,
                  impl, kernel).to(device=device, dtype=dtype)
    step_fn = torch.compile(model) if args.compile else model
    gen = torch.Generator().manual_seed(args.seed)
    if args.forward_only:
        with torch.no_grad():
            x, y = batch(gen, args, device)
            logits = step_fn(x)
            return [F.cross_entropy(logits.float().flatten(0, 1), y.flatten()).item()]
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr)
    losses = []
    for step in range(args.steps):
        x, y = batch(gen, args, device)
        loss = F.cross_entropy(step_fn(x).float().flatten(0, 1), y.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if step % args.log_every == 0 or step == args.steps - 1:
            print("%-6s step %4d  loss %.4f" % (impl, step, losses[-1]), flush=True)
    return losses


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--impl", choices=["attnc", "flex", "both"], default="attnc")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--forward-only", action="store_true",
                    help="one forward pass under torch.no_grad() (no backward)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model")
    ap.add_argument("--device", choices=["cuda", "cpu"],
                    default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", choices=["bf16", "f16", "f32"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--vocab", type=int, default=64)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--log-every", type=int, default=20)
    ap.add_argument("--tolerance", type=float, default=0.05,
                    help="largest |loss_attnc - loss_flex| accepted by --impl both")
    args = ap.parse_args()
    device = torch.device(args.device)
    dtype = {"bf16": torch.bfloat16, "f16": torch.float16, "f32": torch.float32}[
        args.dtype or ("bf16" if device.type == "cuda" else "f32")]
    impls = ["attnc", "flex"] if args.impl == "both" else [args.impl]
    if "flex" in impls and device.type != "cuda":
        print("skipped: FlexAttention is compared on CUDA only")
        return SKIP

    kernel = attnc.compile(ALIBI_GQA)
    print("device %s, %s; %s" % (device, dtype, kernel))
    results = {}
    for impl in impls:
        try:
            results[impl] = run(impl, kernel, args, device, dtype)
        except attnc.BackwardUnavailableError as e:
            print("skipped: training needs the kernel's backward, which libattn "
                  "does not have yet (%s). --forward-only runs the forward." % e)
            return SKIP
        print("%-6s final loss %.4f" % (impl, results[impl][-1]))
    if len(results) == 2:
        diff = max(abs(a - b) for a, b in zip(results["attnc"], results["flex"]))
        print("max |loss_attnc - loss_flex| over %d step(s): %.4f (tolerance %.4f)"
              % (len(results["attnc"]), diff, args.tolerance))
        if not diff <= args.tolerance:
            return 1
    losses = results[impls[0]]
    if not args.forward_only and not losses[-1] < 0.9 * losses[0]:
        print("the loss did not fall: %.4f -> %.4f" % (losses[0], losses[-1]))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
