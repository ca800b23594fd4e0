"""The ways users come in: the `lab` command, the pytest plugin, parallel runs and their summary report."""
