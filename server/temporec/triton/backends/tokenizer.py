"""The first step of the ONNX ensemble, for Triton's Python backend (written by temporec
export-triton): ``TEXT`` (UTF-8 bytes, dims [1]) in, ``input_ids`` and ``attention_mask``
(int64, dims [max_length]) out.

Every text is padded to the same ``max_length`` tokens, so that the ONNX model's dynamic
batcher can put requests from different callers into one batch. The tokenizer files are in
``hf/`` beside this file. Runs inside Triton: needs numpy and transformers only.
"""

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils
from transformers import AutoTokenizer


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.max_length = int(config["parameters"]["max_length"]["string_value"])
        source = Path(args["model_repository"]) / args["model_version"] / "hf"
        self.tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)

    def execute(self, requests):
        try:
            return self._tokenize(requests)
        except Exception as exc:
            error = pb_utils.TritonError(f"{type(exc).__name__}: {exc}")
            return [pb_utils.InferenceResponse(error=error) for _ in requests]

    def _tokenize(self, requests):
        texts, sizes = [], []
        for request in requests:
            column = pb_utils.get_input_tensor_by_name(request, "TEXT").as_numpy().reshape(-1)
            texts.extend(value.decode("utf-8") for value in column)
            sizes.append(len(column))
        tokens = self.tokenizer(
            texts, padding="max_length", truncation=True, max_length=self.max_length, return_tensors="np"
        )
        bounds = np.cumsum(sizes)[:-1]
        ids = np.split(tokens["input_ids"].astype(np.int64), bounds)
        masks = np.split(tokens["attention_mask"].astype(np.int64), bounds)
        return [
            pb_utils.InferenceResponse([pb_utils.Tensor("input_ids", i), pb_utils.Tensor("attention_mask", m)])
            for i, m in zip(ids, masks)
        ]
