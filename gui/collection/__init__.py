"""The collection side: the list of collections, folders, method and device, indexing and its
progress, folder watching and "Adapt to my photos"."""
