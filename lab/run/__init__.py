"""One run of a scenario: the runner, the health gate after it, diagnostics at a failure, reruns, bundles
and sitting at a failure."""
