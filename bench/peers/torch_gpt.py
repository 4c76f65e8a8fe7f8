"""The PyTorch reference of Tandem's model: one GPT-2 in plain torch.nn ops. Every script that
compares Tandem with PyTorch imports this module, so there is one PyTorch model to keep true:

    bench/peers/torch_gpt_bench.py  the CPU peer of bench/run_train_bench.sh, run_decode_bench.sh
    bench/gpu/torch_gpu_bench.py    the GPU kit's peer (bench/gpu/build_kit.sh packs this file
                                    beside it into the kit's scripts/)
    tests/golden/make_golden.py     tests/fixtures/golden_gpt.bin (tests/runtime/golden_test.cpp)
    tests/e2e/hf_gpt2_torch.py      Hugging Face GPT-2 names and layout over this model

Contract (the model Tandem implements, runtime/model/):
  - learned token and position embeddings: x = wte[idx] + wpe[past .. past + T - 1];
  - `layers` pre-LayerNorm blocks: x = x + proj(attention(ln1(x))), then
    x = x + fc_proj(gelu_tanh(fc(ln2(x)))), with fc of width 4 * dim;
  - attention: qkv = Linear(dim, 3 * dim) whose output columns are q heads | k heads | v heads
    (head h owns columns h*D .. h*D + D - 1 of each third, D = dim / heads); causal
    softmax(q k^T / sqrt(D)) v, position t attending to positions 0 .. t;
  - final LayerNorm ln_f, LM head tied to wte: logits = ln_f(x) @ wte^T (over every row of wte,
    so a padded vocabulary gives padded logits); LayerNorm eps 1e-5; no dropout;
  - nn.Linear layout (weight [out, in]); parameters registered, and so listed by parameters(),
    named_parameters() and state_dict(), in the order wte, wpe, blocks.i.{ln1, qkv, proj, ln2,
    fc, fc_proj} (weight, then bias) for i = 0 .. layers - 1, ln_f. Scripts that map the names
    onto Tandem's or Hugging Face's, or draw weights in that order, rely on it.
  - init: construction draws from torch's global RNG (torch's own init, then init_gpt2:
    N(0, 0.02) Linear and Embedding weights, zero Linear biases, LayerNorm 1 and 0); a script
    that wants other weights overwrites them.
  - attention="explicit" computes the masked softmax itself (any torch; the only choice on
    torch < 2.0); "sdpa" calls F.scaled_dot_product_attention (torch >= 2.0; PyTorch picks the
    kernel, e.g. flash attention on a GPU), which takes a whole causal prompt or one new token
    per sequence, and raises ValueError for a chunk of several tokens after a cached prefix.
  - KV cache: forward/hidden/last_logits take `caches` (one object per block with an
    extend(k, v, past) method: GrowingKv or PreallocatedKv) and `past`, the number of positions
    already cached; the caller keeps past consistent with what it has fed.
Pure computation: no I/O, no global state beyond torch's RNG at construction.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

HAS_SDPA = hasattr(F, "scaled_dot_product_attention")


def causal_attention(q, k, v, past, impl="explicit"):
    """q [B, H, T, D] at positions past .. past + T - 1; k, v [B, H, S, D] at 0 .. S - 1."""
    T, S = q.size(-2), k.size(-2)
    if impl == "sdpa":
        if T == 1:  # one new token sees every cached key
            return F.scaled_dot_product_attention(q, k, v)
        if past != 0 or S != T:
            raise ValueError(f"sdpa attention: a chunk of {T} tokens after {past} cached positions "
                             "is not supported (explicit attention is)")
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    if impl != "explicit":
        raise ValueError(f"attention {impl!r}: expected 'explicit' or 'sdpa'")
    att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.size(-1)))
    mask = torch.ones(T, S, dtype=torch.bool, device=q.device).tril(diagonal=past)
    att = att.masked_fill(~mask, float("-inf"))
    return F.softmax(att, dim=-1) @ v


class GrowingKv:
    """One block's keys and values, grown by concatenation at every call (a simple decoder)."""

    def __init__(self):
        self.k = self.v = None

    def extend(self, k, v, past):
        have = 0 if self.k is None else self.k.size(2)
        if past != have:
            raise ValueError(f"GrowingKv holds {have} positions, the caller says past = {past}")
        if self.k is not None:
            k, v = torch.cat([self.k, k], dim=2), torch.cat([self.v, v], dim=2)
        self.k, self.v = k, v
        return k, v


class PreallocatedKv:
    """One block's keys and values in [batch, heads, max_len, head_dim] tensors reserved up
    front; extend writes positions past .. past + T - 1 and returns the views up to there."""

    def __init__(self, batch, heads, max_len, head_dim, dtype, device):
        self.k = torch.empty(batch, heads, max_len, head_dim, dtype=dtype, device=device)
        self.v = torch.empty(batch, heads, max_len, head_dim, dtype=dtype, device=device)

    def extend(self, k, v, past):
        end = past + k.size(2)
        if end > self.k.size(2):
            raise ValueError(f"PreallocatedKv holds {self.k.size(2)} positions, {end} needed")
        self.k[:, :, past:end] = k
        self.v[:, :, past:end] = v
        return self.k[:, :, :end], self.v[:, :, :end]


class Block(nn.Module):
    def __init__(self, dim, heads, attention="explicit"):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not a multiple of heads {heads}")
        self.heads, self.attention = heads, attention
        self.ln1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.ln2 = nn.LayerNorm(dim)
        self.fc = nn.Linear(dim, 4 * dim)
        self.fc_proj = nn.Linear(4 * dim, dim)

    def attn(self, x, cache=None, past=0):
        B, T, C = x.shape
        h = self.heads
        q, k, v = self.qkv(x).split(C, dim=2)
        q = q.view(B, T, h, C // h).transpose(1, 2)
        k = k.view(B, T, h, C // h).transpose(1, 2)
        v = v.view(B, T, h, C // h).transpose(1, 2)
        if cache is not None:
            k, v = cache.extend(k, v, past)
        y = causal_attention(q, k, v, past, self.attention)
        return self.proj(y.transpose(1, 2).contiguous().view(B, T, C))

    def forward(self, x, cache=None, past=0):
        x = x + self.attn(self.ln1(x), cache, past)
        return x + self.fc_proj(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))


def init_gpt2(m):
    """GPT-2's init for one module (use with Module.apply)."""
    if isinstance(m, (nn.Linear, nn.Embedding)):
        nn.init.normal_(m.weight, mean=0.0, std=0.02)
    if isinstance(m, nn.Linear) and m.bias is not None:
        nn.init.zeros_(m.bias)


def tied_logits(ln_f, wte, x):
    """The head: final LayerNorm, then the token embedding as the output matrix."""
    return ln_f(x) @ wte.weight.t()


class GPT(nn.Module):
    def __init__(self, layers, dim, heads, vocab, positions, attention="explicit"):
        super().__init__()
        if attention == "sdpa" and not HAS_SDPA:
            raise ValueError(f"torch {torch.__version__} has no F.scaled_dot_product_attention")
        self.wte = nn.Embedding(vocab, dim)
        self.wpe = nn.Embedding(positions, dim)
        self.blocks = nn.ModuleList([Block(dim, heads, attention) for _ in range(layers)])
        self.ln_f = nn.LayerNorm(dim)
        self.apply(init_gpt2)

    def hidden(self, idx, caches=None, past=0):
        """The residual stream after the last block (before ln_f), [B, T, dim]."""
        pos = torch.arange(past, past + idx.size(1), device=idx.device)
        x = self.wte(idx) + self.wpe(pos)
        for i, blk in enumerate(self.blocks):
            x = blk(x, None if caches is None else caches[i], past)
        return x

    def head(self, x):
        return tied_logits(self.ln_f, self.wte, x)

    def forward(self, idx, targets=None, caches=None, past=0):
        """(logits [B, T, vocab], mean cross-entropy against targets or None)."""
        logits = self.head(self.hidden(idx, caches, past))
        if targets is None:
            return logits, None
        return logits, F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))

    def last_logits(self, idx, caches=None, past=0):
        """Logits of each sequence's last position only, [B, vocab]."""
        return self.head(self.hidden(idx, caches, past)[:, -1, :])
