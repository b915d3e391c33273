"""The eval suites, one module each (`run(lm, ...) -> SuiteResult`), with their data loading (`data`),
text similarity (`similarity`) and what they need from a judge (`judging`); the judges themselves live
in `safety_evals.judges`. Suites import `safety_evals.lm` and `safety_evals.results`, never
`safety_evals.review`."""
