"""The opsets an ONNX model imports, and one node evaluated at them on constant inputs (onnx's reference
implementation), for the frontend's passes.

The node runs at the opsets its model imports: alone, onnx's evaluator would take the newest, where some
ops read differently (before opset 13 Unsqueeze takes its axes as an attribute, which the newest refuses).
Where onnx implements an op only from a later version (DequantizeLinear from 19), the newest runs it.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper
from onnx.reference import ReferenceEvaluator


def opsets(model: onnx.ModelProto) -> dict[str, int]:
    return {d.domain: d.version for d in model.opset_import}


def default_opset(model: onnx.ModelProto) -> int | None:
    """The version of the default (ai.onnx) domain the model imports, if it imports one."""
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


def folded(node: onnx.NodeProto, model_opsets: dict[str, int], feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The node's outputs by name (the optional ones it leaves unnamed left out), for the inputs `feeds` (by
    the node's input names)."""
    imports = [helper.make_opsetid(domain, version) for domain, version in model_opsets.items()]
    outputs = [o for o in node.output if o]
    fn = helper.make_function("lego2c", "fold", [i for i in node.input if i], outputs, [node], imports)
    try:
        values = ReferenceEvaluator(fn).run(None, feeds, attributes={})
    except RuntimeError as e:
        if "No implementation" not in str(e):
            raise
        values = ReferenceEvaluator(node).run(None, feeds)
    return dict(zip(outputs, values))
