"""Results: metrics, summaries of run folders, tables, figures and the report page."""
