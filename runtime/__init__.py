"""The runtime: composes servers from the vocabulary and the interceptors, and supervises the mesh."""
