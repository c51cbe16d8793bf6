"""The inspector: output shape, parameters and multiply-adds of every layer, for any model and input.

``summary(model, (1, 28, 28))`` runs one forward pass of zeros (evaluation mode, no gradients, on the
model's own device; the model's mode is restored) with hooks on every module and returns a
:class:`ModelSummary`; ``str()`` of it is an aligned table, or with ``style="notes"`` the notes' format
(``Conv2d output shape: torch.Size([1, 6, 28, 28])``), expanding ``nn.Sequential`` containers as the
notes' ``showModel`` does.

What is counted:
- parameters: each tensor once, on the first module that owns it to run (shared weights count once);
  a row shows the module's own parameters, plus all its descendants' when its children are not shown
  (depth limit), so the rows always add up to the total;
- multiply-adds (MACs): those of ``nn.Conv2d`` (output elements x in_channels/groups x kh x kw) and
  ``nn.Linear`` (output elements x in_features) for the whole input batch, every call counted. Biases,
  normalisation, activations, pooling and residual additions are not counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from convzoo.errors import ConvzooError
from convzoo.models._base import ConvNet

__all__ = ["LayerRecord", "ModelSummary", "ParameterRecord", "ParameterTable", "parameters_table", "summary"]


@dataclass
class LayerRecord:
    """One call of one module during the summary's forward pass."""

    name: str  # qualified name in the model ("features.0"); "" for the model itself
    type_name: str  # class name ("Conv2d")
    depth: int  # 0 for the model, 1 for its children, ...
    output_shape: tuple[int, ...]  # shape of the (first) output tensor, () if none
    num_params: int  # see the module docstring: own, or own plus descendants' when they are not shown
    macs: int  # multiply-adds, likewise aggregated when the children are not shown
    is_last: bool = False  # last shown child of its parent (for drawing the tree)
    parent: int | None = None  # index of the parent call in the full call list


@dataclass
class ModelSummary:
    """What :func:`summary` measured; ``str()`` renders it in its ``style``."""

    model_name: str
    input_size: tuple[int, ...]
    layers: list[LayerRecord]
    total_params: int
    trainable_params: int
    total_macs: int
    param_bytes: int
    style: str = "table"
    ancestors_last: list[list[bool]] = field(default_factory=list, repr=False)

    def __str__(self) -> str:
        return self.to_notes() if self.style == "notes" else self.to_table()

    def to_notes(self) -> str:
        """The notes' format: one ``Type output shape: torch.Size([...])`` line per layer."""
        return "\n".join(f"{r.type_name} output shape: {torch.Size(r.output_shape)}" for r in self.layers)

    def to_table(self) -> str:
        """An aligned table with a tree of layers, then the totals."""
        names = []
        for record, last_flags in zip(self.layers, self.ancestors_last, strict=True):
            if record.depth == 0:
                names.append(record.type_name)
                continue
            prefix = "".join("   " if last else "│  " for last in last_flags[1:])
            branch = "└─ " if record.is_last else "├─ "
            names.append(f"{prefix}{branch}{record.name.rsplit('.', 1)[-1]} ({record.type_name})")
        shapes = [str(list(r.output_shape)) for r in self.layers]
        params = [f"{r.num_params:,}" if r.num_params else "--" for r in self.layers]
        macs = [f"{r.macs:,}" if r.macs else "--" for r in self.layers]
        header = ("Layer (type)", "Output shape", "Param #", "Mult-adds")
        widths = [max(len(header[0]), *map(len, names)), max(len(header[1]), *map(len, shapes)),
                  max(len(header[2]), *map(len, params)), max(len(header[3]), *map(len, macs))]
        rule = "=" * (sum(widths) + 6)

        def row(cells: Sequence[str]) -> str:
            return (f"{cells[0]:<{widths[0]}}  {cells[1]:<{widths[1]}}  "
                    f"{cells[2]:>{widths[2]}}  {cells[3]:>{widths[3]}}").rstrip()

        lines = [rule, row(header), rule]
        lines += [row(cells) for cells in zip(names, shapes, params, macs, strict=True)]
        input_bytes = 4 * _numel(self.input_size)
        lines += [
            rule,
            f"Total params: {self.total_params:,}",
            f"Trainable params: {self.trainable_params:,}",
            f"Non-trainable params: {self.total_params - self.trainable_params:,}",
            f"Total mult-adds (M): {self.total_macs / 1e6:,.2f}",
            rule,
            f"Input size: {list(self.input_size)} ({input_bytes / 1e6:.2f} MB as float32)",
            f"Params size (MB): {self.param_bytes / 1e6:.2f}",
            rule,
        ]
        return "\n".join(lines)


def _numel(shape: Sequence[int]) -> int:
    n = 1
    for side in shape:
        n *= side
    return n


def _first_tensor(output: object) -> Tensor | None:
    if isinstance(output, Tensor):
        return output
    if isinstance(output, (tuple, list)):
        for item in output:
            found = _first_tensor(item)
            if found is not None:
                return found
    if isinstance(output, dict):
        return _first_tensor(list(output.values()))
    return None


def _macs(module: nn.Module, output: Tensor | None) -> int:
    if output is None:
        return 0
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        return output.numel() * (module.in_channels // module.groups) * kh * kw
    if isinstance(module, nn.Linear):
        return output.numel() * module.in_features
    return 0


def _input_shape(input_size: Sequence[int]) -> tuple[int, ...]:
    shape = tuple(input_size)
    if len(shape) == 3:
        shape = (1, *shape)  # C x H x W -> a batch of one
    if len(shape) != 4 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in shape):
        raise ConvzooError(
            f"input_size must be C x H x W or N x C x H x W with whole numbers >= 1, got {tuple(input_size)}"
        )
    return shape


@dataclass
class _Call:
    module: nn.Module
    name: str
    depth: int
    parent: int | None
    children: list[int] = field(default_factory=list)
    output_shape: tuple[int, ...] = ()
    own_params: int = 0
    own_macs: int = 0


def _trace(model: nn.Module, X: Tensor) -> list[_Call]:
    """Run ``model(X)`` with hooks on every module; the calls in the order they start."""
    names: dict[nn.Module, str] = {}
    for name, module in model.named_modules(remove_duplicate=False):
        names.setdefault(module, name)
    calls: list[_Call] = []
    stack: list[int] = []

    def pre_hook(module: nn.Module, args: object) -> None:
        parent = stack[-1] if stack else None
        calls.append(_Call(module, names.get(module, ""), len(stack), parent))
        if parent is not None:
            calls[parent].children.append(len(calls) - 1)
        stack.append(len(calls) - 1)

    def post_hook(module: nn.Module, args: object, output: object) -> None:
        call = calls[stack.pop()]
        tensor = _first_tensor(output)
        call.output_shape = tuple(tensor.shape) if tensor is not None else ()
        call.own_macs += _macs(module, tensor)

    handles = []
    for module in names:
        handles.append(module.register_forward_pre_hook(pre_hook))
        handles.append(module.register_forward_hook(post_hook))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(X)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return calls


def _notes_selection(calls: list[_Call], depth: int | None) -> list[int]:
    """The calls the notes' ``showModel`` prints: the network's top-level layers, ``nn.Sequential``s (their
    subclasses too, which iterate alike) expanded (all the way down, or ``depth`` levels below the top when
    given)."""
    root = calls[0]
    top: list[int] = []
    for child in root.children:  # a zoo model's features and head are the notes' one flat Sequential
        module = calls[child].module
        if isinstance(root.module, ConvNet) and isinstance(module, nn.Sequential):
            top += calls[child].children
        else:
            top.append(child)
    selected: list[int] = []

    def visit(index: int, level: int) -> None:
        call = calls[index]
        if isinstance(call.module, nn.Sequential) and call.children and (depth is None or level < depth):
            for child in call.children:
                visit(child, level + 1)
        else:
            selected.append(index)

    for index in top:
        visit(index, 1)
    return selected


def summary(
    model: nn.Module, input_size: Sequence[int], depth: int | None = None, style: str = "table"
) -> ModelSummary:
    """Inspect ``model`` on an input of ``input_size`` (C x H x W, or N x C x H x W).

    ``depth`` limits the rows to that many levels below the model (``None``: every layer); a row at the
    limit carries its whole subtree's parameters and multiply-adds. ``style`` is ``"table"`` or
    ``"notes"``.
    """
    if style not in ("table", "notes"):
        raise ConvzooError(f"style must be 'table' or 'notes', got {style!r}")
    if depth is not None and (isinstance(depth, bool) or not isinstance(depth, int) or depth < 1):
        raise ConvzooError(f"depth must be a whole number >= 1 or None, got {depth!r}")
    shape = _input_shape(input_size)
    tensors = [*model.parameters(), *model.buffers()]
    device = tensors[0].device if tensors else torch.device("cpu")
    dtype = next((t.dtype for t in tensors if t.is_floating_point()), torch.float32)
    if isinstance(model, ConvNet):
        model.input_range()  # derive the input range now, outside the traced pass
    calls = _trace(model, torch.zeros(shape, dtype=dtype, device=device))

    seen: set[int] = set()
    for call in calls:  # each parameter counted once, on the first module to run that owns it
        own = [p for p in call.module.parameters(recurse=False) if id(p) not in seen]
        seen.update(id(p) for p in own)
        call.own_params = sum(p.numel() for p in own)
    unique = list(model.parameters())
    total_params = sum(p.numel() for p in unique)
    trainable = sum(p.numel() for p in unique if p.requires_grad)
    param_bytes = sum(p.numel() * p.element_size() for p in unique)

    subtree_params = [0] * len(calls)
    subtree_macs = [0] * len(calls)
    for index in reversed(range(len(calls))):  # children start after their parent
        call = calls[index]
        subtree_params[index] = call.own_params + sum(subtree_params[c] for c in call.children)
        subtree_macs[index] = call.own_macs + sum(subtree_macs[c] for c in call.children)

    if style == "notes":
        shown = _notes_selection(calls, depth)
        leaf = set(shown)
    else:
        shown = [i for i, call in enumerate(calls) if depth is None or call.depth <= depth]
        leaf = {i for i in shown if not calls[i].children or calls[i].depth == depth}

    records, ancestors_last = [], []
    shown_set = set(shown)
    for index in shown:
        call = calls[index]
        siblings = [] if call.parent is None else [c for c in calls[call.parent].children if c in shown_set]
        is_last = bool(siblings) and siblings[-1] == index
        whole = index in leaf
        records.append(LayerRecord(
            name=call.name,
            type_name=type(call.module).__name__,
            depth=call.depth,
            output_shape=call.output_shape,
            num_params=subtree_params[index] if whole else call.own_params,
            macs=subtree_macs[index] if whole else call.own_macs,
            is_last=is_last,
            parent=call.parent,
        ))
        flags, parent = [], call.parent
        while parent is not None:  # is each ancestor the last of its siblings? (draws the tree's bars)
            grand = calls[parent].parent
            kids = [] if grand is None else [c for c in calls[grand].children if c in shown_set]
            flags.append(bool(kids) and kids[-1] == parent)
            parent = grand
        ancestors_last.append(list(reversed(flags)))

    counted = sum(r.num_params for r in records)
    if counted != total_params and style == "table" and total_params > counted:
        # parameters of modules that never ran (not used by forward): one row keeps the sums honest
        records.append(LayerRecord("(not run)", "(parameters not used in forward)", 1, (), total_params - counted,
                                   0, is_last=True))
        ancestors_last.append([True])
    return ModelSummary(
        model_name=getattr(model, "model_name", type(model).__name__),
        input_size=shape,
        layers=records,
        total_params=total_params,
        trainable_params=trainable,
        total_macs=sum(subtree_macs[i] for i, call in enumerate(calls) if call.parent is None),
        param_bytes=param_bytes,
        style=style,
        ancestors_last=ancestors_last,
    )


@dataclass(frozen=True)
class ParameterRecord:
    name: str
    shape: tuple[int, ...]
    numel: int
    trainable: bool


@dataclass
class ParameterTable:
    """``named_parameters`` of a model with shapes (notes 003); ``str()`` renders it aligned."""

    rows: list[ParameterRecord]

    @property
    def total(self) -> int:
        return sum(r.numel for r in self.rows)

    def __str__(self) -> str:
        shapes = [str(list(r.shape)) for r in self.rows]
        counts = [f"{r.numel:,}" for r in self.rows]
        header = ("Parameter", "Shape", "Count", "Trainable")
        w0 = max(len(header[0]), *(len(r.name) for r in self.rows)) if self.rows else len(header[0])
        w1 = max(len(header[1]), *map(len, shapes)) if self.rows else len(header[1])
        w2 = max(len(header[2]), *map(len, counts)) if self.rows else len(header[2])
        lines = [f"{header[0]:<{w0}}  {header[1]:<{w1}}  {header[2]:>{w2}}  {header[3]}"]
        for r, shape, count in zip(self.rows, shapes, counts, strict=True):
            lines.append(f"{r.name:<{w0}}  {shape:<{w1}}  {count:>{w2}}  {'yes' if r.trainable else 'no'}")
        trainable = sum(r.numel for r in self.rows if r.trainable)
        lines.append(f"{len(self.rows)} tensors, {self.total:,} parameters ({trainable:,} trainable)")
        return "\n".join(lines)


def parameters_table(model: nn.Module) -> ParameterTable:
    """Every named parameter of ``model`` with its shape and size, in registration order."""
    return ParameterTable([
        ParameterRecord(name, tuple(p.shape), p.numel(), p.requires_grad) for name, p in model.named_parameters()
    ])
