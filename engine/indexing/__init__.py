"""Turning folders into catalog rows: scan, change classification, the indexer, the folder watcher."""
