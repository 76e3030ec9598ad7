"""The model: backbones and their weights, embeddings, the head, training, novelty, suspects,
and the advice and timings the Train page shows.

Pages call this concern through `core.model.api`.
"""
