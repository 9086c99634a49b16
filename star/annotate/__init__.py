"""Getting labels from people: the built-in labeling page and file exchange with other tools."""
