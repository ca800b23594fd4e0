"""From an image to a ready guest: building images, preparing a run's images, provisioning its domains and
the warm starts from saved guests."""
