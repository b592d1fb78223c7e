"""Run an ONNX graph as a torch module: ISNet (and the person matte, RVM) on the GPU without onnxruntime.

ISNet and U^2-Net-p use a handful of operators (Conv, Relu, MaxPool, Resize, Concat, Add, Sigmoid,
Cast and the Shape/Slice/Gather/Unsqueeze/Mul/Div arithmetic feeding Resize); RVM adds MobileNetV3's
(HardSigmoid, pooling, Split, Expand of its recurrent state, Tanh, Clip). Interpreting them
directly with torch.nn.functional keeps the weights identical to the onnxruntime path and needs
neither onnx2torch nor torchvision (which must match the installed torch exactly). Weights load
once; `Cast` nodes map to the module's compute dtype, so the same graph runs in fp16 on a GPU and
fp32 on a CPU.

Two things keep it fit for a GPU: integer constants (the size arithmetic) stay on the host, so
reading a Resize target never waits for the GPU and the forward pass can be captured in a CUDA
graph; and each intermediate is dropped after its last reader, so a batch of 64 holds only the
activations still needed rather than all of them.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

SUPPORTED = {"Constant", "Conv", "Relu", "Cast", "Concat", "Shape", "Slice", "Resize", "MaxPool", "Add", "Sigmoid",
             "Gather", "Unsqueeze", "Mul", "Div", "Sub", "HardSigmoid", "GlobalAveragePool", "AveragePool", "Split",
             "Expand", "Tanh", "ReduceMean", "Clip"}
# Ops a Resize's scales are computed through: the values feeding them there stay on the host too.
_SIZE_ARITHMETIC = {"Concat", "Cast", "Slice", "Gather", "Unsqueeze", "Mul", "Div"}


def _attributes(node) -> dict:
    from onnx import helper

    return {attribute.name: helper.get_attribute_value(attribute) for attribute in node.attribute}


class OnnxGraphModule(torch.nn.Module):
    def __init__(self, model: Path | str | bytes, output_name: str | None = None) -> None:
        """model: an ONNX file, or a serialized model (pipeline/free_input_size's rewrite).

        forward(x, **inputs): x is the graph's first input; a graph with more inputs (RVM's recurrent
        state and downsample ratio) takes them by name."""
        super().__init__()
        import onnx
        from onnx import numpy_helper

        model = onnx.load_from_string(model) if isinstance(model, bytes) else onnx.load(str(model))
        graph = model.graph
        unsupported = {node.op_type for node in graph.node} - SUPPORTED
        if unsupported:
            raise ValueError(f"operators not supported by the torch interpreter: {sorted(unsupported)}")
        initializers = {initializer.name for initializer in graph.initializer}
        self.input_names = [value.name for value in graph.input if value.name not in initializers]
        self.input_name = self.input_names[0]
        self.output_name = output_name or graph.output[0].name
        self._names: dict[str, str] = {}
        # Integer constants and float resize scales: never moved to the GPU (no wait to read a size).
        self._host_constants: dict[str, torch.Tensor] = {}
        self._scales = self._resize_scales(graph)
        for initializer in graph.initializer:
            self._add_constant(initializer.name, numpy_helper.to_array(initializer))
        self.nodes: list[tuple[str, list[str], list[str], dict]] = []
        for node in graph.node:
            attributes = _attributes(node)
            if node.op_type == "Constant":
                self._add_constant(node.output[0], numpy_helper.to_array(attributes["value"]))
                continue
            if node.op_type == "Cast" and node.output[0] in self._scales:
                attributes["_scale"] = True  # a resize scale stays float32 on the host
            self.nodes.append((node.op_type, list(node.input), list(node.output), attributes))
        self.nodes = self._prune(self._topological(self.nodes))
        self._released_after = self._last_uses()
        self.compute_dtype = torch.float32

    @staticmethod
    def _resize_scales(graph) -> set[str]:
        """Names of the values Resize's roi and scales are computed from (floats, but sizes)."""
        wanted = {name for node in graph.node if node.op_type == "Resize" for name in node.input[1:3] if name}
        producers = {output: node for node in graph.node for output in node.output}
        pending = list(wanted)
        while pending:
            node = producers.get(pending.pop())
            if node is not None and node.op_type in _SIZE_ARITHMETIC:
                for name in node.input:
                    if name and name not in wanted:
                        wanted.add(name)
                        pending.append(name)
        return wanted

    def _add_constant(self, name: str, array: np.ndarray) -> None:
        tensor = torch.from_numpy(np.array(array))
        if not tensor.is_floating_point() or name in self._scales:
            self._host_constants[name] = tensor
            return
        buffer_name = f"c{len(self._names)}"
        # Stored fp32; `to(dtype)` of the module converts for fp16 runs.
        self.register_buffer(buffer_name, tensor.float(), persistent=False)
        self._names[name] = buffer_name

    def _last_uses(self) -> list[list[str]]:
        """For each node, the intermediates no later node reads (dropped right after it runs)."""
        last: dict[str, int] = {}
        for index, (_, inputs, _, _) in enumerate(self.nodes):
            for name in inputs:
                if name and name not in self._names and name not in self._host_constants:
                    last[name] = index
        released: list[list[str]] = [[] for _ in self.nodes]
        for name, index in last.items():
            if name != self.output_name and name not in self.input_names:  # inputs: the caller holds them
                released[index].append(name)
        return released

    def _topological(self, nodes):
        """fp16-converted graphs append their Cast nodes at the end: put every node after its inputs."""
        available = set(self._names) | set(self._host_constants) | set(self.input_names) | {""}
        ordered, pending = [], list(nodes)
        while pending:
            ready = [node for node in pending if all(name in available for name in node[1])]
            if not ready:
                raise ValueError("the ONNX graph has a cycle or a missing input")
            for node in ready:
                available.update(node[2])
            ordered.extend(ready)
            pending = [node for node in pending if node not in ready]
        return ordered

    def _prune(self, nodes):
        """Keep only nodes the requested output depends on (ISNet also emits side outputs)."""
        needed = {self.output_name}
        kept = []
        for node in reversed(nodes):
            if set(node[2]) & needed:
                kept.append(node)
                needed.update(name for name in node[1] if name)
        return list(reversed(kept))

    def to(self, *args, **kwargs):  # remember the float dtype for Cast nodes
        module = super().to(*args, **kwargs)
        for value in list(args) + list(kwargs.values()):
            if isinstance(value, torch.dtype) and value.is_floating_point:
                module.compute_dtype = value
        return module

    def forward(self, x: torch.Tensor, **inputs: torch.Tensor) -> torch.Tensor:
        values: dict[str, torch.Tensor] = {name: getattr(self, buffer) for name, buffer in self._names.items()}
        values.update(self._host_constants)
        values.update(inputs)
        values[self.input_name] = x
        for (op_type, inputs_of, outputs, attributes), released in zip(self.nodes, self._released_after):
            arguments = [values[name] if name else None for name in inputs_of]
            produced = getattr(self, f"_op_{op_type.lower()}")(arguments, attributes)
            if isinstance(produced, tuple):  # Split
                values.update(zip(outputs, produced))
            else:
                values[outputs[0]] = produced
            del arguments, produced
            for name in released:
                del values[name]
        return values[self.output_name]

    # --- operators ------------------------------------------------------------------------------
    def _op_conv(self, a, attributes):
        pads = attributes.get("pads", [0, 0, 0, 0])
        return F.conv2d(a[0], a[1], a[2] if len(a) > 2 else None, stride=attributes.get("strides", [1, 1]),
                        padding=(pads[0], pads[1]), dilation=attributes.get("dilations", [1, 1]),
                        groups=attributes.get("group", 1))

    def _op_relu(self, a, attributes):
        return F.relu(a[0], inplace=False)

    def _op_sigmoid(self, a, attributes):
        return torch.sigmoid(a[0])

    def _op_add(self, a, attributes):
        return a[0] + a[1]

    def _op_mul(self, a, attributes):
        return a[0] * a[1]

    def _op_div(self, a, attributes):
        if a[0].is_floating_point():
            return a[0] / a[1]
        return torch.div(a[0], a[1], rounding_mode="trunc")  # ONNX integer Div truncates

    def _op_concat(self, a, attributes):
        return torch.cat(a, dim=attributes["axis"])

    def _op_cast(self, a, attributes):
        # Float casts follow the compute dtype (fp16 graph casts become no-ops in fp32 and back).
        if attributes["to"] in (1, 10, 11, 16):
            return a[0].to(torch.float32 if attributes.get("_scale") else self.compute_dtype)
        return a[0].to(torch.int64)

    def _op_shape(self, a, attributes):
        return torch.tensor(a[0].shape, dtype=torch.int64)

    def _op_slice(self, a, attributes):
        data, starts, ends = a[0], a[1].tolist(), a[2].tolist()
        axes = a[3].tolist() if len(a) > 3 and a[3] is not None else list(range(len(starts)))
        steps = a[4].tolist() if len(a) > 4 and a[4] is not None else [1] * len(starts)
        index = [slice(None)] * data.dim()
        for axis, start, end, step in zip(axes, starts, ends, steps):
            index[axis] = slice(start, min(end, data.shape[axis]), step)
        return data[tuple(index)]

    def _op_gather(self, a, attributes):
        index = a[1].long()
        return torch.index_select(a[0], attributes.get("axis", 0), index.reshape(-1)).reshape(
            a[0].shape[:attributes.get("axis", 0)] + index.shape + a[0].shape[attributes.get("axis", 0) + 1:])

    def _op_unsqueeze(self, a, attributes):
        axes = attributes.get("axes") or a[1].tolist()
        out = a[0]
        for axis in sorted(axes):
            out = out.unsqueeze(axis)
        return out

    def _op_maxpool(self, a, attributes):
        pads = attributes.get("pads", [0, 0, 0, 0])
        return F.max_pool2d(a[0], attributes["kernel_shape"], attributes.get("strides"), padding=(pads[0], pads[1]),
                            ceil_mode=bool(attributes.get("ceil_mode", 0)))

    def _op_resize(self, a, attributes):
        mode = attributes.get("mode", b"nearest")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        transform = attributes.get("coordinate_transformation_mode", b"half_pixel")
        transform = transform.decode() if isinstance(transform, bytes) else transform
        sizes = a[3] if len(a) > 3 and a[3] is not None else None
        if sizes is not None and sizes.numel():
            size = [int(v) for v in sizes.tolist()[2:]]
            if mode == "linear":
                return F.interpolate(a[0], size=size, mode="bilinear", align_corners=transform == "align_corners")
            return F.interpolate(a[0], size=size, mode="nearest")
        # Scales, as onnxruntime reads them: the size is floor of a float32 product, and coordinates
        # map by the scale itself rather than by the rounded sizes' ratio.
        scales = np.asarray(a[2].tolist()[2:], dtype=np.float32)
        size = [int(np.floor(np.float32(extent) * scale)) for extent, scale in zip(a[0].shape[2:], scales)]
        if mode == "linear":
            return torch.ops.aten.upsample_bilinear2d(a[0], size, transform == "align_corners",
                                                      float(scales[0]), float(scales[1]))
        return torch.ops.aten.upsample_nearest2d(a[0], size, float(scales[0]), float(scales[1]))

    def _op_sub(self, a, attributes):
        return a[0] - a[1]

    def _op_tanh(self, a, attributes):
        return torch.tanh(a[0])

    def _op_hardsigmoid(self, a, attributes):
        return (a[0] * attributes.get("alpha", 0.2) + attributes.get("beta", 0.5)).clamp(0.0, 1.0)

    def _op_globalaveragepool(self, a, attributes):
        return a[0].mean(dim=(2, 3), keepdim=True)

    def _op_averagepool(self, a, attributes):
        pads = attributes.get("pads", [0, 0, 0, 0])
        return F.avg_pool2d(a[0], attributes["kernel_shape"], attributes.get("strides"), padding=(pads[0], pads[1]),
                            ceil_mode=bool(attributes.get("ceil_mode", 0)),
                            count_include_pad=bool(attributes.get("count_include_pad", 0)))

    def _op_reducemean(self, a, attributes):
        return a[0].mean(dim=tuple(attributes["axes"]), keepdim=bool(attributes.get("keepdims", 1)))

    def _op_split(self, a, attributes):
        axis = attributes.get("axis", 0)
        parts = attributes.get("split") or (a[1].tolist() if len(a) > 1 and a[1] is not None else None)
        if parts is None:
            raise ValueError("Split without sizes is not supported")
        return tuple(torch.split(a[0], list(parts), dim=axis))

    def _op_expand(self, a, attributes):
        shape = torch.broadcast_shapes(tuple(a[0].shape), tuple(int(v) for v in a[1].tolist()))
        return a[0].expand(shape)

    def _op_clip(self, a, attributes):
        low = a[1] if len(a) > 1 and a[1] is not None else attributes.get("min")
        high = a[2] if len(a) > 2 and a[2] is not None else attributes.get("max")
        return torch.clamp(a[0], low, high)
