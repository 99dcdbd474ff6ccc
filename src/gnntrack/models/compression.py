"""Compression of the edge classifiers' MLPs: magnitude pruning (unstructured and whole hidden
units) and int8 dynamic quantisation of the Linear layers for CPU inference.

Unstructured pruning zeroes the smallest-magnitude weights of the Linear layers (biases and
LayerNorms are left alone), either over all Linear weights at once (``scope="global"``) or to the
same sparsity in every layer (``scope="layer"``). ``MaskKeeper`` keeps the zeroes through
training: it masks the weights' gradients (so Adam's moments of a pruned weight stay zero) and
re-applies the masks after every optimiser step. The model is stored dense with zeroes, so its
file loads and exports like any other.

Structured pruning removes whole hidden units of an MLP block: the row of the block's Linear,
its LayerNorm entries and the matching column of the next Linear. The result is a genuinely
narrower model, rebuilt from its config with per-block ``widths``; its file loads with the
ordinary loader. ``prune_units`` narrows the hidden blocks inside each MLP; ``prune_latent``
(interaction GNN) narrows the latent width between the networks (``hidden``: node and edge states,
residual sums), on which the gathers, scatters and LayerNorms work, so only the two together cut
those costs too. Because LayerNorm normalises
over the block, removing a unit is not the same function as zeroing it: the pruned model is
retrained (learning-rate rewinding, ``gnntrack.edge_classification.compression``).

Int8: ``quantize_int8`` replaces every Linear by torch.ao's dynamically quantised Linear (int8
per-channel weights, activations quantised per call) and ``PairMLP`` by a form that keeps its
no-concatenation trick with three quantised column blocks. LayerNorm, activations, gathers and
scatters stay in float.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
from torch import nn

from .mlp import PairMLP

# -- unstructured magnitude pruning --------------------------------------------------------------


def linear_layers(model: nn.Module) -> dict[str, nn.Linear]:
    """Every Linear of ``model`` by module name: what pruning and quantisation act on."""
    return {name: m for name, m in model.named_modules() if isinstance(m, nn.Linear)}


def magnitude_masks(model: nn.Module, sparsity: float, scope: str = "global") -> dict[str, torch.Tensor]:
    """Boolean keep-masks of every Linear weight so that a fraction ``sparsity`` of them is zero.

    ``global``: one magnitude threshold over all Linear weights; ``layer``: each layer to
    ``sparsity`` on its own. Weights already zero are pruned first, so masks of successive
    rounds are nested. Ties at the threshold are broken by position (exactly ``round(sparsity *
    n)`` weights are pruned).
    """
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), not {sparsity}")
    layers = linear_layers(model)
    if scope not in ("global", "layer"):
        raise ValueError(f"scope must be 'global' or 'layer', not {scope!r}")
    groups = [list(layers)] if scope == "global" else [[n] for n in layers]
    masks = {}
    for names in groups:
        flat = torch.cat([layers[n].weight.detach().abs().reshape(-1) for n in names])
        n_prune = int(round(sparsity * flat.numel()))
        keep = torch.ones(flat.numel(), dtype=torch.bool, device=flat.device)
        if n_prune > 0:
            keep[torch.argsort(flat, stable=True)[:n_prune]] = False
        start = 0
        for n in names:
            w = layers[n].weight
            masks[n] = keep[start : start + w.numel()].reshape(w.shape).clone()
            start += w.numel()
    return masks


@torch.no_grad()
def apply_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    layers = linear_layers(model)
    for name, mask in masks.items():
        w = layers[name].weight
        w.mul_(mask.to(w.device, w.dtype))


def weight_sparsity(model: nn.Module) -> dict:
    """Fraction of zero Linear weights: ``global`` over all of them, and per layer."""
    layers = linear_layers(model)
    zeros = {n: int((m.weight == 0).sum()) for n, m in layers.items()}
    sizes = {n: m.weight.numel() for n, m in layers.items()}
    total = sum(sizes.values())
    return {
        "global": sum(zeros.values()) / total if total else 0.0,
        "layers": {n: zeros[n] / sizes[n] for n in layers},
        "linear_weights": total,
    }


class MaskKeeper:
    """Keeps pruned weights at zero while an optimiser trains the model.

    ``attach(optimizer)`` masks every pruned weight's gradient (a hook on the parameter) and
    re-applies the masks after each ``optimizer.step()``; ``detach()`` removes both hooks.
    """

    def __init__(self, model: nn.Module, masks: dict[str, torch.Tensor]):
        self.model = model
        self.masks = masks
        self._handles: list = []

    def attach(self, optimizer: torch.optim.Optimizer) -> MaskKeeper:
        self.detach()
        apply_masks(self.model, self.masks)
        layers = linear_layers(self.model)
        for name, mask in self.masks.items():
            w = layers[name].weight
            m = mask.to(w.device)
            self._handles.append(w.register_hook(lambda g, m=m: g * m.to(g.dtype)))
        self._handles.append(
            optimizer.register_step_post_hook(lambda *_: apply_masks(self.model, self.masks))
        )
        return self

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []


# -- structured pruning: whole hidden units ------------------------------------------------------


def _rebuilt(model: nn.Module, config: dict, state: dict) -> nn.Module:
    """A new model of ``model``'s class from ``config`` with the (cut) ``state``: its working point,
    device and train/eval mode carried over."""
    new = type(model)(**config)
    new.load_state_dict(state)
    for attr in ("score_cut",):
        if hasattr(model, attr):
            setattr(new, attr, getattr(model, attr))
    return new.to(next(model.parameters()).device).train(model.training)


def hidden_blocks(model: nn.Module) -> list[tuple[str, int, int]]:
    """(MLP name, position of the block's Linear, position of the next Linear) of every hidden
    block whose width the model's ``widths`` config can set (all but each MLP's output Linear), less
    the model's ``fixed_blocks`` (a context filter's edge latent, which its context MLPs read)."""
    fixed = set(getattr(model, "fixed_blocks", ()))  # widths other networks read (a context filter)
    out = []
    for name, m in model.named_modules():
        if not isinstance(m, nn.Sequential):
            continue
        pos = [i for i, layer in enumerate(m) if isinstance(layer, nn.Linear)]
        out += [(name, a, b) for a, b in zip(pos[:-1], pos[1:]) if f"{name}.{a}" not in fixed]
    return out


def unit_importance(mlp: nn.Sequential, a: int, b: int) -> torch.Tensor:
    """Importance of each hidden unit of the block at ``a``: the L2 norm of its outgoing weights
    (column of the next Linear) times the size of what it sends them (|LayerNorm gain| + |bias|
    after a LayerNorm, the L2 norm of its incoming weights without one)."""
    out_norm = mlp[b].weight.detach().norm(dim=0)
    ln = mlp[a + 1] if a + 1 < len(mlp) and isinstance(mlp[a + 1], nn.LayerNorm) else None
    if ln is not None and ln.weight is not None:
        return out_norm * (ln.weight.detach().abs() + ln.bias.detach().abs())
    return out_norm * mlp[a].weight.detach().norm(dim=1)


def prune_units(model: nn.Module, fraction: float, original_width: int | None = None) -> nn.Module:
    """A new, narrower model: each hidden block keeps its ``round((1 - fraction) * width)`` most
    important units (``unit_importance``; at least one), ``width`` being ``original_width`` (the
    unpruned width, so successive rounds reach ``fraction`` of the original) or the block's
    current width. The model's class is rebuilt from its config with the new ``widths`` and
    given the kept rows/columns; the input model is left unchanged.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must be in [0, 1), not {fraction}")
    config = dict(model.config)
    widths = dict(config.get("widths") or {})
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    modules = dict(model.named_modules())
    for mlp_name, a, b in hidden_blocks(model):
        mlp = modules[mlp_name]
        width = mlp[a].out_features
        base = original_width if original_width is not None else width
        keep_n = max(1, min(width, int(round((1.0 - fraction) * base))))
        if keep_n == width:
            continue
        keep = torch.sort(
            torch.argsort(unit_importance(mlp, a, b), descending=True, stable=True)[:keep_n]
        ).values
        prefix = f"{mlp_name}." if mlp_name else ""
        state[f"{prefix}{a}.weight"] = state[f"{prefix}{a}.weight"][keep]
        state[f"{prefix}{a}.bias"] = state[f"{prefix}{a}.bias"][keep]
        if isinstance(mlp[a + 1], nn.LayerNorm):
            for p in ("weight", "bias"):
                if f"{prefix}{a + 1}.{p}" in state:
                    state[f"{prefix}{a + 1}.{p}"] = state[f"{prefix}{a + 1}.{p}"][keep]
        state[f"{prefix}{b}.weight"] = state[f"{prefix}{b}.weight"][:, keep]
        widths[f"{mlp_name}.{a}"] = keep_n
    hidden = config.get("hidden")
    defaults = getattr(model, "block_defaults", {})  # MLP name -> its blocks' unpruned width
    # only where it differs from what the config builds without it
    config["widths"] = {k: w for k, w in widths.items() if w != defaults.get(k.rsplit(".", 1)[0], hidden)}
    return _rebuilt(model, config, state)


def _latent_layout(model: nn.Module) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Where an ``InteractionGNN``'s latent channels are made and read: {MLP name: "n"|"e"} of the
    MLPs whose output is a node or edge latent, and {MLP name: labels of the hidden-sized column
    blocks of its first Linear} ("n" node latent, "e" edge latent; the edge encoder's geometric
    feature columns follow its two node blocks and are not latent)."""
    cfg = model.config
    c = 2 if cfg.get("concat_inputs") else 1
    n_steps = 1 if cfg.get("recurrent", True) else int(cfg["n_graph_iters"])
    makes = {"node_encoder": "n", "edge_encoder": "e"}
    reads = {
        "edge_encoder": ["n", "n"],
        "decoder": ["e"] if cfg.get("decoder") == "edge" else ["n", "n", "e"],
    }
    for k in range(n_steps):
        makes[f"steps.{k}.node_net"], makes[f"steps.{k}.edge_net"] = "n", "e"
        reads[f"steps.{k}.node_net"] = ["n"] * c + ["e", "e"]
        reads[f"steps.{k}.edge_net"] = ["n"] * (2 * c) + ["e"] * c
    return makes, reads


def _linears(mlp: nn.Sequential) -> list[int]:
    return [i for i, layer in enumerate(mlp) if isinstance(layer, nn.Linear)]


def latent_importance(model: nn.Module) -> dict[str, torch.Tensor]:
    """Importance of each node ("n") and edge ("e") latent channel of an ``InteractionGNN``: the
    summed L2 norms of the columns that read it (every first Linear fed with that latent) times
    the mean size of what its producers write (|LayerNorm gain| + |bias| of the producing MLPs'
    output LayerNorm, the L2 norm of their output rows without one). A channel nothing reads
    scores 0."""
    makes, reads = _latent_layout(model)
    hidden = int(model.config["hidden"])
    modules = dict(model.named_modules())
    read = {k: torch.zeros(hidden) for k in "ne"}
    for name, labels in reads.items():
        w = modules[name][0].weight.detach()
        for b, label in enumerate(labels):
            read[label] += w[:, b * hidden : (b + 1) * hidden].norm(dim=0)
    made = {k: [] for k in "ne"}
    for name, label in makes.items():
        mlp = modules[name]
        last = _linears(mlp)[-1]
        ln = mlp[last + 1] if last + 1 < len(mlp) and isinstance(mlp[last + 1], nn.LayerNorm) else None
        if ln is not None and ln.weight is not None:
            made[label].append(ln.weight.detach().abs() + ln.bias.detach().abs())
        else:
            made[label].append(mlp[last].weight.detach().norm(dim=1))
    return {k: read[k] * torch.stack(made[k]).mean(0) for k in "ne"}


def prune_latent(model: nn.Module, fraction: float, original_width: int | None = None) -> nn.Module:
    """A new ``InteractionGNN`` whose node and edge latents (the states between the networks,
    ``hidden``) keep their ``round((1 - fraction) * width)`` most important channels
    (``latent_importance``; ``width`` = ``original_width`` or the current ``hidden``): the rows
    of every Linear (and output LayerNorm) that writes a latent and the columns of every Linear
    that reads one are cut to the kept channels. Hidden blocks inside the MLPs keep their widths
    (``widths`` records them where they differ from the new ``hidden``); ``prune_units`` narrows
    those. Only the latents' own channels are removed, so gathers, scatters and LayerNorms on
    them shrink too, which ``prune_units`` alone does not buy. The input model is left unchanged.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must be in [0, 1), not {fraction}")
    if "n_graph_iters" not in model.config:
        raise ValueError(f"latent pruning needs an InteractionGNN, not {type(model).__name__}")
    hidden = int(model.config["hidden"])
    base = original_width if original_width is not None else hidden
    keep_n = max(1, min(hidden, int(round((1.0 - fraction) * base))))
    if keep_n == hidden:
        return copy.deepcopy(model)
    imp = latent_importance(model)
    keep = {
        k: torch.sort(torch.argsort(v, descending=True, stable=True)[:keep_n]).values for k, v in imp.items()
    }
    makes, reads = _latent_layout(model)
    config = dict(model.config)
    modules = dict(model.named_modules())
    widths = {}
    for mlp_name, a, _ in hidden_blocks(model):
        widths[f"{mlp_name}.{a}"] = modules[mlp_name][a].out_features
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    for name, labels in reads.items():
        w = state[f"{name}.0.weight"]
        cols = [keep[label] + b * hidden for b, label in enumerate(labels)]
        cols.append(torch.arange(len(labels) * hidden, w.shape[1]))  # non-latent tail (edge features)
        state[f"{name}.0.weight"] = w[:, torch.cat(cols)]
    for name, label in makes.items():
        last = _linears(modules[name])[-1]
        for pos in (last, last + 1):  # output Linear, then its LayerNorm when there is one
            for p in ("weight", "bias"):
                key = f"{name}.{pos}.{p}"
                if key in state and (pos == last or isinstance(modules[name][pos], nn.LayerNorm)):
                    state[key] = state[key][keep[label]]
    config["hidden"] = keep_n
    config["widths"] = {k: w for k, w in widths.items() if w != keep_n}
    return _rebuilt(model, config, state)


# -- cost ----------------------------------------------------------------------------------------


def count_parameters(model: nn.Module, nonzero: bool = False) -> int:
    return int(sum(int((p != 0).sum()) if nonzero else p.numel() for p in model.parameters()))


def linear_flops(model: nn.Module, n_nodes: int, n_edges: int, sparse: bool = False) -> int:
    """Multiply-adds x 2 of the Linear layers of one forward pass of an edge classifier on a graph
    of ``n_nodes`` hits and ``n_edges`` edges (LayerNorm, activations, gathers and scatters not
    counted). Node networks run once per node, edge networks once per edge; a ``PairMLP``'s first
    Linear runs its two node column blocks per node and its edge block per edge. ``sparse``
    counts non-zero weights only (what a sparse kernel would do; dense CPU kernels do not)."""
    n_iters = getattr(model, "n_graph_iters", 1)
    recurrent = getattr(model, "recurrent", True)

    def cost(w: torch.Tensor, rows: int) -> int:
        n = int((w != 0).sum()) if sparse else w.numel()
        return 2 * n * rows

    pair_nodes = _pair_node_widths(model)
    total = 0
    for name, mlp in model.named_modules():
        if not isinstance(mlp, nn.Sequential):
            continue
        repeat = n_iters if name.startswith("steps.") and recurrent else 1
        per_edge = "edge" in name.rsplit(".", 1)[-1] or name in ("decoder", "net")
        linears = [m for m in mlp if isinstance(m, nn.Linear)]
        for i, lin in enumerate(linears):
            w = lin.weight.detach()
            if i == 0 and isinstance(mlp, PairMLP) and name in pair_nodes:
                node_cols = 2 * pair_nodes[name]  # source and target blocks: once per node
                total += repeat * (cost(w[:, :node_cols], n_nodes) + cost(w[:, node_cols:], n_edges))
            else:
                total += repeat * cost(w, n_edges if per_edge else n_nodes)
    return total


# -- int8 dynamic quantisation -------------------------------------------------------------------


class QuantPairMLP(nn.Module):
    """``PairMLP`` with its first Linear split into three column blocks (source nodes, target
    nodes, edge), each dynamically quantised, so the int8 model still never builds the
    (E, 2H + F) concatenation. ``node_width``: width of the node states fed to ``pairs``."""

    def __init__(self, pair: PairMLP, node_width: int):
        super().__init__()
        first = pair[0]
        w, bias = first.weight.detach(), first.bias.detach()
        n = self.node_width = int(node_width)

        def linear(cols: slice, with_bias: bool) -> nn.Linear:
            block = w[:, cols]
            lin = nn.Linear(block.shape[1], block.shape[0], bias=with_bias)
            with torch.no_grad():
                lin.weight.copy_(block)
                if with_bias:
                    lin.bias.copy_(bias)
            return lin

        self.src = linear(slice(0, n), False)
        self.dst = linear(slice(n, 2 * n), False)
        self.edge = linear(slice(2 * n, w.shape[1]), True)
        self.rest = nn.Sequential(*list(pair)[1:])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        n = self.node_width
        return self.rest(self.src(z[:, :n]) + self.dst(z[:, n : 2 * n]) + self.edge(z[:, 2 * n :]))

    def pairs(self, h: torch.Tensor, src: torch.Tensor, dst: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        z = self.src(h).index_select(0, src)
        z = z + self.dst(h).index_select(0, dst)
        z = z + self.edge(e)
        return self.rest(z)


def _pair_node_widths(model: nn.Module) -> dict[str, int]:
    """Width of the node states each ``PairMLP`` of an edge classifier pairs (by module name): an
    interaction GNN's encoder, decoder and message networks, a context filter's ``edge_net``."""
    cfg = getattr(model, "config", {})
    if "context_hidden" in cfg:  # FilterModel
        return {"edge_net": int(cfg["context_hidden"])} if cfg["context_hidden"] else {}
    hidden = int(cfg.get("hidden", 0))
    c = 2 if cfg.get("concat_inputs") else 1
    out = {"edge_encoder": hidden}
    if cfg.get("decoder", "pair") == "pair":
        out["decoder"] = hidden
    for name, m in model.named_modules():
        if isinstance(m, PairMLP) and name.startswith("steps."):
            out[name] = c * hidden
    return out


def quantize_int8(model: nn.Module) -> nn.Module:
    """An int8 copy of an edge classifier for CPU inference: torch.ao dynamic quantisation of every
    Linear (int8 weights, activations quantised per call; see the module docstring). The input
    model is left unchanged; the copy is in eval mode on the CPU and has ``quantization``."""
    from torch.ao.quantization import quantize_dynamic

    q = copy.deepcopy(model).cpu().float().eval()
    widths = _pair_node_widths(q)
    for name, m in list(q.named_modules()):
        if isinstance(m, PairMLP):
            parent_name, _, attr = name.rpartition(".")
            parent = q.get_submodule(parent_name) if parent_name else q
            # the edge decoder classifies the edge latent alone: a plain MLP
            new = QuantPairMLP(m, widths[name]) if name in widths else nn.Sequential(*m)
            setattr(parent, attr, new)
    q = quantize_dynamic(q, {nn.Linear}, dtype=torch.qint8)
    q.quantization = {"bits": 8, "scheme": "torch.ao dynamic: int8 weights, activations quantised per call"}
    return q


def compression_metadata(model: nn.Module, extra: Iterable[tuple[str, object]] = ()) -> dict:
    """What a compressed model file records: parameters, Linear sparsity, widths."""
    sp = weight_sparsity(model)
    meta = {
        "parameters": count_parameters(model),
        "nonzero_parameters": count_parameters(model, nonzero=True),
        "linear_sparsity": sp["global"],
        "linear_sparsity_per_layer": sp["layers"],
        "widths": dict(getattr(model, "config", {}).get("widths") or {}),
    }
    meta.update(dict(extra))
    return meta


__all__ = [
    "MaskKeeper",
    "QuantPairMLP",
    "apply_masks",
    "compression_metadata",
    "count_parameters",
    "hidden_blocks",
    "linear_flops",
    "linear_layers",
    "magnitude_masks",
    "prune_units",
    "quantize_int8",
    "unit_importance",
    "weight_sparsity",
]
