"""Evaluation harness behind ``main.py eval``: datasets, metrics, cached runs, reports.

- :mod:`.dataset`: ``ground_truth.json`` folders (validated) and ``--layout folders``;
- :mod:`.metrics`: Oxford's ``compute_ap``, N-S, P@k, R@k, the tie rule;
- :mod:`.runner`: index a dataset into a cached catalog and score every query;
- :mod:`.report`: Markdown + PNG reports and the generated table of ``docs/RESULTS.md``.
"""
from engine.evaluation.dataset import Dataset, Query, every_positive_queries, find_datasets, load_dataset, load_folders, load_ground_truth
from engine.evaluation.metrics import average_precision, compute_ap, rank_by_score, score_query, summarize
from engine.evaluation.runner import MethodResult, evaluate

__all__ = ["Dataset", "Query", "every_positive_queries", "find_datasets", "load_dataset", "load_folders", "load_ground_truth",
           "average_precision", "compute_ap", "rank_by_score", "score_query", "summarize",
           "MethodResult", "evaluate"]
