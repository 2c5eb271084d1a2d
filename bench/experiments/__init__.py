"""The seed paper's claims tested directly: patch-permutation properties and the patch/pixel shuffle experiment."""
