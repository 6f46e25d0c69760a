"""Small edits of converted ONNX graphs so every model has the same interface.

After these edits a model takes the inputs of its ``FeatureLayout`` and returns ``label`` ``[N, 1]`` (string or
int64) and ``probabilities`` ``[N, n_classes]`` float32: exactly the Triton tensors, batch dimension first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from converters.features import LABEL_OUTPUT, NUMERIC_INPUT, PROBABILITIES_OUTPUT

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
