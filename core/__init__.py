"""TransferLab engine: project store, data collection, backbones, training, evaluation and export.

Nothing in this package imports Streamlit; the pages call into it.
"""
