"""Per-head access to a decoder's attention output, for PEAR: scale, mean-ablate or fold one head at a time.

In Llama, Qwen2, Gemma and every decoder built the same way, each layer's attention ends with
``o_proj(concat_h head_h)``: the heads' outputs lie side by side in the input of ``self_attn.o_proj``, head
``h`` in columns ``h·d … (h+1)·d`` (``d`` = head dim). So a forward pre-hook on ``o_proj`` that edits one
slice of its input changes that head alone (the hook-based formulation), and multiplying the matching
columns of ``o_proj.weight`` by ``c`` does in the weights what a hook scaling the slice by ``c`` does at run
time: ``(c·x_h) W_hᵀ = x_h (c·W_h)ᵀ``. Folding leaves the architecture, parameter count and cost unchanged.

Head scoring needs one forward pass per head; a pass that only changes layer ``l`` need not recompute layers
``0 … l-1``: :func:`skip_layers` makes them return the outputs :func:`record_layers` kept from a clean pass
(exact: the same tensors), which halves the work on average.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn

HeadId = tuple[int, int]
"""``(layer, head)``, both counted from 0."""

_O_PROJ = re.compile(r"^(?P<layer>(?:.*\.)?layers\.(?P<index>\d+))\.self_attn\.o_proj$")


@dataclass(frozen=True)
class HeadLayout:
    """Where each layer's heads meet: the decoder layers, their ``o_proj`` and the head geometry.

    Attributes:
        layers: The decoder layers, in depth order.
        projections: Each layer's ``self_attn.o_proj``; its input is ``[..., num_heads * head_dim]``.
        num_heads: Query heads per layer (grouped-query models share key/value heads, not outputs).
        head_dim: Width of one head's output.
    """

    layers: tuple[nn.Module, ...]
    projections: tuple[nn.Linear, ...]
    num_heads: int
    head_dim: int

    @property
    def num_layers(self) -> int:
        """Decoder layers."""
        return len(self.layers)

    def columns(self, head: int) -> slice:
        """The slice of ``o_proj``'s input (and of its weight's columns) that belongs to ``head``."""
        if not 0 <= head < self.num_heads:
            raise ValueError(f"head {head} is out of range for {self.num_heads} heads per layer")
        return slice(head * self.head_dim, (head + 1) * self.head_dim)

    def check(self, heads: Iterable[HeadId]) -> None:
        """Raise ``ValueError`` naming any ``(layer, head)`` outside this model."""
        bad = [
            (layer, head) for layer, head in heads if not (0 <= layer < self.num_layers and 0 <= head < self.num_heads)
        ]
        if bad:
            raise ValueError(f"heads {bad} are out of range for {self.num_layers} layers × {self.num_heads} heads")


def head_layout(model: nn.Module) -> HeadLayout:
    """Find each decoder layer's ``self_attn.o_proj`` and the head geometry from the model config.

    Args:
        model: A transformers decoder (``LlamaForCausalLM``, ``Qwen2ForCausalLM``, ``Gemma3ForCausalLM``, …).

    Returns:
        The layout; ``head_dim`` is ``config.head_dim`` where set (Gemma's differs from ``hidden // heads``).

    Raises:
        ValueError: When the model has no ``layers.<i>.self_attn.o_proj`` linear layers (GPT-2, T5, …) or
            their width is not ``num_attention_heads × head_dim``; the message names the architecture.
    """
    config = getattr(model, "config", None)
    architecture = f"{type(model).__name__} (model_type={getattr(config, 'model_type', None)!r})"
    found: dict[int, tuple[nn.Module, nn.Linear]] = {}
    for name, module in model.named_modules():
        match = _O_PROJ.match(name)
        if match and isinstance(module, nn.Linear):
            found[int(match["index"])] = (model.get_submodule(match["layer"]), module)
    if not found or sorted(found) != list(range(len(found))):
        raise ValueError(
            f"{architecture} has no Llama/Qwen/Gemma-style attention: PEAR needs every decoder layer's "
            "'layers.<i>.self_attn.o_proj' (an nn.Linear whose input is the heads' outputs side by side)"
        )
    heads, head_dim = _head_geometry(config)
    width = found[0][1].in_features
    if heads < 1 or any(proj.in_features != heads * head_dim for _, proj in found.values()):
        raise ValueError(
            f"{architecture}: o_proj takes {width} inputs, not num_attention_heads ({heads}) × head_dim "
            f"({head_dim}); PEAR cannot tell its heads apart"
        )
    ordered = [found[i] for i in range(len(found))]
    return HeadLayout(tuple(m for m, _ in ordered), tuple(p for _, p in ordered), heads, head_dim)


def _head_geometry(config: Any) -> tuple[int, int]:
    """``(num_attention_heads, head_dim)`` of the text decoder; ``(0, 0)`` when the config does not say."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    heads = int(getattr(text, "num_attention_heads", 0) or 0)
    hidden = int(getattr(text, "hidden_size", 0) or 0)
    return heads, int(getattr(text, "head_dim", None) or (hidden // heads if heads else 0))


@contextmanager
def edit_head_inputs(layout: HeadLayout, edits: Mapping[int, Callable[[Tensor], Tensor]]) -> Iterator[None]:
    """Run the body with ``o_proj``'s input of layer ``l`` replaced by ``edits[l](input)``; hooks removed after.

    Args:
        layout: From :func:`head_layout`.
        edits: Layer index → function of the ``[B, T, heads * head_dim]`` input returning its replacement
            (returning the input unchanged makes a read-only hook).
    """
    handles = [
        layout.projections[layer].register_forward_pre_hook(partial(_replace_input, edit))
        for layer, edit in edits.items()
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _replace_input(edit: Callable[[Tensor], Tensor], _module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
    return (edit(args[0]), *args[1:])


def head_multipliers(layout: HeadLayout, coefficients: Mapping[HeadId, Tensor | float], layer: int) -> Tensor:
    """``[heads * head_dim]``: each head's coefficient repeated over its columns, 1 for heads not listed.

    Built from the coefficient tensors themselves, so gradients reach them through the hook.
    """
    values = [torch.as_tensor(coefficients.get((layer, head), 1.0)) for head in range(layout.num_heads)]
    return torch.stack([v.reshape(()).float() for v in values]).repeat_interleave(layout.head_dim)


@contextmanager
def scaled_heads(layout: HeadLayout, coefficients: Mapping[HeadId, Tensor | float]) -> Iterator[None]:
    """Run the body with each listed head's output multiplied by its coefficient (the hook-based PEAR).

    The multipliers are rebuilt on every forward pass, so coefficients that an optimiser updates in place
    take effect at once.
    """
    layout.check(coefficients)

    def scale(layer: int, x: Tensor) -> Tensor:
        return x * head_multipliers(layout, coefficients, layer).to(x.device, x.dtype)

    with edit_head_inputs(layout, {layer: partial(scale, layer) for layer in {lay for lay, _ in coefficients}}):
        yield


@contextmanager
def mean_ablated(layout: HeadLayout, layer: int, head: int, mean: Tensor) -> Iterator[None]:
    """Run the body with head ``(layer, head)``'s output replaced by ``mean[columns]`` at every position.

    Args:
        layout: From :func:`head_layout`.
        layer: The head's layer.
        head: The head's index within the layer.
        mean: ``[heads * head_dim]``: that layer's ``o_proj`` input averaged over a clean batch's positions
            (:func:`record_layers`). Mean rather than zero ablation keeps the activation scale the later
            layers expect, so the change measures what the head *adds* to its average output.
    """
    layout.check([(layer, head)])
    columns = layout.columns(head)

    def ablate(x: Tensor) -> Tensor:
        x = x.clone()
        x[..., columns] = mean[columns].to(x.device, x.dtype)
        return x

    with edit_head_inputs(layout, {layer: ablate}):
        yield


@dataclass
class LayerRecord:
    """What a clean pass left behind (:func:`record_layers`).

    Attributes:
        outputs: Each decoder layer's output, exactly as the next layer received it.
        means: Each layer's ``o_proj`` input averaged over batch and positions, ``[heads * head_dim]``.
    """

    outputs: list[Any]
    means: list[Tensor]


@contextmanager
def record_layers(layout: HeadLayout) -> Iterator[LayerRecord]:
    """Record every layer's output and mean ``o_proj`` input during the body (run one forward pass in it)."""
    record = LayerRecord([None] * layout.num_layers, [torch.empty(0)] * layout.num_layers)

    def keep_mean(layer: int, x: Tensor) -> Tensor:
        record.means[layer] = x.detach().float().reshape(-1, x.shape[-1]).mean(dim=0)
        return x

    def keep_output(layer: int, _module: nn.Module, _args: Any, output: Any) -> None:
        record.outputs[layer] = output

    handles = [module.register_forward_hook(partial(keep_output, i)) for i, module in enumerate(layout.layers)]
    try:
        with edit_head_inputs(layout, {i: partial(keep_mean, i) for i in range(layout.num_layers)}):
            yield record
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def skip_layers(layout: HeadLayout, record: LayerRecord, upto: int) -> Iterator[None]:
    """Run the body with layers ``0 … upto-1`` returning their recorded outputs instead of computing them.

    Valid only for passes over the batch the record was made on, with nothing changed before layer
    ``upto``: then every later layer receives exactly the tensors a full pass would give it.
    """
    if any(output is None for output in record.outputs[:upto]):
        raise ValueError(f"no recorded output for some of layers 0..{upto - 1}: run a clean pass in record_layers")
    skipped = layout.layers[:upto]
    for module, output in zip(skipped, record.outputs, strict=False):
        module.__dict__["forward"] = partial(_recorded, output)  # an instance attribute shadows the class's forward
    try:
        yield
    finally:
        for module in skipped:
            module.__dict__.pop("forward", None)


def _recorded(output: Any, *_args: Any, **_kwargs: Any) -> Any:
    return output


@torch.no_grad()
def fold_coefficients(model: nn.Module, coefficients: Mapping[HeadId, float], layout: HeadLayout | None = None) -> None:
    """Multiply each head's ``o_proj`` weight columns by its coefficient, in place: PEAR with no hooks.

    The folded model is the original architecture with changed weights: save it with ``save_pretrained``
    and load it anywhere. Folding twice multiplies twice.

    Args:
        model: The decoder to change.
        coefficients: ``(layer, head)`` → scalar.
        layout: From :func:`head_layout` (found again when ``None``).
    """
    layout = layout or head_layout(model)
    layout.check(coefficients)
    for (layer, head), value in coefficients.items():
        layout.projections[layer].weight[:, layout.columns(head)] *= float(value)
