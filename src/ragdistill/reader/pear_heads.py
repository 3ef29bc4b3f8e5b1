"""Per-head access to a decoder's attention output, for PEAR: scale, mean-ablate or fold one head at a time.

Every decoder layer's attention ends with one projection of the heads' outputs laid side by side:
``out(concat_h head_h)``, head ``h`` in inputs ``h·d … (h+1)·d`` (``d`` = head dim). A forward pre-hook on that
projection that edits one slice of its input changes that head alone (the hook-based formulation), whatever
the model's position embedding (RoPE, learned, ALiBi): the position information is already inside the
heads' outputs. Multiplying the weights that read the slice by ``c`` does in the weights what a hook
scaling the slice by ``c`` does at run time: ``(c·x_h) W_hᵀ = x_h (c·W_h)ᵀ``. In an ``nn.Linear`` (weight
``[out, in]``) those are columns; in GPT-2's ``Conv1D`` (weight ``[in, out]``, ``y = x W + b``) they are rows.
Folding leaves the architecture, parameter count and cost unchanged.

The projections found (:data:`LAYOUTS`): ``layers.<i>.self_attn.o_proj`` (Llama, Mistral, Qwen, Gemma, OLMo,
Phi-3), ``h.<i>.attn.c_proj`` (GPT-2's ``Conv1D``; GPT-BigCode's ``nn.Linear``), ``layers.<i>.attention.dense``
(GPT-NeoX, Pythia), ``h.<i>.self_attention.dense`` (Falcon, BLOOM), ``blocks.<i>.attn.out_proj`` (MPT),
``layers.<i>.self_attn.out_proj`` (OPT), ``h.<i>.attn.out_proj`` (GPT-J), ``layers.<i>.self_attn.dense``
(Phi-1/2). Refused, with the reason in the message: encoder-decoder models, models without one of these
projections in every layer, projections that are not ``nn.Linear``/``Conv1D`` (quantised or fused ones),
widths that are not ``num_heads × head_dim``, and BLOOM's ``slow_but_exact`` tensor-parallel path (it
multiplies slices of the weight directly and never calls the module, so a hook would see nothing).

Head scoring needs one forward pass per head; a pass that only changes layer ``l`` need not recompute layers
``0 … l-1``: :func:`skip_layers` makes them return the outputs :func:`record_layers` kept from a clean pass
(exact: the same tensors), which halves the work on average.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn
from transformers.pytorch_utils import Conv1D

HeadId = tuple[int, int]
"""``(layer, head)``, both counted from 0."""

LAYOUTS: tuple[str, ...] = (
    "layers.<i>.self_attn.o_proj",
    "h.<i>.attn.c_proj",
    "layers.<i>.attention.dense",
    "h.<i>.self_attention.dense",
    "blocks.<i>.attn.out_proj",
    "layers.<i>.self_attn.out_proj",
    "h.<i>.attn.out_proj",
    "layers.<i>.self_attn.dense",
)
"""Module paths (below the model's layer stack) of the attention output projections PEAR can edit."""

_PROJECTION = re.compile(
    r"^(?P<layer>(?P<stack>(?:.*\.)?(?:layers|h|blocks))\.(?P<index>\d+))\."
    r"(?P<path>self_attn\.o_proj|attn\.c_proj|attention\.dense|self_attention\.dense|attn\.out_proj"
    r"|self_attn\.out_proj|self_attn\.dense)$"
)


@dataclass(frozen=True)
class HeadLayout:
    """Where each layer's heads meet: the decoder layers, their attention output projections, the head geometry.

    Attributes:
        layers: The decoder layers, in depth order.
        projections: Each layer's attention output projection (``nn.Linear`` or GPT-2's ``Conv1D``); its input
            is ``[..., num_heads * head_dim]``.
        num_heads: Query heads per layer (grouped-query models share key/value heads, not outputs).
        head_dim: Width of one head's output.
    """

    layers: tuple[nn.Module, ...]
    projections: tuple[nn.Module, ...]
    num_heads: int
    head_dim: int

    @property
    def num_layers(self) -> int:
        """Decoder layers."""
        return len(self.layers)

    def columns(self, head: int) -> slice:
        """The slice of the projection's input that belongs to ``head``."""
        if not 0 <= head < self.num_heads:
            raise ValueError(f"head {head} is out of range for {self.num_heads} heads per layer")
        return slice(head * self.head_dim, (head + 1) * self.head_dim)

    def head_weight(self, layer: int, head: int) -> Tensor:
        """The view of layer ``layer``'s projection weight that reads ``head``'s slice (scale it in place to fold).

        ``nn.Linear`` keeps ``[out, in]``: the head's columns. ``Conv1D`` keeps ``[in, out]``: its rows.
        """
        projection = self.projections[layer]
        weight: Tensor = projection.weight  # type: ignore[assignment]
        columns = self.columns(head)
        return weight[columns, :] if isinstance(projection, Conv1D) else weight[:, columns]

    def check(self, heads: Iterable[HeadId]) -> None:
        """Raise ``ValueError`` naming any ``(layer, head)`` outside this model."""
        bad = [
            (layer, head) for layer, head in heads if not (0 <= layer < self.num_layers and 0 <= head < self.num_heads)
        ]
        if bad:
            raise ValueError(f"heads {bad} are out of range for {self.num_layers} layers × {self.num_heads} heads")


def head_layout(model: nn.Module) -> HeadLayout:
    """Find each decoder layer's attention output projection (one of :data:`LAYOUTS`) and the head geometry.

    Args:
        model: A transformers decoder-only LM (``LlamaForCausalLM``, ``GPT2LMHeadModel``, ``BloomForCausalLM``, …).

    Returns:
        The layout; ``head_dim`` is ``config.head_dim`` where set (Gemma's differs from ``hidden // heads``).

    Raises:
        ValueError: One line naming the model class and why PEAR cannot edit its heads: an encoder-decoder
            model, no projection of a known layout in every layer (or several stacks of them), a projection
            that is not ``nn.Linear``/``Conv1D``, a width other than ``num_attention_heads × head_dim``, or
            BLOOM's ``slow_but_exact`` tensor-parallel path.
    """
    config = getattr(model, "config", None)
    architecture = f"{type(model).__name__} (model_type={getattr(config, 'model_type', None)!r})"
    if getattr(config, "is_encoder_decoder", False):
        raise ValueError(
            f"{architecture} is an encoder-decoder model: PEAR re-weights the heads of a decoder-only LM "
            "that reads its context in its own sequence"
        )
    if getattr(config, "pretraining_tp", 1) > 1 and getattr(config, "slow_but_exact", False):
        raise ValueError(
            f"{architecture} has slow_but_exact=True with pretraining_tp > 1: its attention multiplies slices of "
            "the output projection's weight directly, so PEAR's hooks would never see the heads (set it False)"
        )
    stack = _projection_stack(model, architecture, _text_config(config))
    layers = tuple(model.get_submodule(layer) for layer, _ in stack)
    projections = tuple(projection for _, projection in stack)
    for projection in projections:
        if not isinstance(projection, nn.Linear | Conv1D):
            raise ValueError(
                f"{architecture}: the attention output projection is a {type(projection).__name__}, not an "
                "nn.Linear or Conv1D, so PEAR cannot fold coefficients into its weight (quantised or fused?)"
            )
    heads, head_dim = _head_geometry(config)
    widths = {_in_features(projection) for projection in projections}
    if heads < 1 or widths != {heads * head_dim}:
        raise ValueError(
            f"{architecture}: the attention output projection takes {sorted(widths)} inputs, not "
            f"num_attention_heads ({heads}) × head_dim ({head_dim}); PEAR cannot tell its heads apart"
        )
    return HeadLayout(layers, projections, heads, head_dim)


def _projection_stack(model: nn.Module, architecture: str, text: Any) -> list[tuple[str, nn.Module]]:
    """``[(layer name, projection)]`` in depth order: the one stack of known projections covering 0 … L-1.

    Several stacks (a vision tower beside the text decoder) are told apart by the text config's
    ``num_hidden_layers``; ambiguity is refused rather than guessed.
    """
    stacks: dict[tuple[str, str], dict[int, tuple[str, nn.Module]]] = {}
    for name, module in model.named_modules():
        match = _PROJECTION.match(name)
        if match:
            stacks.setdefault((match["stack"], match["path"]), {})[int(match["index"])] = (match["layer"], module)
    complete = {key: found for key, found in stacks.items() if sorted(found) == list(range(len(found)))}
    if len(complete) > 1:
        depth = int(getattr(text, "num_hidden_layers", 0) or 0)
        complete = {key: found for key, found in complete.items() if len(found) == depth}
    if len(complete) != 1:
        found_names = sorted(f"{stack}.<i>.{path}" for stack, path in stacks) or ["none"]
        raise ValueError(
            f"{architecture} has no single stack of attention output projections PEAR knows (found "
            f"{', '.join(found_names)}; known: {', '.join(LAYOUTS)}): PEAR needs every decoder layer's heads "
            "side by side in the input of one linear projection"
        )
    found = next(iter(complete.values()))
    return [found[i] for i in range(len(found))]


def _in_features(projection: nn.Module) -> int:
    """Width of the projection's input: ``in_features`` of an ``nn.Linear``, ``nx`` of a ``Conv1D``."""
    if isinstance(projection, Conv1D):
        return int(projection.nx)
    return int(getattr(projection, "in_features", -1))


def _text_config(config: Any) -> Any:
    """The text decoder's config (multimodal configs nest it)."""
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def _head_geometry(config: Any) -> tuple[int, int]:
    """``(num_attention_heads, head_dim)`` of the text decoder; ``(0, 0)`` when the config does not say."""
    text = _text_config(config)
    heads = int(getattr(text, "num_attention_heads", 0) or 0)
    hidden = int(getattr(text, "hidden_size", 0) or 0)
    return heads, int(getattr(text, "head_dim", None) or (hidden // heads if heads else 0))


@contextmanager
def edit_head_inputs(layout: HeadLayout, edits: Mapping[int, Callable[[Tensor], Tensor]]) -> Iterator[None]:
    """Run the body with layer ``l``'s projection input replaced by ``edits[l](input)``; hooks removed after.

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
        mean: ``[heads * head_dim]``: that layer's projection input averaged over a clean batch's positions
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


@contextmanager
def record_final_inputs(layout: HeadLayout) -> Iterator[list[Tensor]]:
    """Record every layer's projection input at the last position, ``[B, heads * head_dim]`` each, during the body."""
    inputs = [torch.empty(0)] * layout.num_layers

    def keep(layer: int, x: Tensor) -> Tensor:
        inputs[layer] = x[:, -1].detach().clone()
        return x

    with edit_head_inputs(layout, {i: partial(keep, i) for i in range(layout.num_layers)}):
        yield inputs


@contextmanager
def final_position_ablated(
    layout: HeadLayout, layer: int, head: int, clean: Sequence[Tensor], freeze_others: bool
) -> Iterator[None]:
    """Run the body with head ``(layer, head)``'s output at the last position replaced by its batch mean there.

    The authors' path patching (arXiv 2409.19745, §3.1): the head's output at the final position becomes its
    mean over the batch's sequences at that position; with ``freeze_others`` every other head's output at
    that position is held at its clean value (:func:`record_final_inputs`), so the change reaches the logits
    only through the residual stream and the MLPs (the head's direct path), not through later heads.
    Earlier positions are untouched, so a pass over the last token alone (keys and values of the rest cached)
    is exact.

    Args:
        layout: From :func:`head_layout`.
        layer: The head's layer.
        head: The head's index within the layer.
        clean: Per layer, ``[B, heads * head_dim]``: the clean projection inputs at the last position.
        freeze_others: Hold every other head at its clean output (``direct``) instead of letting later heads
            react (``total``).
    """
    layout.check([(layer, head)])
    columns = layout.columns(head)
    mean = clean[layer][:, columns].float().mean(dim=0)

    def edit(frozen: Tensor | None, ablate: bool, x: Tensor) -> Tensor:
        x = x.clone()
        if frozen is not None:
            x[:, -1] = frozen.to(x.device, x.dtype)
        if ablate:
            x[:, -1, columns] = mean.to(x.device, x.dtype)
        return x

    later = range(layer, layout.num_layers) if freeze_others else [layer]
    edits = {i: partial(edit, clean[i] if freeze_others else None, i == layer) for i in later}
    with edit_head_inputs(layout, edits):
        yield


@dataclass
class LayerRecord:
    """What a clean pass left behind (:func:`record_layers`).

    Attributes:
        outputs: Each decoder layer's output, exactly as the next layer received it.
        means: Each layer's projection input averaged over batch and positions, ``[heads * head_dim]``.
    """

    outputs: list[Any]
    means: list[Tensor]


@contextmanager
def record_layers(layout: HeadLayout) -> Iterator[LayerRecord]:
    """Record every layer's output and mean projection input during the body (run one forward pass in it)."""
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
    """Multiply the projection weights that read each head's slice by its coefficient, in place: PEAR, no hooks.

    ``nn.Linear`` (weight ``[out, in]``): the head's columns; GPT-2's ``Conv1D`` (weight ``[in, out]``): its rows
    (:meth:`HeadLayout.head_weight`). The bias is shared by all heads and stays. The folded model is the
    original architecture with changed weights: save it with ``save_pretrained`` and load it anywhere.
    Folding twice multiplies twice.

    Args:
        model: The decoder to change.
        coefficients: ``(layer, head)`` → scalar.
        layout: From :func:`head_layout` (found again when ``None``).

    Raises:
        ValueError: For heads outside the model, or a projection whose weight is not floating point.
    """
    layout = layout or head_layout(model)
    layout.check(coefficients)
    for (layer, head), value in coefficients.items():
        weight = layout.head_weight(layer, head)
        if not weight.is_floating_point():
            raise ValueError(f"layer {layer}'s attention output weight is {weight.dtype}: PEAR folds float weights")
        weight *= float(value)
