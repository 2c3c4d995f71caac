"""The Duplicates tab: tiers of duplicate groups, keyboard review, compare view, safe moves."""
