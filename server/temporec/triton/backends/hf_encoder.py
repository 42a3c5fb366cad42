"""A Hugging Face encoder model for Triton's Python backend (written by temporec export-triton).

The model and tokenizer files are in ``hf/`` beside this file. The config's parameters say
which interface the model serves:

- ``interface: text``: ``TEXT`` (UTF-8 bytes, dims [1]) in, ``EMBEDDING`` (float32, dims
  [dim]) out: the L2-normalized mean of the last hidden states over the real tokens, as
  sentence-transformers and temporec's ``local`` encoder compute it.
- ``interface: tokens``: ``input_ids`` and ``attention_mask`` (int64, dims [-1]) in,
  ``last_hidden_state`` (float32, dims [-1, dim]) out; the caller tokenizes and pools.

A KIND_GPU instance runs on its GPU, a KIND_CPU instance on the CPU. This file runs inside
Triton, where temporec is not installed: it needs numpy, torch and transformers only.
"""

import json
from pathlib import Path

import numpy as np
import torch
import triton_python_backend_utils as pb_utils
from transformers import AutoModel, AutoTokenizer
from transformers.utils import logging as hf_logging

hf_logging.disable_progress_bar()  # no "Loading weights" bars in Triton's log


def mean_pool(hidden, attention_mask):
    """Mean of ``hidden`` (B, T, H) over the tokens where ``attention_mask`` (B, T) is 1."""
    weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        parameters = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        self.interface = parameters.get("interface", "text")
        self.max_length = int(parameters.get("max_length", "256"))
        source = Path(args["model_repository"]) / args["model_version"] / "hf"
        if args["model_instance_kind"] == "GPU":
            self.device = torch.device(f"cuda:{args['model_instance_device_id']}")
        else:
            self.device = torch.device("cpu")
        self.tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
        self.model = AutoModel.from_pretrained(source, local_files_only=True).to(self.device).eval()

    def execute(self, requests):
        """One forward pass for every request that Triton batched together."""
        try:
            with torch.inference_mode():
                return self._embed(requests) if self.interface == "text" else self._hidden_states(requests)
        except Exception as exc:  # answer every request with the error instead of crashing the stub
            error = pb_utils.TritonError(f"{type(exc).__name__}: {exc}")
            return [pb_utils.InferenceResponse(error=error) for _ in requests]

    def _embed(self, requests):
        texts, sizes = [], []
        for request in requests:
            column = pb_utils.get_input_tensor_by_name(request, "TEXT").as_numpy().reshape(-1)
            texts.extend(value.decode("utf-8") for value in column)
            sizes.append(len(column))
        tokens = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        ).to(self.device)
        hidden = self.model(**tokens).last_hidden_state
        pooled = torch.nn.functional.normalize(mean_pool(hidden, tokens["attention_mask"]).float(), dim=-1)
        rows = np.split(pooled.cpu().numpy(), np.cumsum(sizes)[:-1])
        return [pb_utils.InferenceResponse([pb_utils.Tensor("EMBEDDING", part)]) for part in rows]

    def _hidden_states(self, requests):
        ids = [pb_utils.get_input_tensor_by_name(r, "input_ids").as_numpy() for r in requests]
        masks = [pb_utils.get_input_tensor_by_name(r, "attention_mask").as_numpy() for r in requests]
        width = max(part.shape[1] for part in ids)
        # Requests of different lengths share one pass: pad each to the longest, masked out.
        input_ids = np.concatenate([np.pad(part, ((0, 0), (0, width - part.shape[1]))) for part in ids])
        attention_mask = np.concatenate([np.pad(part, ((0, 0), (0, width - part.shape[1]))) for part in masks])
        hidden = (
            self.model(
                input_ids=torch.from_numpy(input_ids).to(self.device),
                attention_mask=torch.from_numpy(attention_mask).to(self.device),
            )
            .last_hidden_state.float()
            .cpu()
            .numpy()
        )
        responses, start = [], 0
        for part in ids:
            rows, length = part.shape
            out = np.ascontiguousarray(hidden[start : start + rows, :length])
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("last_hidden_state", out)]))
            start += rows
        return responses
