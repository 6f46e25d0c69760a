"""Small edits of converted ONNX graphs so every model has the same interface.

After these edits a model takes the inputs of its ``FeatureLayout`` and returns ``label`` ``[N, 1]`` (string or
int64) and ``probabilities`` ``[N, n_classes]`` float32: exactly the Triton tensors, batch dimension first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tritonops.contract.names import LABEL_OUTPUT, NUMERIC_INPUT, PROBABILITIES_OUTPUT

BATCH = "N"


def _rename_everywhere(graph: onnx.GraphProto, old: str, new: str) -> None:
    if old == new:
        return
    for node in graph.node:
        node.input[:] = [new if name == old else name for name in node.input]
        node.output[:] = [new if name == old else name for name in node.output]
    for value in [*graph.input, *graph.output]:
        if value.name == old:
            value.name = new


def rename_tensor(model: onnx.ModelProto, old: str, new: str) -> None:
    """Rename a tensor (input, output or intermediate) wherever it appears."""
    _rename_everywhere(model.graph, old, new)


def rename_inputs(model: onnx.ModelProto, mapping: Mapping[str, str]) -> None:
    """Rename graph inputs (``old -> new``) wherever they are used."""
    for old, new in mapping.items():
        if old != new:
            _rename_everywhere(model.graph, old, new)


def merge_numeric_inputs(model: onnx.ModelProto, columns: Sequence[str]) -> None:
    """Replace per-column ``[N, 1]`` inputs by one ``input`` ``[N, len(columns)]`` matrix split into them."""
    graph = model.graph
    kept = [value for value in graph.input if value.name not in set(columns)]
    del graph.input[:]
    graph.input.extend([helper.make_tensor_value_info(NUMERIC_INPUT, TensorProto.FLOAT, [BATCH, len(columns)]), *kept])
    sizes = "tritonops_split_sizes"
    graph.initializer.append(numpy_helper.from_array(np.ones(len(columns), dtype=np.int64), sizes))
    graph.node.insert(0, helper.make_node("Split", [NUMERIC_INPUT, sizes], list(columns), axis=1))


def _output_type(model: onnx.ModelProto, name: str) -> int:
    for value in model.graph.output:
        if value.name == name:
            return int(value.type.tensor_type.elem_type)
    raise KeyError(name)


def label_as_column(model: onnx.ModelProto, label: str = LABEL_OUTPUT) -> None:
    """Turn the 1-D label output ``label`` into the ``label`` ``[N, 1]`` output."""
    elem_type = _output_type(model, label)
    flat = "tritonops_label_flat"
    _rename_everywhere(model.graph, label, flat)
    shape = "tritonops_label_shape"
    model.graph.initializer.append(numpy_helper.from_array(np.array([-1, 1], dtype=np.int64), shape))
    model.graph.node.append(helper.make_node("Reshape", [flat, shape], [LABEL_OUTPUT]))
    _replace_output(model, flat, helper.make_tensor_value_info(LABEL_OUTPUT, elem_type, [BATCH, 1]))


def classifier_head(model: onnx.ModelProto, scores: str, softmax: bool, classes: Sequence[str] | Sequence[int]) -> None:
    """Turn the ``scores`` ``[N, C]`` output into ``probabilities`` (softmax of logits, or as is) and ``label``.

    ``label`` is the arg-max (first maximum on ties, as ``torch.argmax``) looked up in ``classes``.
    """
    graph = model.graph
    if softmax:
        graph.node.append(helper.make_node("Softmax", [scores], [PROBABILITIES_OUTPUT], axis=1))
    else:
        graph.node.append(helper.make_node("Identity", [scores], [PROBABILITIES_OUTPUT]))
    index = "tritonops_label_index"
    graph.node.append(helper.make_node("ArgMax", [PROBABILITIES_OUTPUT], [index], axis=1, keepdims=0))
    _replace_output(
        model, scores, helper.make_tensor_value_info(PROBABILITIES_OUTPUT, TensorProto.FLOAT, [BATCH, len(classes)])
    )
    graph.output.append(helper.make_tensor_value_info(index, TensorProto.INT64, [BATCH]))
    labels_from_index(model, index, classes)


def labels_from_index(model: onnx.ModelProto, index_output: str, classes: Sequence[str] | Sequence[int]) -> None:
    """Map the int64 class-index output ``index_output`` ``[N]`` to the class names as ``label`` ``[N, 1]``."""
    table = "tritonops_classes"
    if all(isinstance(c, str) for c in classes):
        values = np.array(list(classes), dtype=object)
        elem_type = TensorProto.STRING
    else:
        values = np.array(list(classes), dtype=np.int64)
        elem_type = TensorProto.INT64
    model.graph.initializer.append(numpy_helper.from_array(values.reshape(-1, 1), table))
    # Gather rows of a [C, 1] table by an [N] index gives [N, 1] directly
    model.graph.node.append(helper.make_node("Gather", [table, index_output], [LABEL_OUTPUT], axis=0))
    _replace_output(model, index_output, helper.make_tensor_value_info(LABEL_OUTPUT, elem_type, [BATCH, 1]))


def _replace_output(model: onnx.ModelProto, old: str, new: onnx.ValueInfoProto) -> None:
    outputs = [new if value.name == old else value for value in model.graph.output]
    del model.graph.output[:]
    model.graph.output.extend(outputs)


def order_outputs(model: onnx.ModelProto) -> None:
    """Keep exactly ``label`` then ``probabilities`` as graph outputs."""
    by_name = {value.name: value for value in model.graph.output}
    del model.graph.output[:]
    model.graph.output.extend([by_name[LABEL_OUTPUT], by_name[PROBABILITIES_OUTPUT]])


def opset(model: onnx.ModelProto) -> int:
    """The default-domain opset the model was built for."""
    return max(int(entry.version) for entry in model.opset_import if entry.domain in ("", "ai.onnx"))


def deduplicate_opsets(model: onnx.ModelProto) -> None:
    """Keep one ``opset_import`` per domain (the highest), as ONNX checkers expect."""
    best: dict[str, int] = {}
    for entry in model.opset_import:
        best[entry.domain] = max(best.get(entry.domain, 0), int(entry.version))
    del model.opset_import[:]
    model.opset_import.extend([helper.make_opsetid(domain, version) for domain, version in best.items()])


def inputs_as_float32(model: onnx.ModelProto) -> None:
    """Make float64 graph inputs float32 (what Triton sends), cast to float64 inside the graph (exact)."""
    graph = model.graph
    casts = []
    for value in graph.input:
        tensor_type = value.type.tensor_type
        if tensor_type.elem_type != TensorProto.DOUBLE:
            continue
        inner = f"tritonops_f64_{value.name}"
        for node in graph.node:
            node.input[:] = [inner if name == value.name else name for name in node.input]
        tensor_type.elem_type = TensorProto.FLOAT
        casts.append(helper.make_node("Cast", [value.name], [inner], to=TensorProto.DOUBLE))
    for cast in reversed(casts):
        graph.node.insert(0, cast)


def join_stages(front: onnx.ModelProto, back: onnx.ModelProto, back_input: str) -> onnx.ModelProto:
    """One graph: ``front``'s single output, cast to float32, feeds ``back``'s input ``back_input``.

    ``back``'s tensors get a prefix so the two graphs' names can't collide; its outputs keep their names.
    """
    (link,) = [value.name for value in front.graph.output]
    prefix = "tritonops_stage2_"
    back = onnx.compose.add_prefix(back, prefix, rename_outputs=False)
    joined = onnx.ModelProto()
    joined.CopyFrom(front)
    graph = joined.graph
    graph.node.append(helper.make_node("Cast", [link], [prefix + back_input], to=TensorProto.FLOAT))
    graph.node.extend(back.graph.node)
    graph.initializer.extend(back.graph.initializer)
    graph.value_info.extend(back.graph.value_info)
    del graph.output[:]
    graph.output.extend(back.graph.output)
    joined.opset_import.extend(back.opset_import)
    joined.ir_version = max(front.ir_version, back.ir_version)
    deduplicate_opsets(joined)
    return joined


def imputers_as_where(model: onnx.ModelProto) -> None:
    """Rewrite ``ai.onnx.ml.Imputer`` nodes as ``Where(IsNaN(x) | x == v, fill, x)`` in float64.

    ONNX Runtime implements ``Imputer`` for float32 only; the float64 preprocessing stage needs this form.
    """
    graph = model.graph
    rewritten: list[onnx.NodeProto] = []
    for index, node in enumerate(graph.node):
        if node.op_type != "Imputer" or node.domain != "ai.onnx.ml":
            rewritten.append(node)
            continue
        attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        fill = np.asarray(attributes.get("imputed_value_floats", []), dtype=np.float64)
        missing = float(attributes.get("replaced_value_float", np.nan))
        base = f"tritonops_imputer{index}"
        graph.initializer.append(numpy_helper.from_array(fill.reshape(1, -1), f"{base}_fill"))
        (source,) = node.input
        (target,) = node.output
        if np.isnan(missing):
            rewritten.append(helper.make_node("IsNaN", [source], [f"{base}_mask"]))
        else:
            graph.initializer.append(numpy_helper.from_array(np.array(missing, dtype=np.float64), f"{base}_value"))
            rewritten.append(helper.make_node("Equal", [source, f"{base}_value"], [f"{base}_mask"]))
        rewritten.append(helper.make_node("Where", [f"{base}_mask", f"{base}_fill", source], [target]))
    del graph.node[:]
    graph.node.extend(rewritten)
