"""The trainer side: sequential backbones, the training loop and full-ranking metrics.

Takes tensors and feature arrays only; never imports `harness` or encoder models.
"""
