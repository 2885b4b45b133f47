"""Anchor cross-frame attention: temporal consistency for frame-by-frame restyling.

Restyling video frames one image at a time flickers: each frame's
self-attention only sees itself, so textures and colours are re-invented per
frame. Following Text2Video-Zero, :class:`AnchorAttnProcessor` lets each
row's self-attention also look at an *anchor* row rendered in the same call:
its keys and values are its own followed by its anchor's (concatenated along
the sequence), so a frame keeps its own layout and borrows the anchor's
appearance.

Unlike diffusers' ``CrossFrameAttnProcessor`` (which *replaces* every row's
keys and values with those of frame 0 of each guidance half), the anchor is
chosen per row and the row's own keys stay in. An anchor row points at
itself; attending to ``[K; K]`` is the same softmax as attending to ``K``,
so one rule covers every row. That is deliberate: a row's arithmetic must
not depend on whether *other* rows have anchors, or a frame would change
with the batch it lands in.

Only self-attention (``attn1``) is touched; cross-attention to the prompt
runs exactly as diffusers' ``AttnProcessor2_0``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from diffusers.models.attention_processor import Attention


class AnchorAttnProcessor:
    """Self-attention over a row's own and its anchor row's keys/values.

    ``anchor_of[i]`` is the anchor of row ``i`` of one guidance half (``n =
    len(anchor_of)`` rows). A hidden-states batch of ``k * n`` rows (``k = 2``
    under classifier-free guidance: unconditional half, then conditional)
    maps row ``r`` to ``(r // n) * n + anchor_of[r % n]``, so each half
    anchors within itself.
    """

    def __init__(self, anchor_of: Sequence[int]) -> None:
        n = len(anchor_of)
        if n == 0:
            raise ValueError("anchor_of must name an anchor for at least one row")
        bad = [a for a in anchor_of if not 0 <= a < n]
        if bad:
            raise ValueError(f"anchor_of holds rows {bad} outside 0..{n - 1}")
        self.anchor_of = list(anchor_of)

    def _anchor_rows(self, batch: int, device: torch.device) -> torch.Tensor:
        n = len(self.anchor_of)
        if batch % n:
            raise ValueError(f"attention batch of {batch} rows is not a multiple of the {n} rows in anchor_of")
        rows = [half * n + a for half in range(batch // n) for a in self.anchor_of]
        return torch.tensor(rows, dtype=torch.long, device=device)

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)

        image_shape: tuple[int, int, int, int] | None = None
        if hidden_states.ndim == 4:  # (batch, channels, height, width) -> (batch, tokens, channels)
            image_shape = tuple(hidden_states.shape)  # type: ignore[assignment]
            b, c, h, w = hidden_states.shape
            hidden_states = hidden_states.view(b, c, h * w).transpose(1, 2)

        batch = hidden_states.shape[0]
        if attention_mask is not None:
            keys = (hidden_states if encoder_hidden_states is None else encoder_hidden_states).shape[1]
            attention_mask = attn.prepare_attention_mask(attention_mask, keys, batch)
            attention_mask = attention_mask.view(batch, attn.heads, -1, attention_mask.shape[-1])

        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)

        query = attn.to_q(hidden_states)
        context = hidden_states  # self-attention: keys from the (normalised) hidden states
        if encoder_hidden_states is not None:
            context = attn.norm_encoder_hidden_states(encoder_hidden_states) if attn.norm_cross else encoder_hidden_states
        key = attn.to_k(context)
        value = attn.to_v(context)

        if encoder_hidden_states is None:  # self-attention: append the anchor's keys and values
            rows = self._anchor_rows(batch, key.device)
            key = torch.cat([key, key.index_select(0, rows)], dim=1)
            value = torch.cat([value, value.index_select(0, rows)], dim=1)
            if attention_mask is not None:
                attention_mask = torch.cat([attention_mask, attention_mask.index_select(0, rows)], dim=-1)

        head_dim = key.shape[-1] // attn.heads
        query = query.view(batch, -1, attn.heads, head_dim).transpose(1, 2)
        key = key.view(batch, -1, attn.heads, head_dim).transpose(1, 2)
        value = value.view(batch, -1, attn.heads, head_dim).transpose(1, 2)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)

        hidden_states = F.scaled_dot_product_attention(
            query, key, value, attn_mask=attention_mask, dropout_p=0.0, is_causal=False, scale=attn.scale
        )
        hidden_states = hidden_states.transpose(1, 2).reshape(batch, -1, attn.heads * head_dim).to(query.dtype)
        hidden_states = attn.to_out[0](hidden_states)  # projection
        hidden_states = attn.to_out[1](hidden_states)  # dropout

        if image_shape is not None:
            hidden_states = hidden_states.transpose(-1, -2).reshape(image_shape)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


def self_attention_modules(unet: torch.nn.Module) -> list[Attention]:
    """The UNet's self-attention layers: every ``Attention`` registered as ``attn1``."""
    from diffusers.models.attention_processor import Attention

    return [m for name, m in unet.named_modules() if name.rsplit(".", 1)[-1] == "attn1" and isinstance(m, Attention)]


@contextmanager
def anchored_attention(unet: torch.nn.Module, anchor_of: Sequence[int]) -> Iterator[AnchorAttnProcessor]:
    """Anchor attention on every ``attn1`` of ``unet`` for the ``with`` block, then the old processors back.

    The UNet is shared by the engine's pipelines, so this is only safe where
    calls are serialised (the engine's single-thread executor).
    """
    processor = AnchorAttnProcessor(anchor_of)
    modules = self_attention_modules(unet)
    if not modules:
        raise ValueError("the UNet has no self-attention (attn1) layers to anchor")
    previous = [m.processor for m in modules]
    try:
        for m in modules:
            m.set_processor(processor)
        yield processor
    finally:
        for m, old in zip(modules, previous, strict=True):
            m.set_processor(old)
