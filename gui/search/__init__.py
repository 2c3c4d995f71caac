"""The Search tab: the query with its overlays, the results grid, why-matched and the viewer."""
