"""The checkout's own tests use pytester; every other rule (nightly, CI, longest first) is the lab's
pytest plugin's, so that a user's repository gets it too."""

pytest_plugins = ["pytester"]
