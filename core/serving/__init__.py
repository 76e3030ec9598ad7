"""Using a finished run: the predictor, top-k and heat maps, the live webcam, and every download format.

Pages call this concern through `core.serving.api`.
"""
