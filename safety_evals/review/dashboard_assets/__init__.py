"""Page shell (inline CSS/JS) and inline-SVG plots for `align dashboard`; plain Python, no data files."""
