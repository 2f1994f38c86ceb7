"""Shared test set-up: one torch thread per worker (pytest-xdist runs two workers on 2 cores;
torch's own threads would oversubscribe them and slow small models ~100x)."""
import torch

torch.set_num_threads(1)
