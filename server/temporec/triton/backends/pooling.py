"""The last step of the ONNX ensemble, for Triton's Python backend (written by temporec
export-triton): ``last_hidden_state`` (float32, dims [-1, dim]) and ``attention_mask``
(int64, dims [-1]) in, ``EMBEDDING`` (float32, dims [dim]) out: the L2-normalized mean of
the hidden states over the real tokens, as temporec's ``local`` encoder computes it.
Runs inside Triton: needs numpy only.
"""

import numpy as np
import triton_python_backend_utils as pb_utils


def mean_pool(hidden, attention_mask):
    """Mean of ``hidden`` (B, T, H) over the tokens where ``attention_mask`` (B, T) is 1."""
    weights = attention_mask[..., None].astype(hidden.dtype)
    return (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)


def l2_normalize(rows):
    return rows / np.maximum(np.linalg.norm(rows, axis=-1, keepdims=True), 1e-12)


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            hidden = pb_utils.get_input_tensor_by_name(request, "last_hidden_state").as_numpy()
            mask = pb_utils.get_input_tensor_by_name(request, "attention_mask").as_numpy()
            embedding = l2_normalize(mean_pool(hidden, mask)).astype(np.float32)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("EMBEDDING", embedding)]))
        return responses
