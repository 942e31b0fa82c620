"""Serving: the public blueprint (serve, embed, click), click tokens and filter, the per-process runtime."""
