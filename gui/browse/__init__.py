"""The Browse tab: folder tree, photo grid and viewer."""
