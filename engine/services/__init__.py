"""What the GUI calls besides engine.api: browse, duplicates, explanations."""
