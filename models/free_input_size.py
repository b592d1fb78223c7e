"""Let a fixed-size segmentation graph take any input size that is a multiple of its stride.

The ISNet export bakes every upsampling target into the graph: each Resize takes its output
size from Concat(batch and channels of its input, a Constant (height, width)) measured at the
native 1024^2. Those targets are always the native size divided by a power of two, so at any
input whose sides are multiples of native / gcd(targets) (32 for ISNet) they are exactly
input_size * target / native. The rewrite computes them that way from the input's own shape,
so one session runs ISNet at the photo's aspect ratio: a 4:3 photo at 1024x768 costs three
quarters of the square's convolutions, and the subject is not stretched. The weights are also
widened to float32 here, so CPU kernels run without fp16<->fp32 casts around every layer.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class GraphNotResizable(ValueError):
    """The graph does not take its Resize sizes from constants; it only runs at its native size."""


@dataclass(frozen=True)
class FreeSizeGraph:
    model: bytes  # serialized ONNX model with symbolic height and width
    multiple: int  # input height and width must be multiples of this


def graph_with_free_input_size(model_path: Path, native_side: int) -> FreeSizeGraph:
    """Rewrite a square fixed-size model so it accepts (multiple*i x multiple*j) inputs, weights in float32."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(model_path))
    graph = model.graph
    input_name = graph.input[0].name
    producer = {output: node for node in graph.node for output in node.output}
    targets = []  # (Concat node, its constant's (h, w))
    for node in graph.node:
        if node.op_type != "Resize":
            continue
        sizes = producer.get(node.input[3]) if len(node.input) > 3 else None
        constant = producer.get(sizes.input[-1]) if sizes is not None and sizes.op_type == "Concat" else None
        if constant is None or constant.op_type != "Constant":
            raise GraphNotResizable(f"{node.name}: output size is not a constant")
        targets.append((sizes, numpy_helper.to_array(constant.attribute[0].t).astype(np.int64)))
    if not targets:
        raise GraphNotResizable("no Resize with constant sizes: nothing tells how the graph scales")

    divisor = math.gcd(*(int(v) for _, value in targets for v in value))
    if native_side % divisor:
        raise GraphNotResizable(f"resize sizes (gcd {divisor}) do not divide the native side {native_side}")
    multiple = native_side // divisor

    # input_hw = Shape(input)[2:4], computed once; each Resize target = input_hw * (h, w) / native.
    prefix = "free_size"
    new_nodes = [
        helper.make_node("Shape", [input_name], [f"{prefix}/shape"]),
        helper.make_node("Constant", [], [f"{prefix}/starts"], value=numpy_helper.from_array(np.array([2], np.int64))),
        helper.make_node("Constant", [], [f"{prefix}/ends"], value=numpy_helper.from_array(np.array([4], np.int64))),
        helper.make_node("Slice", [f"{prefix}/shape", f"{prefix}/starts", f"{prefix}/ends"], [f"{prefix}/hw"]),
        helper.make_node("Constant", [], [f"{prefix}/native"],
                         value=numpy_helper.from_array(np.array([native_side, native_side], np.int64))),
    ]
    for index, (concat, value) in enumerate(targets):
        name = f"{prefix}/{index}"
        new_nodes += [
            helper.make_node("Constant", [], [f"{name}/target"], value=numpy_helper.from_array(value)),
            helper.make_node("Mul", [f"{prefix}/hw", f"{name}/target"], [f"{name}/scaled"]),
            helper.make_node("Div", [f"{name}/scaled", f"{prefix}/native"], [f"{name}/hw"]),
        ]
        concat.input[len(concat.input) - 1] = f"{name}/hw"
    # Nodes must stay topologically sorted: the size computations go first (they read only the input).
    used = {name for node in graph.node for name in node.input}
    kept = [node for node in graph.node if node.op_type != "Constant" or node.output[0] in used]
    nodes = new_nodes + kept
    del graph.node[:]
    graph.node.extend(nodes)

    for initializer in graph.initializer:
        if initializer.data_type == TensorProto.FLOAT16:
            widened = numpy_helper.to_array(initializer).astype(np.float32)
            initializer.CopyFrom(numpy_helper.from_array(widened, initializer.name))
    for node in graph.node:
        for attribute in node.attribute:
            if node.op_type == "Cast" and attribute.name == "to" and attribute.i == TensorProto.FLOAT16:
                attribute.i = TensorProto.FLOAT
            if node.op_type == "Constant" and attribute.t.data_type == TensorProto.FLOAT16:
                widened = numpy_helper.to_array(attribute.t).astype(np.float32)
                attribute.t.CopyFrom(numpy_helper.from_array(widened, attribute.t.name))
    for value_info in list(graph.input) + list(graph.output):
        tensor_type = value_info.type.tensor_type
        if tensor_type.elem_type == TensorProto.FLOAT16:
            tensor_type.elem_type = TensorProto.FLOAT
        for dim, symbol in zip(tensor_type.shape.dim[2:], ("height", "width")):
            dim.dim_param = symbol  # let the runtime infer spatial sizes afresh
    del graph.value_info[:]  # shapes recorded for the native size would now be wrong
    return FreeSizeGraph(model.SerializeToString(), multiple)
