"""The ``model.py`` of a Triton Python-backend model that runs an ONNX file with ONNX Runtime.

``lensflow models triton-repo --backend python`` writes it next to the ``model.onnx`` of each
model: it is how the tests and benchmarks serve the same ONNX files from the Triton server the
``nvidia-pytriton`` wheel bundles (which has no onnxruntime backend). Triton's dynamic batcher
hands :meth:`execute` several requests at once; they are concatenated into one ONNX Runtime
call and the outputs split back per request, so a batch of requests costs one model run.
"""

from __future__ import annotations

MODEL_PY = '''"""Triton Python backend: an ONNX file run by ONNX Runtime (written by lensflow)."""

import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    """Concatenates the requests Triton batched, runs them once, splits the outputs."""

    def initialize(self, args):
        config = json.loads(args["model_config"])
        folder = os.path.join(args["model_repository"], args["model_version"])
        name = config["parameters"]["onnx_file"]["string_value"]
        threads = int(config["parameters"].get("intra_op_threads", {}).get("string_value", "0"))
        options = ort.SessionOptions()
        if threads > 0:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(
            os.path.join(folder, name), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self.inputs = [tensor["name"] for tensor in config["input"]]
        self.outputs = [tensor["name"] for tensor in config["output"]]

    def execute(self, requests):
        arrays = {
            name: [pb_utils.get_input_tensor_by_name(r, name).as_numpy() for r in requests]
            for name in self.inputs
        }
        sizes = [len(array) for array in arrays[self.inputs[0]]]
        try:
            results = self.session.run(
                self.outputs, {name: np.concatenate(parts) for name, parts in arrays.items()}
            )
        except Exception as err:  # one bad request must not fail the others silently
            error = pb_utils.TritonError(f"onnxruntime failed: {err}")
            return [pb_utils.InferenceResponse(output_tensors=[], error=error) for _ in requests]
        responses, start = [], 0
        for size in sizes:
            tensors = [
                pb_utils.Tensor(name, np.ascontiguousarray(result[start : start + size]))
                for name, result in zip(self.outputs, results)
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            start += size
        return responses
'''
"""The Python backend's model file, as written into ``<model>/1/model.py``."""
