"""TransformerForDiffusion (Chi et al., 2023): the noise-prediction network of Diffusion Policy.

Token layout (time_as_cond=True, obs as condition, the configuration of every shipped checkpoint):

    memory = encoder([time token, obs_1 .. obs_To] + cond_pos_emb)     (B, 1+To, E)
    x      = input_emb(noisy actions) + pos_emb                         (B, T, E)
    x      = decoder(x, memory)          # n_layer x (self-attn, cross-attn, feed-forward)
    out    = head(ln_f(x))                                              (B, T, output_dim)

With time_as_cond=False the model is encoder-only ("BERT" mode): the time token is prepended to the
action tokens and the first output token is dropped. Parameter names and shapes are those of the
original implementation, so original checkpoints load with strict=True.
"""

from __future__ import annotations

import logging
from typing import Optional, Union

import torch
from torch import nn

from diffusion_policy.model.common.module_attr_mixin import ModuleAttrMixin
from diffusion_policy.model.diffusion.decoder import DecoderLayer, NamedCall, TransformerDecoder
from diffusion_policy.model.diffusion.positional_embedding import SinusoidalPosEmb

logger = logging.getLogger(__name__)


def _encoder_layer(n_emb: int, n_head: int, p_drop: float) -> nn.TransformerEncoderLayer:
    return nn.TransformerEncoderLayer(
        d_model=n_emb, nhead=n_head, dim_feedforward=4 * n_emb, dropout=p_drop,
        activation="gelu", batch_first=True, norm_first=True,
    )


class TransformerForDiffusion(ModuleAttrMixin):
    def __init__(
        self,
        input_dim: int,
        output_dim: int,
        horizon: int,
        n_obs_steps: Optional[int] = None,
        cond_dim: int = 0,
        n_layer: int = 12,
        n_head: int = 12,
        n_emb: int = 768,
        p_drop_emb: float = 0.1,
        p_drop_attn: float = 0.1,
        causal_attn: bool = False,
        time_as_cond: bool = True,
        obs_as_cond: bool = False,  # ignored, as in the original: recomputed as cond_dim > 0
        n_cond_layers: int = 0,
    ):
        super().__init__()
        if n_obs_steps is None:
            n_obs_steps = horizon
        T, T_cond = horizon, 1
        if not time_as_cond:
            T += 1
            T_cond -= 1
        obs_as_cond = cond_dim > 0
        if obs_as_cond:
            assert time_as_cond, "obs as condition requires time_as_cond=True"
            T_cond += n_obs_steps

        self.input_emb = nn.Linear(input_dim, n_emb)
        self.pos_emb = nn.Parameter(torch.zeros(1, T, n_emb))
        self.drop = nn.Dropout(p_drop_emb)
        self.time_emb = SinusoidalPosEmb(n_emb)
        self.cond_obs_emb = nn.Linear(cond_dim, n_emb) if obs_as_cond else None
        self.cond_pos_emb = None
        self.encoder = None
        self.decoder = None
        self.encoder_only = T_cond == 0
        if not self.encoder_only:
            self.cond_pos_emb = nn.Parameter(torch.zeros(1, T_cond, n_emb))
            if n_cond_layers > 0:
                self.encoder = nn.TransformerEncoder(
                    _encoder_layer(n_emb, n_head, p_drop_attn), n_cond_layers, enable_nested_tensor=False
                )
            else:
                # Token-wise MLP: memory rows never mix, so the time token and the obs tokens are
                # encoded by two named calls (memory = [time_token | obs_tokens]).
                self.encoder = nn.Sequential(nn.Linear(n_emb, 4 * n_emb), nn.Mish(), nn.Linear(4 * n_emb, n_emb))
                self.time_token = NamedCall("time_token", self._time_token)  # (B,) -> (B, 1, E)
                self.obs_tokens = NamedCall("obs_tokens", self._obs_tokens)  # (B, To, cond_dim) -> (B, To, E)
            self.decoder = TransformerDecoder(n_emb, n_head, 4 * n_emb, p_drop_attn, n_layer)
        else:
            self.encoder = nn.TransformerEncoder(
                _encoder_layer(n_emb, n_head, p_drop_attn), n_layer, enable_nested_tensor=False
            )

        if causal_attn:
            # Additive float masks: 0 where attention is allowed, -inf elsewhere.
            mask = torch.full((T, T), float("-inf")).triu(1)  # key <= query
            self.register_buffer("mask", mask)
            if time_as_cond and obs_as_cond:
                t, s = torch.meshgrid(torch.arange(T), torch.arange(T_cond), indexing="ij")
                # action token t sees the time token and obs steps up to t (cond index s <= t + 1)
                memory_mask = torch.zeros(T, T_cond).masked_fill(~(t >= s - 1), float("-inf"))
                self.register_buffer("memory_mask", memory_mask)
            else:
                self.memory_mask = None
        else:
            self.mask = None
            self.memory_mask = None

        self.ln_f = nn.LayerNorm(n_emb)
        self.head = nn.Linear(n_emb, output_dim)
        # The per-step work around the decoder, as named (hookable, compilable) calls.
        self.action_tokens = NamedCall("action_tokens", self._action_tokens)  # (B, T, input_dim) -> (B, T, E)
        self.output_head = NamedCall("output_head", self._output_head)  # (B, T, E) -> (B, T, output_dim)

        self.T, self.T_cond, self.horizon = T, T_cond, horizon
        self.n_obs_steps = n_obs_steps
        self.time_as_cond, self.obs_as_cond = time_as_cond, obs_as_cond
        self.n_cond_layers = n_cond_layers

        self.apply(self._init_weights)
        logger.debug("TransformerForDiffusion: %.3e parameters", sum(p.numel() for p in self.parameters()))

    # ----------------------------------------------------------------------------------- init / optim
    def _init_weights(self, module: nn.Module) -> None:
        """minGPT initialisation; any module type it does not know is an error."""
        ignore_types = (
            nn.Dropout, SinusoidalPosEmb, nn.TransformerEncoderLayer, nn.TransformerEncoder,
            TransformerDecoder, DecoderLayer, NamedCall, nn.ModuleList, nn.Mish, nn.Sequential,
        )
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.MultiheadAttention):
            nn.init.normal_(module.in_proj_weight, mean=0.0, std=0.02)
            nn.init.zeros_(module.in_proj_bias)
            # out_proj is an nn.Linear and is initialised as one.
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, TransformerForDiffusion):
            nn.init.normal_(module.pos_emb, mean=0.0, std=0.02)
            if module.cond_obs_emb is not None:
                nn.init.normal_(module.cond_pos_emb, mean=0.0, std=0.02)
        elif isinstance(module, ignore_types):
            pass
        else:
            raise RuntimeError(f"Unaccounted module {module}")

    def get_optim_groups(self, weight_decay: float = 1e-3) -> list[dict]:
        """AdamW groups: decay Linear / attention weights; not biases, norms, embeddings."""
        decay, no_decay = set(), set()
        for mn, m in self.named_modules():
            for pn, _ in m.named_parameters(recurse=False):
                fpn = f"{mn}.{pn}" if mn else pn
                if pn.endswith("bias") or pn.startswith("bias"):
                    no_decay.add(fpn)
                elif pn.endswith("weight") and isinstance(m, (nn.Linear, nn.MultiheadAttention)):
                    decay.add(fpn)
                elif pn.endswith("weight") and isinstance(m, (nn.LayerNorm, nn.Embedding)):
                    no_decay.add(fpn)
        no_decay |= {"pos_emb", "_dummy_variable"}
        if self.cond_pos_emb is not None:
            no_decay.add("cond_pos_emb")

        params = dict(self.named_parameters())
        assert not (decay & no_decay), f"parameters in both groups: {decay & no_decay}"
        missing = params.keys() - (decay | no_decay)
        assert not missing, f"parameters in no optimizer group: {missing}"
        return [
            {"params": [params[n] for n in sorted(decay)], "weight_decay": weight_decay},
            {"params": [params[n] for n in sorted(no_decay)], "weight_decay": 0.0},
        ]

    def configure_optimizers(self, learning_rate: float = 1e-4, weight_decay: float = 1e-3,
                             betas: tuple[float, float] = (0.9, 0.95)) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.get_optim_groups(weight_decay), lr=learning_rate, betas=betas)

    # ----------------------------------------------------------------------------------- forward
    def embed_condition(self, timesteps: torch.Tensor, cond: Optional[torch.Tensor]) -> torch.Tensor:
        """(B,) timesteps, (B, To, cond_dim) obs -> memory (B, 1+To, E)."""
        if self.obs_as_cond and self.n_cond_layers == 0:  # token-wise encoder: rows encoded apart
            return torch.cat([self.time_token(timesteps), self.obs_tokens(cond)], dim=1)
        tokens = self.time_emb(timesteps).unsqueeze(1)  # (B, 1, E)
        if self.obs_as_cond:
            tokens = torch.cat([tokens, self.cond_obs_emb(cond)], dim=1)
        return self.encoder(self.drop(tokens + self.cond_pos_emb[:, : tokens.shape[1]]))

    def _time_token(self, timesteps: torch.Tensor) -> torch.Tensor:
        """(B,) -> (B, 1, E): memory row 0 (token-wise encoder only)."""
        return self.encoder(self.drop(self.time_emb(timesteps).unsqueeze(1) + self.cond_pos_emb[:, :1]))

    def _obs_tokens(self, cond: torch.Tensor) -> torch.Tensor:
        """(B, To, cond_dim) -> (B, To, E): memory rows 1..To (token-wise encoder only)."""
        To = cond.shape[1]
        return self.encoder(self.drop(self.cond_obs_emb(cond) + self.cond_pos_emb[:, 1 : 1 + To]))

    def _action_tokens(self, sample: torch.Tensor) -> torch.Tensor:
        """(B, T, input_dim) noisy actions -> (B, T, E) decoder input (decoder models only)."""
        x = self.input_emb(sample)
        return self.drop(x + self.pos_emb[:, : x.shape[1]])

    def _output_head(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, E) -> (B, T, output_dim)."""
        return self.head(self.ln_f(x))

    def forward_all_blocks(
        self,
        sample: torch.Tensor,  # (B, T, input_dim)
        timestep: torch.Tensor,  # 0-d or (B,) on the sample's device
        cond: Optional[torch.Tensor] = None,  # (B, To, cond_dim)
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """forward() of a decoder model, plus every block's output in execution order (sa, ca, ffn of
        layer 0, ...): one straight-line function without named calls, so hooks cannot intervene --
        what a compiled step that refreshes every block cache runs."""
        timesteps = timestep[None] if timestep.dim() == 0 else timestep
        timesteps = timesteps.expand(sample.shape[0])
        if self.obs_as_cond and self.n_cond_layers == 0:
            memory = torch.cat([self._time_token(timesteps), self._obs_tokens(cond)], dim=1)
        else:
            memory = self.embed_condition(timesteps, cond)
        x, outputs = self.decoder.forward_all_blocks(self._action_tokens(sample), memory, self.mask, self.memory_mask)
        return self._output_head(x), outputs

    def forward(
        self,
        sample: torch.Tensor,  # (B, T, input_dim)
        timestep: Union[torch.Tensor, float, int],  # (B,), 0-d tensor or number
        cond: Optional[torch.Tensor] = None,  # (B, To, cond_dim)
        **kwargs,
    ) -> torch.Tensor:  # (B, T, output_dim)
        B = sample.shape[0]
        timesteps = timestep
        if not torch.is_tensor(timesteps):
            timesteps = torch.tensor([timesteps], dtype=torch.long, device=sample.device)
        elif timesteps.dim() == 0:
            timesteps = timesteps[None].to(sample.device)
        timesteps = timesteps.expand(B)

        if self.encoder_only:
            x = torch.cat([self.time_emb(timesteps).unsqueeze(1), self.input_emb(sample)], dim=1)  # (B, T+1, E)
            x = self.drop(x + self.pos_emb[:, : x.shape[1]])
            x = self.encoder(src=x, mask=self.mask)[:, 1:]
        else:
            memory = self.embed_condition(timesteps, cond)
            x = self.action_tokens(sample)
            x = self.decoder(tgt=x, memory=memory, tgt_mask=self.mask, memory_mask=self.memory_mask)
        return self.output_head(x)
