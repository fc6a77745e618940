"""A KV cache of a fixed context for one decode step, for transformers 4.46 and 5.x.

A decode :class:`~harness.targets.base.StageCall` holds its cache in ``kwargs``; a counter may
call it several times (trace, then run). A normal ``DynamicCache`` would grow by one token per
call, so the cache here returns ``cat(cached, new)`` exactly as ``DynamicCache.update`` does but
does not store the new token: every call sees T cached tokens and attends over T + 1 keys, the
same ops and shapes as the real step.
"""

from __future__ import annotations

import torch

__all__ = ["frozen_kv_cache"]


def frozen_kv_cache(num_layers: int, kv_heads: int, head_dim: int, context: int, *,
                    device: str | torch.device, dtype: torch.dtype):
    """A ``DynamicCache`` holding ``context`` tokens per layer that never grows."""
    from transformers.cache_utils import DynamicCache

    if not isinstance(context, int) or isinstance(context, bool) or context < 1:
        raise ValueError(f"decode_context: expected a positive int number of cached tokens, got {context!r}")
    shape = (1, kv_heads, context, head_dim)

    def kv() -> torch.Tensor:
        return torch.zeros(shape, device=device, dtype=dtype)

    probe = DynamicCache()
    if hasattr(probe, "layers"):  # transformers 5.x: a list of cache layers
        from transformers.cache_utils import DynamicLayer

        class FrozenLayer(DynamicLayer):
            def update(self, key_states, value_states, *args, **kwargs):
                return (torch.cat([self.keys, key_states], dim=-2),
                        torch.cat([self.values, value_states], dim=-2))

        layers = []
        for _ in range(num_layers):
            layer = FrozenLayer()
            DynamicLayer.update(layer, kv(), kv())
            layers.append(layer)
        probe.layers = layers
        return probe

    # transformers 4.x: key_cache / value_cache lists
    class FrozenDynamicCache(DynamicCache):
        def update(self, key_states, value_states, layer_idx, cache_kwargs=None):
            return (torch.cat([self.key_cache[layer_idx], key_states], dim=-2),
                    torch.cat([self.value_cache[layer_idx], value_states], dim=-2))

    cache = FrozenDynamicCache()
    cache.key_cache = [kv() for _ in range(num_layers)]
    cache.value_cache = [kv() for _ in range(num_layers)]
    cache._seen_tokens = context
    return cache
