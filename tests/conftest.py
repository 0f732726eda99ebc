"""Suite-wide fixtures: loopback GCP fakes (Cloud Storage emulator, fake Vertex AI)."""

pytest_plugins = ["tests.fakes.gcp_fixtures"]
