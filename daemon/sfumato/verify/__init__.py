"""Verify a cloak and show it: visual-change figures, per-encoder protection, the quick check
run after every cloak, and the side-by-side preview picture."""
