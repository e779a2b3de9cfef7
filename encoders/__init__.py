"""Frozen modality encoders (ViT, CLIP, text LMs) and the per-(data set, encoder) feature cache.

Not built yet: tracked in issue 3. Nothing here is imported by the trainer.
"""
