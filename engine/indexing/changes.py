"""What happened to one photo file since the catalog last saw it: one rule for the indexer
(:meth:`engine.indexing.indexer.Indexer.scan`) and the folder watcher
(:meth:`engine.indexing.watcher.FolderWatcher.rescan`), so the watcher never promises work the
indexer then skips, or the other way round.

A file the walk found is compared with its catalog row (size, mtime, content hash) and with
the failure recorded for it, if any (a failed file has no catalog row):

* no row (or, for the indexer, no descriptor of the method it indexes) -> ``NEW``, unless it
  failed before and its (size, mtime) did not change since -> ``FAILED_BEFORE`` (not retried);
* other size -> ``CHANGED``;
* same size, other mtime -> content hash: same -> ``TOUCHED`` (copied back, mtime reset:
  nothing to recompute, only the stored mtime is updated), else ``CHANGED``;
* same size and mtime -> ``UNCHANGED``; with ``verify`` the content hash is compared too
  (an in-place edit that restored size and mtime) and a different one is ``CHANGED``.

A hash that cannot be read (the file vanished or became unreadable meanwhile) counts as
different: the indexer then records why it cannot read the file.

A catalogued photo the walk did not find is gone (:func:`vanished`), unless it lies under a
folder the walk could not read or list this time (permissions, a flaky network share): such
photos are kept, like those of an unplugged drive.
"""
from __future__ import annotations

import os
from enum import Enum
from typing import TYPE_CHECKING, Iterable

from engine.store.catalog import content_hash

if TYPE_CHECKING:
    from engine.indexing.indexer import FoundFile

KnownFile = tuple[int, int, int, str]  # CatalogStore.known_files: (image id, size, mtime_ns, hash)


class FileChange(Enum):
    NEW = "new"
    CHANGED = "changed"
    TOUCHED = "touched"
    UNCHANGED = "unchanged"
    FAILED_BEFORE = "failed before"


def same_content(path: str | os.PathLike, stored_hash: str) -> bool:
    """Whether the file's content hash equals ``stored_hash`` (False when it cannot be read)."""
    try:
        return content_hash(path) == stored_hash
    except OSError:
        return False


def classify_file(found: FoundFile, known: KnownFile | None, failed_stat: tuple[int, int] | None,
                  verify: bool = False, described: bool = True) -> FileChange:
    """The rule of the module docstring. ``known``: the file's catalog row, None when it has
    none. ``failed_stat``: (size, mtime_ns) of its recorded failure, None when none.
    ``described``: the catalog holds a descriptor of it for the method being indexed (the
    watcher looks at files, not methods, and leaves it True)."""
    if known is None or not described:
        failed_unchanged = failed_stat is not None and tuple(failed_stat) == (found.size, found.mtime_ns)
        return FileChange.FAILED_BEFORE if failed_unchanged else FileChange.NEW
    _image_id, size, mtime_ns, stored_hash = known
    if size != found.size:
        return FileChange.CHANGED
    if mtime_ns != found.mtime_ns:
        return FileChange.TOUCHED if same_content(found.path, stored_hash) else FileChange.CHANGED
    if verify and not same_content(found.path, stored_hash):
        return FileChange.CHANGED
    return FileChange.UNCHANGED


def vanished(known_paths: Iterable[str], seen: set[str], walk_errors: Iterable[tuple[str, str]]) -> list[str]:
    """The catalogued photos of one folder that are gone: not ``seen`` by the walk and not
    under a folder it could not read or list (``walk_errors``: the ``(path, reason)`` pairs
    :func:`engine.indexing.indexer.walk_images` reported)."""
    unreadable = tuple(os.path.join(p, "") for p, reason in walk_errors if reason.startswith("folder cannot"))
    return [p for p in known_paths if p not in seen and not p.startswith(unreadable)]
