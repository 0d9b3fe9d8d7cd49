"""Decoder-only language models in plain PyTorch (LLaMA and GPT-2 architectures), with a KV cache.

The models of issue #17's LLM workloads: one :class:`Decoder` module for both architectures, so a captured
graph has the same shape whatever the weights came from (a GGUF file, a Hugging Face checkpoint directory,
the project's trained ``tinylm``, or random weights of a shape preset).

- ``llama`` (Touvron et al. 2023, "LLaMA: Open and Efficient Foundation Language Models", Sec. 2.2): pre-norm
  RMSNorm, rotary position embeddings on queries and keys (Su et al. 2021, the ``rotate_half`` form of the
  Hugging Face implementation), grouped-query attention (``kv_heads`` key/value heads shared by
  ``heads / kv_heads`` query heads each; Ainslie et al. 2023), a SwiGLU MLP ``down(silu(gate(x)) * up(x))``, no
  biases.
- ``gpt2`` (Radford et al. 2019): pre-norm LayerNorm, learned position embeddings, multi-head attention, a
  GELU (tanh form) MLP, biases everywhere.

Attention is written out as two matmuls (``QK^T`` and ``PV``) so :mod:`mapping.lower` sees them as MAC layers, as
BERT's eager attention; the ``heads / kv_heads`` query heads that share a key/value head are the rows of one GEMM
per key/value head (``(group * T) x head_dim`` times ``head_dim x L``), so every cached key and value is read
once per step, as grouped-query attention kernels read them. The KV cache is explicit:
``forward(input_ids, past_keys, past_values)`` takes the cached keys and values of every layer, each
``(batch, kv_heads, past, head_dim)``, and returns the logits and
the caches grown by the new tokens, so one call is a prefill (no past) or a decode step (one new token). The
positions of the new tokens start at ``past``; the causal mask lets token ``i`` see the past and the new tokens
up to itself. Everything is computed from shapes, so the model captures with torch.fx and runs on the ``meta``
device (timing-only shape presets of 1B and 7B size need no memory).

:data:`PRESETS` holds the configurations: ``smollm2-135m`` (SmolLM2-135M's published config), ``llama-1b`` (Llama
3.2 1B's), ``llama-7b`` (LLaMA-7B's, Touvron et al. 2023, Table 2) and ``gpt2`` (GPT-2 small's).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from torch import nn

__all__ = ["DecoderConfig", "Decoder", "PRESETS", "STYLES", "preset"]

STYLES = ("llama", "gpt2")


@dataclass(frozen=True)
class DecoderConfig:
    """The shape of a decoder LM: ``style`` (llama | gpt2), ``layers``, ``hidden`` width, ``ffn`` width, query
    ``heads`` and key/value ``kv_heads``, ``vocab`` size, ``max_positions``; llama's ``rope_theta``; the norms'
    ``norm_eps``; ``tie_embeddings`` (the LM head reuses the token embedding)."""

    name: str
    style: str
    layers: int
    hidden: int
    ffn: int
    heads: int
    kv_heads: int
    vocab: int
    max_positions: int = 2048
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    tie_embeddings: bool = False

    def __post_init__(self) -> None:
        if self.style not in STYLES:
            raise ValueError(f"decoder {self.name!r}: style must be one of {', '.join(STYLES)}, got {self.style!r}")
        for f in ("layers", "hidden", "ffn", "heads", "kv_heads", "vocab", "max_positions"):
            if not isinstance(getattr(self, f), int) or getattr(self, f) < 1:
                raise ValueError(f"decoder {self.name!r}: {f} must be a positive integer, got {getattr(self, f)!r}")
        if self.hidden % self.heads or self.heads % self.kv_heads:
            raise ValueError(f"decoder {self.name!r}: hidden ({self.hidden}) must be a multiple of heads "
                             f"({self.heads}) and heads of kv_heads ({self.kv_heads})")
        if self.style == "gpt2" and self.kv_heads != self.heads:
            raise ValueError(f"decoder {self.name!r}: gpt2 has as many key/value heads as query heads")

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def parameters(self) -> int:
        """Parameters of the model (the tied LM head counted once)."""
        h, d = self.hidden, self.head_dim
        attn = h * h * 2 + 2 * h * self.kv_heads * d
        if self.style == "llama":
            mlp, norms, bias = 3 * h * self.ffn, 2 * h, 0
        else:
            mlp, norms, bias = 2 * h * self.ffn, 4 * h, 3 * h + 2 * self.kv_heads * d + self.ffn + h
        emb = self.vocab * h * (1 if self.tie_embeddings else 2) + (self.max_positions * h if self.style == "gpt2"
                                                                    else 0)
        return self.layers * (attn + mlp + norms + bias) + emb + h * (1 if self.style == "llama" else 2)

    def with_(self, **kw) -> DecoderConfig:
        return replace(self, **kw)


#: Published configurations. smollm2-135m: HuggingFaceTB/SmolLM2-135M config.json (LlamaForCausalLM);
#: llama-1b: meta-llama/Llama-3.2-1B config.json (rope scaling left out: it changes no shape);
#: llama-7b: Touvron et al. 2023, Table 2 and the released config (vocab 32000, RMSNorm eps 1e-6);
#: gpt2: Radford et al. 2019, GPT-2 small (openai-community/gpt2 config.json).
PRESETS: dict[str, DecoderConfig] = {c.name: c for c in (
    DecoderConfig("smollm2-135m", "llama", 30, 576, 1536, 9, 3, 49152, 8192, 100000.0, 1e-5, True),
    DecoderConfig("llama-1b", "llama", 16, 2048, 8192, 32, 8, 128256, 131072, 500000.0, 1e-5, True),
    DecoderConfig("llama-7b", "llama", 32, 4096, 11008, 32, 32, 32000, 2048, 10000.0, 1e-6, False),
    DecoderConfig("gpt2", "gpt2", 12, 768, 3072, 12, 12, 50257, 1024, 10000.0, 1e-5, True),
)}


def preset(name: str) -> DecoderConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown decoder preset {name!r}; presets: {', '.join(PRESETS)}")
    return PRESETS[name]


class RMSNorm(nn.Module):
    """x / sqrt(mean(x^2) + eps) * weight (Zhang & Sennrich 2019), computed in the input's dtype."""

    def __init__(self, width: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(width))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def _rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class Attention(nn.Module):
    """Causal (grouped-query) attention with a KV cache: QK^T and PV as explicit matmuls."""

    def __init__(self, cfg: DecoderConfig):
        super().__init__()
        h, d, bias = cfg.hidden, cfg.head_dim, cfg.style == "gpt2"
        self.heads, self.kv_heads, self.head_dim, self.rope = cfg.heads, cfg.kv_heads, d, cfg.style == "llama"
        self.q_proj = nn.Linear(h, cfg.heads * d, bias=bias)
        self.k_proj = nn.Linear(h, cfg.kv_heads * d, bias=bias)
        self.v_proj = nn.Linear(h, cfg.kv_heads * d, bias=bias)
        self.o_proj = nn.Linear(cfg.heads * d, h, bias=bias)

    def forward(self, x, cos, sin, mask, past_k=None, past_v=None):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.kv_heads, self.head_dim).transpose(1, 2)
        if self.rope:
            q = q * cos + _rotate_half(q) * sin
            k = k * cos + _rotate_half(k) * sin
        if past_k is not None:
            k = torch.cat((past_k, k), dim=2)
            v = torch.cat((past_v, v), dim=2)
        # the query heads of a group share one key/value head: they are folded into the rows of one GEMM per
        # key/value head (as grouped-query attention kernels do), so each cached key and value is read once
        group, L, d = self.heads // self.kv_heads, k.shape[2], self.head_dim
        q = q.reshape(B, self.kv_heads, group * T, d)
        scores = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(d))
        scores = (scores.view(B, self.kv_heads, group, T, L) + mask).view(B, self.kv_heads, group * T, L)
        probs = torch.softmax(scores, dim=-1)
        out = torch.matmul(probs, v).view(B, self.heads, T, d).transpose(1, 2).reshape(B, T, self.heads * d)
        return self.o_proj(out), k, v


class MLP(nn.Module):
    """llama: down(silu(gate(x)) * up(x)) (SwiGLU, Shazeer 2020); gpt2: down(gelu_tanh(up(x)))."""

    def __init__(self, cfg: DecoderConfig):
        super().__init__()
        self.gated = cfg.style == "llama"
        bias = not self.gated
        if self.gated:
            self.gate_proj = nn.Linear(cfg.hidden, cfg.ffn, bias=False)
        self.up_proj = nn.Linear(cfg.hidden, cfg.ffn, bias=bias)
        self.down_proj = nn.Linear(cfg.ffn, cfg.hidden, bias=bias)

    def forward(self, x):
        if self.gated:
            return self.down_proj(nn.functional.silu(self.gate_proj(x)) * self.up_proj(x))
        return self.down_proj(nn.functional.gelu(self.up_proj(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, cfg: DecoderConfig):
        super().__init__()
        norm = (lambda: RMSNorm(cfg.hidden, cfg.norm_eps)) if cfg.style == "llama" else \
            (lambda: nn.LayerNorm(cfg.hidden, eps=cfg.norm_eps))
        self.input_norm, self.attn, self.post_norm, self.mlp = norm(), Attention(cfg), norm(), MLP(cfg)

    def forward(self, x, cos, sin, mask, past_k=None, past_v=None):
        a, k, v = self.attn(self.input_norm(x), cos, sin, mask, past_k, past_v)
        x = x + a
        return x + self.mlp(self.post_norm(x)), k, v


class Decoder(nn.Module):
    """A decoder LM of :class:`DecoderConfig` ``cfg``: ``forward(input_ids, past_keys=None, past_values=None)``
    returns ``(logits, keys, values)``, the caches (one tensor per layer, ``(batch, kv_heads, past + T,
    head_dim)``) grown by the ``T`` new tokens."""

    def __init__(self, cfg: DecoderConfig):
        super().__init__()
        self.cfg = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab, cfg.hidden)
        if cfg.style == "gpt2":
            self.embed_positions = nn.Embedding(cfg.max_positions, cfg.hidden)
        else:
            d = cfg.head_dim
            self.register_buffer("inv_freq", 1.0 / cfg.rope_theta ** (torch.arange(0, d, 2, dtype=torch.float64) / d),
                                 persistent=False)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
        self.norm = RMSNorm(cfg.hidden, cfg.norm_eps) if cfg.style == "llama" else \
            nn.LayerNorm(cfg.hidden, eps=cfg.norm_eps)
        self.lm_head = nn.Linear(cfg.hidden, cfg.vocab, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.embed_tokens.weight

    def forward(self, input_ids, past_keys=None, past_values=None):
        B, T = input_ids.shape
        past = 0 if past_keys is None else past_keys[0].shape[2]
        x = self.embed_tokens(input_ids)
        positions = torch.arange(past, past + T, device=input_ids.device)
        if self.cfg.style == "gpt2":
            x = x + self.embed_positions(positions)
            cos = sin = None
        else:
            angles = positions[:, None].to(self.inv_freq.dtype) * self.inv_freq[None, :]
            angles = torch.cat((angles, angles), dim=-1)
            cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
        # token i (at position past + i) sees the keys at positions 0 .. past + i
        mask = torch.full((T, past + T), float("-inf"), dtype=x.dtype, device=x.device).triu(past + 1)
        keys, values = [], []
        for i, block in enumerate(self.layers):
            x, k, v = block(x, cos, sin, mask, None if past_keys is None else past_keys[i],
                            None if past_values is None else past_values[i])
            keys.append(k)
            values.append(v)
        return self.lm_head(self.norm(x)), tuple(keys), tuple(values)

    @torch.no_grad()
    def generate(self, input_ids, tokens: int):
        """Greedy decoding of ``tokens`` new tokens with the KV cache: (tokens ids (batch, tokens), logits of every
        step (batch, tokens, vocab))."""
        logits, keys, values = self(input_ids)
        out, steps = [], []
        for _ in range(tokens):
            nxt = logits[:, -1].argmax(-1, keepdim=True)
            steps.append(logits[:, -1])
            out.append(nxt)
            logits, keys, values = self(nxt, keys, values)
        return torch.cat(out, 1), torch.stack(steps, 1)
