"""Archives: photo collections too big for one machine, described on a Ray cluster.

A desktop collection (a few hundred thousand photos) is indexed by one process into a
catalog (:mod:`engine.store`). An archive (10-100 million photos) is described by many
workers at once and searched from the desktop read-only:

1. :mod:`engine.archive.plan` lists the sources and splits the files into shards
   (``plan/00000.json`` ...), recorded with the method and its settings in ``archive.json``.
   A rerun lists them again and appends the photos no shard has yet as new shards (a
   planned shard never changes; gone and changed files are reported, not re-planned).
2. :mod:`engine.archive.runner` hands the unfinished shards to Ray Data: one
   :class:`engine.archive.describe.ShardDescriber` per worker holds the method and the model
   and describes whole shards with the desktop indexer's own decode and describe functions
   (same descriptors, bit for bit on the CPU with the same thread count). A shard is written
   atomically (descriptors, then its manifest last), so a rerun skips finished shards and a
   worker killed mid-shard loses that shard's work only.
3. :mod:`engine.archive.merge` builds one search index from all the shards (the
   :mod:`engine.search.ann` IVF-PQ, trained on a sample, filled shard by shard; rebuilt
   whole after the plan grew), with the RAW side-car rows the search leaves out.
4. :class:`engine.archive.collection.ArchiveCollection` opens it read-only with the
   interface the search views use on a desktop :class:`engine.api.Collection`.

The folder's layout is in :mod:`engine.archive.layout`; docs/SCALE.md has the plan and the
measured numbers for 100 million photos.
"""
