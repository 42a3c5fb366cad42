"""The ``vae`` head: a sequential variational autoencoder, as SVAE (Sachdeva et al.,
WSDM 2019).

A GRU encodes the events; at every step a Gaussian latent ``z_t ~ N(mu_t, sigma_t^2)`` is
read from its state, and a decoder maps ``z_t`` to the predicted next-item vector. In
training ``z_t`` is sampled with the reparameterization trick (``mu + sigma * eps``) and
the head returns the KL divergence to the N(0, I) prior, averaged over real positions, as
``HeadOutput.aux_loss``; at inference ``z_t = mu_t``, so scores are deterministic.

KL annealing: the KL term is weighted by ``kl_weight * min(1, steps / anneal_steps)``.
``steps`` is a buffer of the head counting its training-mode forward passes (one per
optimizer step in ``temporec train``). Being a buffer, it is saved with the weights and
restored from a checkpoint, so a resumed run continues the same schedule.
``anneal_steps=0`` applies the full weight from the start.
"""

from __future__ import annotations

import torch
from torch import nn

from temporec import Head, HeadOutput, hookimpl, to_back, to_front

LOGVAR_RANGE = (-10.0, 10.0)  # keeps exp(logvar) finite early in training


class VAEHead(Head):
    """Sequential VAE head. Options: ``layers`` (GRU layers), ``latent`` (latent size; 0:
    the model width), ``dropout`` (on the encoder's states), ``kl_weight`` (the KL
    weight once annealed), ``anneal_steps`` (training steps over which the weight grows
    linearly from 0)."""

    name = "vae"
    options = {"layers": 1, "latent": 0, "dropout": 0.2, "kl_weight": 0.2, "anneal_steps": 2000}

    def __init__(self, dim: int, max_len: int, **options):
        super().__init__(dim, max_len, **options)
        layers, latent = int(self.config["layers"]), int(self.config["latent"]) or dim
        dropout = float(self.config["dropout"])
        self._check(layers, latent, dropout)
        self.encoder = nn.GRU(dim, dim, num_layers=layers, batch_first=True, dropout=dropout if layers > 1 else 0.0)
        self.norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        self.mu = nn.Linear(dim, latent)
        self.logvar = nn.Linear(dim, latent)
        self.decoder = nn.Sequential(nn.Linear(latent, dim), nn.Tanh(), nn.Linear(dim, dim))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def _check(self, layers: int, latent: int, dropout: float) -> None:
        problems = []
        if layers < 1:
            problems.append(f"option layers={layers}; must be at least 1")
        if latent < 1:
            problems.append(f"option latent={latent}; must be at least 1, or 0 for the model width")
        if not 0 <= dropout < 1:
            problems.append(f"option dropout={dropout}; must be in [0, 1)")
        if float(self.config["kl_weight"]) < 0:
            problems.append(f"option kl_weight={self.config['kl_weight']}; must be at least 0")
        if int(self.config["anneal_steps"]) < 0:
            problems.append(f"option anneal_steps={self.config['anneal_steps']}; must be at least 0")
        if problems:
            raise ValueError(f"head 'vae': {'; '.join(problems)}")

    def kl_scale(self) -> float:
        """The KL weight at the current training step."""
        anneal = int(self.config["anneal_steps"])
        progress = 1.0 if anneal == 0 else min(1.0, int(self.steps) / anneal)
        return float(self.config["kl_weight"]) * progress

    def forward(self, events: torch.Tensor, mask: torch.Tensor) -> HeadOutput:
        encoded, _ = self.encoder(to_front(events, mask))  # right-padded: padding comes after
        hidden = self.dropout(self.norm(to_back(encoded, mask)))
        mu, logvar = self.mu(hidden), self.logvar(hidden).clamp(*LOGVAR_RANGE)
        real = mask.unsqueeze(-1)
        if not self.training:
            return HeadOutput(self.decoder(mu) * real)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        kl = -0.5 * (1 + logvar - mu.square() - logvar.exp()).sum(-1)  # per position
        aux = self.kl_scale() * (kl * mask).sum() / mask.sum().clamp(min=1)
        self.steps += 1
        return HeadOutput(self.decoder(z) * real, aux_loss=aux)


@hookimpl
def register_heads(register):
    register(VAEHead)
