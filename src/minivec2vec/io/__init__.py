"""Reading and writing: the embedding sources, the map file, the streamed apply (etl) and the
vector-store adapters."""
