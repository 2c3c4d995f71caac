"""Where a collection lives on disk: the SQLite catalog, descriptor shards, atomic writes, app dirs."""
