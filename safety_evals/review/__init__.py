"""What a reviewer and a release pipeline read: results documents (`documents`, the validating reader),
the release gate (`gate`, `policy`), the dashboard (`dashboard`) and the local history (`history`).
Reads results files only: never imports a suite, a model or JAX."""
