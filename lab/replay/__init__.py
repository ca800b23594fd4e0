"""Reproduce a host from its sosreport: reading the report, planning its storage, and replaying the plan on
a guest."""
