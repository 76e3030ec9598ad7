"""The pieces of the project store, each readable alone; `core.store.Project` puts them together."""
