"""Read, clean, chunk, embed and store documents: the index side of cited-qa."""
