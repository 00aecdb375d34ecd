"""``torch.compile`` of the U-Net and the ControlNet, each with its own compiled-code cache.

diffusers 0.42 wraps every model's ``forward`` in one decorator (``apply_lora_scale``'s ``wrapper``),
and ``nn.Module.compile`` compiles ``nn.Module._call_impl``: either way both models run through the
same Python code object, and dynamo keeps its cache, and its recompile limit (8), per code object. A
job needs more graphs than that (U-Net and ControlNet, with and without grad, batch sizes, DCAM's
layers), so past the eighth the rest silently ran eagerly. Here each model's ``forward`` gets a copy
of that code object of its own, compiled alone: one cache, and one limit, per model.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

import torch
from torch.fx.experimental import _config as fx_config

RECOMPILE_LIMIT = 32
"""Graphs each compiled model may hold before dynamo gives up on it (its default: 8)."""


def _own_code(method: types.MethodType, tag: str) -> types.MethodType:
    """``method`` with a private copy of its function's code object (dynamo caches per code object)."""
    fn = method.__func__
    code = fn.__code__.replace(co_name=f"{fn.__code__.co_name}_{tag}")
    copy = types.FunctionType(code, fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)
    copy.__kwdefaults__ = fn.__kwdefaults__
    copy.__dict__.update(fn.__dict__)  # __wrapped__ and friends
    copy.__qualname__ = fn.__qualname__
    return types.MethodType(copy, method.__self__)


def _dense(value: Any) -> Any:
    if not isinstance(value, torch.Tensor):
        return value
    value = value.contiguous()
    if value.dim():
        torch._dynamo.maybe_mark_dynamic(value, 0)  # the batch: frames per chunk, CFG pairs
    return value


def _with_dense_inputs(compiled: Callable[..., Any]) -> Callable[..., Any]:
    """Call ``compiled`` with contiguous tensors: the method passes broadcast views (``expand``,
    stride 0) in some calls and dense batches in others, and dynamo guards on strides, so each kind
    would otherwise be a graph of its own; the batch dimension is marked dynamic. Outside the
    compiled frame: nothing here is traced."""

    def forward(*args: Any, **kwargs: Any) -> Any:
        kwargs = {k: tuple(map(_dense, v)) if isinstance(v, tuple) else _dense(v) for k, v in kwargs.items()}
        # No "duck sizing" while tracing: a batch of 2 would share a symbol with a 2x2 feature map,
        # and specialising the map would freeze the batch (one graph per chunk size).
        with fx_config.patch(use_duck_shape=False):
            return compiled(*map(_dense, args), **kwargs)

    return forward


def compile_models(models: dict[str, torch.nn.Module], **options: Any) -> None:
    """Replace each module's ``forward`` by a compiled one with a cache of its own.

    ``options`` go to ``torch.compile`` (``backend``, ``mode``, ``dynamic``...). Idempotent: a model
    already compiled here is left as it is.
    """
    # The limit is per code object. The DCAM/MGDM processors' stateful parts run outside the graph
    # (``torch.compiler.disable``), so sampling no longer recompiles after its first step, but the
    # graph breaks there make the U-Net's inner frames code objects of their own, shared by both
    # models: diffusers' ResnetBlock2D.forward holds 7 entries on a tiny 5-frame job (batch 1 and
    # >= 2, with and without grad, either model), one short of dynamo's default 8.
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)
    for name, module in models.items():
        if getattr(module, "_poseanimate_compiled", False):
            continue
        own = _own_code(module.forward, name)
        module.forward = _with_dense_inputs(torch.compile(own, **options))
        module.forward.__wrapped__ = own  # type: ignore[attr-defined]  # its code holds the cache
        module._poseanimate_compiled = True
