"""Using a finished run: the predictor, its evaluation, top-k and heat maps, the live webcam, every download format.

Pages call this concern through `core.serving.api`.
"""
