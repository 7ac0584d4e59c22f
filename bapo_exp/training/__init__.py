"""The one training loop shared by every method, and its helpers."""
