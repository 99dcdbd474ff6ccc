"""The one MLP builder every model uses: Linear -> LayerNorm -> activation (-> dropout) blocks.

LayerNorm rather than BatchNorm: statistics are per item, so a model trained on η–φ regions
behaves the same on a whole event, and inference does not depend on what else is in a batch.
"""

from __future__ import annotations

from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "silu": nn.SiLU, "gelu": nn.GELU, "tanh": nn.Tanh, "leakyrelu": nn.LeakyReLU}


def activation(name: str) -> nn.Module:
    try:
        return ACTIVATIONS[name.lower()]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; choose from {sorted(ACTIVATIONS)}") from None


def make_mlp(
    n_in: int,
    hidden: int,
    n_out: int,
    n_layers: int = 2,
    act: str = "silu",
    layer_norm: bool = True,
    dropout: float = 0.0,
    output_activation: str | None = None,
    output_norm: bool = False,
) -> nn.Sequential:
    """``n_layers`` hidden blocks of width ``hidden``, then a Linear to ``n_out``.

    ``output_norm``/``output_activation`` normalise and activate the output too, as the encoders
    and message networks of an interaction network want; a classifier head leaves both off.
    """
    layers: list[nn.Module] = []
    width = n_in
    for _ in range(n_layers):
        layers.append(nn.Linear(width, hidden))
        if layer_norm:
            layers.append(nn.LayerNorm(hidden))
        layers.append(activation(act))
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = hidden
    layers.append(nn.Linear(width, n_out))
    if output_norm and layer_norm:
        layers.append(nn.LayerNorm(n_out))
    if output_activation is not None:
        layers.append(activation(output_activation))
    return nn.Sequential(*layers)
