"""What each layer form costs on the job's backend: bytes from its emitters, time measured.

The warm start's integer program needs a cost per (layer, form, kept rows, kept columns).
Bytes are exact and cheap (``Backend.layer_bytes``). Time is measured, never a formula: each
layer is built alone in each form (``Backend.layer_model``) with a stand-in weight of its
shape, fed an input of the shape it sees at the job's timing batch, and timed on the job's
threads and precision, in interleaved passes against its own fp32 form. Neither bytes nor time
depend on the weights' values (no sparse kernels), so layers of one shape share their
measurements, and every timing is cached in the store (``bp_latency_cache``) under a key of the
stand-in file, input shape, backend, runtime version, threads, precision and CPU flags.

To keep this to a few dozen timings, time is taken for every form at the layer's full shape and
for its fp32 form at every pruned shape, and a pruned form costs
``ms(form, full) * ms(fp32, pruned) / ms(fp32, full)``: pruning scales a form's time as it
scales the float matmul's.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import onnx
import torch
from torch import nn

from bitprism.compression.apply import CompressedLayer, compress_layer
from bitprism.config import LatencySpec, Precision
from bitprism.evaluators.latency import compare_calls
from bitprism.kernels.base import Backend
from bitprism.kernels.onnx_graph import find_layer_node
from bitprism.search.store import Store, TimedOp
from bitprism.spaces.candidate import LayerChoice
from bitprism.spaces.layer import LayerInfo, LayerKind

# Layer forms are small models: a short timing is enough to rank them.
LAYER_TIMING = LatencySpec(warmup=3, repeats=10, passes=3, budget_s=0.2)

Shape = tuple[int, int]  # kept (rows, columns) of a layer's weight


@dataclass(frozen=True)
class _Timed:
    """One stand-in model to time and where its result goes."""

    key: str
    data: bytes
    input_shape: tuple[int, ...]
    layer: LayerInfo
    op: str


@dataclass(frozen=True)
class LayerCosts:
    """Bytes and measured milliseconds per layer form and pruned shape."""

    full: Mapping[str, Shape]
    form_ms: Mapping[str, Mapping[LayerChoice, float]]
    shape_ms: Mapping[str, Mapping[Shape, float]]
    bytes_of: Callable[[LayerInfo, LayerChoice, Shape], int]
    timed: int  # stand-in models timed now (the rest came from the cache)

    def milliseconds(self, layer: str, form: LayerChoice, shape: Shape) -> float:
        full = self.shape_ms[layer][self.full[layer]]
        if full <= 0.0:
            return self.form_ms[layer][form]
        return self.form_ms[layer][form] * self.shape_ms[layer][shape] / full


# Runs fn(*args) where trials are timed, alone, and returns its value (in this process when
# no pool is given; the driver passes its Ray pool's timing slot, so a GPU job's driver needs
# no GPU and a cluster's layer forms are timed on a worker node, like its trials).
Runner = Callable[..., Any]


def in_process(fn: Callable[..., Any], *args: Any) -> Any:
    """The :data:`Runner` that calls ``fn`` here."""
    return fn(*args)


def layer_costs(
    model: nn.Module,
    layers: Sequence[LayerInfo],
    forms: Mapping[str, Sequence[LayerChoice]],
    shapes: Mapping[str, Sequence[Shape]],
    backend: Backend,
    base_onnx: bytes,
    timing_inputs: Sequence[torch.Tensor],
    threads: int,
    precision: Precision = Precision.FP32,
    store: Store | None = None,
    on_step: Callable[[int, int], None] | None = None,
    run: Runner = in_process,
) -> LayerCosts:
    """Costs of ``forms[layer]`` at full shape and of fp32 at each of ``shapes[layer]``.

    ``model`` is the model the job compresses (BatchNorm folded), run once on
    ``timing_inputs`` to see each layer's input shape. ``on_step(done, total)`` reports the
    layers timed.
    """
    seen = _input_shapes(model, layers, timing_inputs)
    base = onnx.load_model_from_string(base_onnx)
    nodes = {layer.name: find_layer_node(base.graph, layer.name).node for layer in layers}
    cpu = run(machine_of, backend)  # where they are timed: its CPU's flags, or GPU and driver
    tag = f"{backend.name}|{backend.version}|{threads}|{precision.value}|{cpu}"

    def stand_in(layer: LayerInfo, form: LayerChoice, shape: Shape) -> _Timed:
        info, compressed = _compressed(layer, form, shape, backend)
        x = _input_shape(layer, seen[layer.name], shape)
        data = backend.layer_model(info, compressed, nodes[layer.name], x, base.opset_import)
        key = hashlib.sha256(data + f"|{x}|{tag}".encode()).hexdigest()
        bits = f"{form.weight_bits} bits, rank {form.rank_fraction}, sparsity {form.sparsity}"
        op = f"{layer.kind.value} {tuple(info.weight_shape)} on {x}: {bits}"
        return _Timed(key, data, x, layer, op)

    full = {layer.name: (layer.out_features, layer.weight_shape[1]) for layer in layers}
    reached = [layer for layer in layers if layer.name in seen]  # the rest cost no time
    by_form = {x.name: {f: stand_in(x, f, full[x.name]) for f in forms[x.name]} for x in reached}
    by_shape = {x.name: {s: stand_in(x, LayerChoice(), s) for s in shapes[x.name]} for x in reached}
    keys = [t.key for plan in (by_form, by_shape) for ts in plan.values() for t in ts.values()]
    known = dict(store.cached_latencies(keys)) if store is not None else {}
    timed = 0
    for step, layer in enumerate(reached):
        reference = by_form[layer.name][LayerChoice()]  # fp32 at full shape leads the passes
        todo = {
            t.key: t
            for t in (*by_form[layer.name].values(), *by_shape[layer.name].values())
            if t.key not in known and t.key != reference.key
        }
        if todo or reference.key not in known:
            group = [reference, *todo.values()]
            found = run(time_stand_ins, group, backend, threads, precision)
            known.update(found)
            timed += len(group)
            if store is not None:
                store.cache_latencies(
                    TimedOp(
                        t.key,
                        found[t.key],
                        backend.name,
                        backend.version,
                        threads,
                        precision.value,
                        cpu,
                        t.op,
                    )
                    for t in group
                )
        if on_step is not None:
            on_step(step + 1, len(reached))
    form_ms = {
        x.name: {f: known[t.key] for f, t in by_form[x.name].items()}
        if x.name in by_form
        else dict.fromkeys(forms[x.name], 0.0)
        for x in layers
    }
    shape_ms = {
        x.name: {s: known[t.key] for s, t in by_shape[x.name].items()}
        if x.name in by_shape
        else dict.fromkeys(shapes[x.name], 0.0)
        for x in layers
    }
    return LayerCosts(full, form_ms, shape_ms, _bytes_of(backend), timed)


def machine_of(backend: Backend) -> str:
    """``backend.machine()`` where it is called (run where the layers are timed)."""
    return backend.machine()


def time_stand_ins(
    group: Sequence[_Timed], backend: Backend, threads: int, precision: Precision
) -> dict[str, float]:
    """Median milliseconds of each stand-in, timed in interleaved passes."""
    calls = []
    for t in group:
        module = backend.load(t.data, threads, precision)
        calls.append(module.bind([_stand_in_input(t.layer, t.input_shape)]))
    compared = compare_calls(calls, LAYER_TIMING.model_copy(update={"threads": threads}))
    return {t.key: c.latency.median_ms for t, c in zip(group, compared, strict=True)}


def _bytes_of(backend: Backend) -> Callable[[LayerInfo, LayerChoice, Shape], int]:
    """Bytes of a layer form at a pruned shape, priced once per (kind, shape, form)."""

    @cache
    def price(layer: LayerInfo, form: LayerChoice, shape: Shape) -> int:
        info, compressed = _compressed(layer, form, shape, backend)
        return backend.layer_bytes(info, compressed)

    def by_shape(layer: LayerInfo, form: LayerChoice, shape: Shape) -> int:
        return price(dataclasses.replace(layer, name="", prune_units=0), form, shape)

    return by_shape


def _compressed(
    layer: LayerInfo, form: LayerChoice, shape: Shape, backend: Backend
) -> tuple[LayerInfo, CompressedLayer]:
    """``layer`` at kept ``shape`` in ``form``, on a deterministic stand-in weight (named
    alike for every layer, so layers of one shape build the same stand-in file)."""
    rows, cols = shape
    pruned = (rows, cols, *layer.weight_shape[2:])
    info = dataclasses.replace(layer, name="layer", weight_shape=pruned, prune_units=0)
    weight = torch.randn(pruned, generator=torch.Generator().manual_seed(0))
    bias = torch.zeros(rows) if layer.has_bias else None
    pattern = backend.sparse_pattern(info)
    return info, compress_layer(info, weight, bias, form, backend.input_quant, pattern=pattern)


def _input_shapes(
    model: nn.Module, layers: Sequence[LayerInfo], inputs: Sequence[torch.Tensor]
) -> dict[str, tuple[int, ...]]:
    """The shape of each layer's input on one forward pass over ``inputs``."""
    seen: dict[str, tuple[int, ...]] = {}
    handles = []
    for layer in layers:

        def record(_m: nn.Module, args: tuple[torch.Tensor, ...], name: str = layer.name) -> None:
            seen.setdefault(name, tuple(args[0].shape))

        handles.append(model.get_submodule(layer.name).register_forward_pre_hook(record))
    try:
        with torch.no_grad():
            model(*inputs)
    finally:
        for handle in handles:
            handle.remove()
    return seen


def _input_shape(layer: LayerInfo, seen: tuple[int, ...], shape: Shape) -> tuple[int, ...]:
    """The input a layer with ``shape[1]`` kept weight columns reads."""
    if layer.kind is LayerKind.EMBEDDING:
        return seen
    full_cols = layer.weight_shape[1]
    if layer.kind is LayerKind.CONV2D:  # channels are dim 1 (grouped convs: in proportion)
        return (seen[0], seen[1] * shape[1] // full_cols, *seen[2:])
    return (*seen[:-1], shape[1])


def _stand_in_input(layer: LayerInfo, shape: tuple[int, ...]) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    if layer.kind is LayerKind.EMBEDDING:
        return torch.randint(0, layer.out_features, shape, generator=generator)
    return torch.randn(shape, generator=generator)
