"""IR layer: the SSA model, its reader and writer, and the pass pipelines."""
