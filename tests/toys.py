"""Tiny worlds the unit tests share: toy Markov histories and small Llama recommenders built from them."""
from __future__ import annotations

import torch

from lab.config import ModelConfig
from lab.data import rec_data_from_sequences, toy_markov_sequences
from lab.models import build_model

N_ITEMS, T = 30, 10  # catalogue size and history length of the toy worlds


def toy_data(n_users: int = 64, seed: int = 0):
    """`RecData` of `n_users` toy Markov histories of 12 items over `N_ITEMS` items, windows of `T`."""
    return rec_data_from_sequences(toy_markov_sequences(n_users, N_ITEMS, 12, seed=seed), N_ITEMS, T)


def tiny_config(num_layers: int = 4, dropout: float = 0.0) -> ModelConfig:
    """A width-16 Llama stack of `num_layers` layers."""
    return ModelConfig(num_layers=num_layers, hidden_size=16, num_heads=2, intermediate_size=32, item_dim=16,
                       dropout=dropout)


def tiny_model(num_layers: int = 4, dropout: float = 0.0, layer_std: float | None = None, seed: int = 0):
    """A tiny recommender (seeded). `layer_std` re-draws every 2-D layer weight N(0, layer_std): layers that change
    the residual stream as much as trained ones do (at the 0.02 init an untrained layer barely moves it)."""
    torch.manual_seed(seed)
    model = build_model(tiny_config(num_layers, dropout), N_ITEMS, T)
    if layer_std is not None:
        with torch.no_grad():
            for p in model.layers.parameters():
                if p.ndim == 2:
                    p.normal_(0.0, layer_std)
    return model
