"""The public API: activities, ``autodiff`` and the JAX-style transforms."""
