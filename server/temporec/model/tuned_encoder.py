"""A language model that learns from behaviour: the item-text encoder trained with the
recommender on the next-item loss (``TrainConfig.tuning`` "lora" or "top").

``TunedEncoder`` embeds texts exactly as the ``local`` encoder does (masked mean of the last
hidden states, L2-normalized), so a tuned model saved with ``save`` into an artifact's
``encoder/`` directory (``artifacts.ENCODER_DIR``) is served by the ``local`` encoder
pointed at that directory, and exported to Triton like any other model directory.

Two ways to tune, both leaving most weights frozen (little data, a CPU):

- ``lora``: low-rank adapters on the attention projections (``peft``; Hu et al., 2021),
  merged into the weights when saved, so serving runs a plain model at the same speed;
- ``top``: the top N transformer layers trained in full.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from temporec.contract.errors import FailedPrecondition, InvalidArgument
from temporec.model.pretrained import mean_pool


@dataclass
class Tokens:
    """Texts tokenized once: (n, T) ids and attention mask, padded to the longest."""

    ids: torch.Tensor
    mask: torch.Tensor

    def rows(self, index: torch.Tensor) -> "Tokens":
        """Rows ``index``, cut to their longest text (less padding to run)."""
        mask = self.mask[index]
        width = max(int(mask.sum(1).max()), 1) if len(index) else 1
        return Tokens(self.ids[index, :width], mask[:, :width])


class TunedEncoder(nn.Module):
    def __init__(self, model: nn.Module, tokenizer, max_length: int):
        super().__init__()
        self.model, self.tokenizer, self.max_length = model, tokenizer, max_length

    @classmethod
    def load(cls, source: str, max_length: int) -> "TunedEncoder":
        """The model at ``source`` (a directory, or a hub id in the local cache), every weight frozen."""
        from transformers import AutoModel, AutoTokenizer  # heavy: import only when used

        try:
            tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
            model = AutoModel.from_pretrained(source, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise FailedPrecondition(f"tuning: no model could be loaded from {source!r}: {exc}") from exc
        model.requires_grad_(False)
        return cls(model, tokenizer, max_length)

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def tokenize(self, texts: Sequence[str]) -> Tokens:
        encoded = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        return Tokens(encoded["input_ids"], encoded["attention_mask"])

    def forward(self, tokens: Tokens) -> torch.Tensor:
        """(n, dim) unit vectors of the tokenized texts."""
        device = next(self.model.parameters()).device
        ids, mask = tokens.ids.to(device), tokens.mask.to(device)
        hidden = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
        return F.normalize(mean_pool(hidden, mask), dim=-1)

    @torch.no_grad()
    def embed(self, tokens: Tokens, batch_size: int = 64) -> torch.Tensor:
        """Every row's vector, in eval mode, batched by length."""
        was_training = self.training
        self.eval()
        order = torch.argsort(tokens.mask.sum(1))
        out = torch.empty(len(order), self.dim)
        for start in range(0, len(order), batch_size):
            chosen = order[start : start + batch_size]
            out[chosen] = self(tokens.rows(chosen)).float().cpu()
        self.train(was_training)
        return out

    # -- what trains --------------------------------------------------------------------

    def with_lora(self, rank: int, alpha: float, targets: Sequence[str], dropout: float = 0.1) -> "TunedEncoder":
        """Low-rank adapters on the linear layers named ``targets`` (e.g. BERT's "query", "value")."""
        from peft import LoraConfig, get_peft_model

        if rank < 1:
            raise InvalidArgument(f"config.lora_rank: {rank}; must be at least 1")
        names = {name.rsplit(".", 1)[-1] for name, m in self.model.named_modules() if isinstance(m, nn.Linear)}
        unknown = sorted(set(targets) - names)
        if unknown or not targets:
            raise InvalidArgument(
                f"config.lora_targets: {list(targets)}; this model's linear layers are {', '.join(sorted(names))}"
            )
        config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=list(targets), lora_dropout=dropout)
        self.model = get_peft_model(self.model, config)
        return self

    def with_top_layers(self, layers: int) -> "TunedEncoder":
        """The top ``layers`` transformer layers trainable, the rest frozen."""
        stack = _layer_stack(self.model)
        if not 1 <= layers <= len(stack):
            raise InvalidArgument(f"config.top_layers: {layers}; this model has {len(stack)} layers")
        for layer in stack[len(stack) - layers :]:
            layer.requires_grad_(True)
        return self

    def keep_first_layers(self, layers: int) -> "TunedEncoder":
        """Only the first ``layers`` transformer layers (the top ones dropped, as a
        distilled student starts): fewer layers to run per text, saved as such."""
        stack = _layer_stack(self.model)
        if not 1 <= layers <= len(stack):
            raise InvalidArgument(f"config.encoder_layers: {layers}; this model has {len(stack)} layers")
        del stack[layers:]
        self.model.config.num_hidden_layers = layers
        return self

    def checkpoint_gradients(self) -> "TunedEncoder":
        """Keep no layer's activations for the backward pass: recompute them (non-reentrant
        checkpoints, which need no input that requires a gradient: the embeddings are frozen)."""
        if not getattr(self.model, "supports_gradient_checkpointing", False):
            raise InvalidArgument(f"config.gradient_checkpointing: {type(self.model).__name__} does not support it")
        kwargs = {"use_reentrant": False}
        if hasattr(self.model, "activation_checkpointing_enable"):  # the name since transformers 5.x
            self.model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            self.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
        return self

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def merge_adapters(self) -> None:
        """Fold LoRA adapters into the weights: a plain model, as fast as the untuned one."""
        if hasattr(self.model, "merge_and_unload"):
            self.model = self.model.merge_and_unload()

    def save(self, directory: Path) -> None:
        """A Hugging Face model directory with the tokenizer (adapters merged first)."""
        self.merge_adapters()
        self.model.save_pretrained(directory, safe_serialization=True)
        self.tokenizer.save_pretrained(directory)


def _layer_stack(model: nn.Module) -> nn.ModuleList:
    """The model's list of transformer layers: the ModuleList as long as its layer count."""
    count = getattr(model.config, "num_hidden_layers", None)
    for module in model.modules():
        if isinstance(module, nn.ModuleList) and len(module) == count:
            return module
    raise InvalidArgument(f"config.tuning 'top': no list of {count} transformer layers found in {type(model).__name__}")
