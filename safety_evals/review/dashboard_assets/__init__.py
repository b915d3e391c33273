"""Page shell (inline CSS/JS), HTML sections and inline-SVG plots for `align dashboard`; plain Python."""
