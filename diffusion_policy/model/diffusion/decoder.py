"""Pre-norm transformer decoder whose three residual branches are separately addressable blocks.

Numerically this is ``nn.TransformerDecoder(nn.TransformerDecoderLayer(norm_first=True,
activation='gelu', batch_first=True))`` without a final norm, and it keeps that module's parameter
names (``self_attn``, ``multihead_attn``, ``linear1``, ``linear2``, ``norm1..3``), so original
Diffusion Policy state_dicts load with ``strict=True``.

What differs: each residual branch -- self-attention (``sa``), cross-attention (``ca``) and
feed-forward (``ffn``) -- is a small ``Block`` module, and the residual adds happen outside them:

    x = x + layer.sa(x, ctx)
    x = x + layer.ca(x, ctx)
    x = x + layer.ffn(x, ctx)

A block's output is its residual-branch value (after its own pre-norm and dropout, before the add),
which is exactly what BAC caches. Every block has the same signature ``block(x, ctx)``, so a hook can
wrap any of them (see ``diffusion_policy.acceleration``). Blocks own no parameters: they call back into
their layer, whose attributes hold the weights under the original names. The cross-attention keys
and values of the condition tokens are a named sub-call too (``layer.memory_kv``).
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import nn

BLOCK_KINDS = ("sa", "ca", "ffn")


class DecoderContext(NamedTuple):
    """What the blocks of one decoder pass may read besides the residual stream."""

    memory: torch.Tensor  # (B, S, E) condition tokens
    tgt_mask: Optional[torch.Tensor]  # (T, T) additive float mask or None
    memory_mask: Optional[torch.Tensor]  # (T, S) additive float mask or None


class NamedCall(nn.Module):
    """A named, hookable call into its owner's weights; no parameters of its own (state_dict unchanged)."""

    def __init__(self, kind: str, fn: Callable):
        super().__init__()
        self.kind = kind
        self.fn = fn  # a bound method of the owner (not a module: no duplicate state_dict keys)

    def forward(self, *args):
        return self.fn(*args)

    def extra_repr(self) -> str:
        return self.kind


class Block(NamedCall):
    """One cacheable residual branch: ``forward(x (B,T,E), ctx) -> (B,T,E)``."""

    def forward(self, x: torch.Tensor, ctx: DecoderContext) -> torch.Tensor:
        return self.fn(x, ctx)


def _split_heads(x: torch.Tensor, n_head: int) -> torch.Tensor:
    B, T, E = x.shape
    return x.view(B, T, n_head, E // n_head).transpose(1, 2)  # (B, H, T, D)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    B, H, T, D = x.shape
    return x.transpose(1, 2).reshape(B, T, H * D)  # (B, T, E)


def attention(
    attn: nn.MultiheadAttention,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: Optional[torch.Tensor],
    training: bool,
) -> torch.Tensor:
    """Multi-head attention on already projected q (B,T,E), k, v (B,S,E); returns out_proj(...)."""
    n_head = attn.num_heads
    y = F.scaled_dot_product_attention(
        _split_heads(q, n_head),
        _split_heads(k, n_head),
        _split_heads(v, n_head),
        attn_mask=mask,
        dropout_p=attn.dropout if training else 0.0,
    )
    return F.linear(_merge_heads(y), attn.out_proj.weight, attn.out_proj.bias)


class DecoderLayer(nn.Module):
    def __init__(self, d_model: int, nhead: int, dim_feedforward: int, dropout: float):
        super().__init__()
        # Parameter holders, named as in nn.TransformerDecoderLayer.
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout, batch_first=True)
        self.multihead_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout, batch_first=True)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)
        # The three cacheable blocks, and the condition tokens' cross-attention keys/values.
        self.sa = Block("sa", self._self_attention)
        self.ca = Block("ca", self._cross_attention)
        self.ffn = Block("ffn", self._feed_forward)
        self.memory_kv = NamedCall("memory_kv", self._memory_kv)  # (B,S,E) -> 2 x (B,S,E)

    def _self_attention(self, x: torch.Tensor, ctx: DecoderContext) -> torch.Tensor:
        h = self.norm1(x)
        q, k, v = F.linear(h, self.self_attn.in_proj_weight, self.self_attn.in_proj_bias).chunk(3, dim=-1)
        return self.dropout1(attention(self.self_attn, q, k, v, ctx.tgt_mask, self.training))

    def _memory_kv(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-attention keys and values of the condition tokens: (B,S,E) -> 2 x (B,S,E), row by row."""
        E = memory.shape[-1]
        w, b = self.multihead_attn.in_proj_weight, self.multihead_attn.in_proj_bias
        return F.linear(memory, w[E:], b[E:]).chunk(2, dim=-1)

    def _cross_attention(self, x: torch.Tensor, ctx: DecoderContext) -> torch.Tensor:
        return self._attend_memory(x, ctx, *self.memory_kv(ctx.memory))

    def _cross_attention_direct(self, x: torch.Tensor, ctx: DecoderContext) -> torch.Tensor:
        """_cross_attention with the keys/values computed in place (not through the `memory_kv` call)."""
        return self._attend_memory(x, ctx, *self._memory_kv(ctx.memory))

    def _attend_memory(self, x: torch.Tensor, ctx: DecoderContext, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        h = self.norm2(x)
        E = h.shape[-1]
        q = F.linear(h, self.multihead_attn.in_proj_weight[:E], self.multihead_attn.in_proj_bias[:E])
        return self.dropout2(attention(self.multihead_attn, q, k, v, ctx.memory_mask, self.training))

    def _feed_forward(self, x: torch.Tensor, ctx: DecoderContext) -> torch.Tensor:
        h = self.linear1(self.norm3(x))
        return self.dropout3(self.linear2(self.dropout(F.gelu(h))))

    def forward(self, x: torch.Tensor, ctx: DecoderContext) -> torch.Tensor:
        x = x + self.sa(x, ctx)
        x = x + self.ca(x, ctx)
        x = x + self.ffn(x, ctx)
        return x


class TransformerDecoder(nn.Module):
    """A stack of ``DecoderLayer`` (state_dict keys ``layers.{i}.*``, no final norm)."""

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int, dropout: float, num_layers: int):
        super().__init__()
        self.layers = nn.ModuleList(
            DecoderLayer(d_model, nhead, dim_feedforward, dropout) for _ in range(num_layers)
        )

    def forward(
        self,
        tgt: torch.Tensor,  # (B, T, E)
        memory: torch.Tensor,  # (B, S, E)
        tgt_mask: Optional[torch.Tensor] = None,
        memory_mask: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        ctx = DecoderContext(memory, tgt_mask, memory_mask)
        x = tgt
        for layer in self.layers:
            x = layer(x, ctx)
        return x

    def forward_all_blocks(self, tgt, memory, tgt_mask=None, memory_mask=None) -> tuple[torch.Tensor, tuple]:
        """forward(), plus each block's output in execution order; calls the blocks' functions directly
        (no named calls, no hooks)."""
        ctx = DecoderContext(memory, tgt_mask, memory_mask)
        x, outputs = tgt, []
        for layer in self.layers:
            for block in (layer._self_attention, layer._cross_attention_direct, layer._feed_forward):
                out = block(x, ctx)
                outputs.append(out)
                x = x + out
        return x, tuple(outputs)
