"""The zoo's data for the site: each model's registry entry and the inspector's rows, as JSON-ready dicts.

    entry = model_entry("lenet")   # registry metadata, summary totals, one row per layer, the shipped weights

The rows are :func:`convzoo.summary`'s records at the model's default input (every layer, the table style),
with the parent of each row as a row index, so that a page can draw them as a tree: a block's row carries its
own parameters and multiply-adds, its layers theirs, and the rows add up to the totals, as ``convzoo summary``
prints them. The model is built on PyTorch's ``meta`` device: shapes, parameter counts and multiply-adds need
no memory and no arithmetic (a VGG-19 at 224 pixels takes a tenth of a second instead of seconds), and the
inspector measures the same numbers there (tests/test_site.py compares them with a CPU-built model's).
"""

from __future__ import annotations

from typing import Any

import torch

from convzoo.inspector import ModelSummary, summary
from convzoo.models import create_model, list_weights, model_info

__all__ = ["diagram_blocks", "model_entry", "summary_rows"]


def summary_rows(result: ModelSummary) -> list[dict[str, Any]]:
    """One dict per row of ``result`` (a full, table-style summary): name, type, depth, parent row, output
    shape, parameters and multiply-adds, and the two number cells as ``convzoo summary`` prints them."""
    rows = []
    for index, record in enumerate(result.layers):
        parent = record.parent
        if parent is not None and (parent >= index or result.layers[parent].depth != record.depth - 1):
            raise AssertionError(f"row {index} of {result.model_name}: parent {parent} is not the row above it in "
                                 "the tree (a summary with a depth limit?)")
        rows.append({
            "name": record.name, "type": record.type_name, "depth": record.depth, "parent": parent,
            "shape": list(record.output_shape), "params": record.num_params, "macs": record.macs,
            "params_text": f"{record.num_params:,}" if record.num_params else "--",
            "macs_text": f"{record.macs:,}" if record.macs else "--",
            "leaf": index + 1 >= len(result.layers) or result.layers[index + 1].parent != index,
        })
    return rows


def diagram_blocks(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The blocks the diagram draws, in order: the input, each top-level child of ``features``, then each of
    the ``head`` (each with its type, output shape and the parameters of its whole subtree)."""
    subtree = [row["params"] for row in rows]
    for index in reversed(range(len(rows))):  # children come after their parent
        parent = rows[index]["parent"]
        if parent is not None and rows[parent]["depth"] >= 1:
            subtree[parent] += subtree[index]
    blocks = []
    for index, row in enumerate(rows):
        parent = row["parent"]
        if parent is None or rows[parent]["name"] not in ("features", "head"):
            continue
        blocks.append({"name": row["name"], "type": row["type"], "shape": row["shape"], "params": subtree[index],
                       "part": rows[parent]["name"]})
    return blocks


def model_entry(name: str) -> dict[str, Any]:
    """Everything the zoo index and the model page show about ``name``, from the registry and the inspector."""
    info = model_info(name)
    with torch.device("meta"):
        net = create_model(name)
    result = summary(net, info.default_input_size)
    rows = summary_rows(result)
    weights = [{"dataset": w.dataset, "accuracy": w.accuracy, "split": w.split, "split_size": w.split_size,
                "classes": list(w.classes), "input_size": list(w.input_size),
                "mean": None if w.mean is None else list(w.mean), "std": None if w.std is None else list(w.std),
                "command": w.command, "license": w.license, "file_size": w.file_size}
               for w in list_weights() if w.model == name]
    return {
        "name": name, "family": info.family, "paper": info.paper, "year": info.year, "notes": info.notes,
        "input_size": list(info.default_input_size), "min_input_size": list(info.min_input_size),
        "max_input_size": None if info.max_input_size is None else list(info.max_input_size),
        "num_params": info.num_params, "total_params": result.total_params,
        "trainable_params": result.trainable_params, "total_macs": result.total_macs,
        "param_bytes": result.param_bytes, "rows": rows, "blocks": diagram_blocks(rows), "weights": weights,
    }
