"""What every layer uses: errors, settings, logging, retries, progress, signals, the run directory, disk
sizes and the reader of untrusted archives. Imports nothing else of the lab."""
