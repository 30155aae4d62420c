"""models.toml → `ModelSpec`: the registry of named models (`registry`) and the per-family table
of differences (`families`). Pure data: no torch, no transformers, no model files read."""
